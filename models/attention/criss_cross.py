"""CrissCrossAttention: the criss-cross attention module of CCNet.

Huang, Wang, Huang, Huang, Wei, Liu, "CCNet: Criss-Cross Attention for Semantic Segmentation", ICCV 2019,
arXiv 1811.11721.

Every position attends to the H + W − 1 positions of its own row and column (softmax over them), and the
attention-weighted value vectors are added to its features. Applied twice with shared weights (the paper's
recurrent RCCA, ``recurrence=2``) every position receives information from every other one.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from models.attention.base import Attention, AttentionMap
from models.attention.flops import numel, softmax_flops


class CrissCrossAttention(Attention, aliases=("CCA",)):
    """Criss-cross attention (Zilong Huang, Xinggang Wang, Lichao Huang, Chang Huang, Yunchao Wei, Wenyu Liu;
    "CCNet: Criss-Cross Attention for Semantic Segmentation"; ICCV 2019; arXiv 1811.11721).

    With x of shape (B, C, H, W), C' = C/r and 1×1 convs (with bias) Q, K: C -> C', V: C -> C; for every
    position u, Ω_u is the set of the H + W − 1 positions in u's column and row (u itself once)::

        q = Q(x),  k = K(x),  v = V(x)
        d_{i,u} = q_u · k_i                          i ∈ Ω_u          (B, H, W, H + W − 1) energies
        A_{i,u} = softmax_i(d_{i,u})                 over Ω_u
        out_u   = Σ_{i∈Ω_u} A_{i,u} · v_i + x_u

    u appears in both its column and its row; it is kept once by masking it out of the column (−∞ before
    the softmax), as the paper's count H + W − 1 says. The energies, the softmax and the aggregation run in
    fp32 (autocast off: q·k of large activations overflows fp16) and the result is cast back. The attention
    of one position spans H + W − 1 others, so memory is O(H·W·(H + W)), not O((H·W)²): 8.2 M weights per
    image at 160×160.

    Paper and official code differ: the official code scales the context by a learned scalar γ initialised
    to 0 (``out_u = γ·Σ A v + x_u``), the paper's equation has no γ. The official form is the default
    (``learnable_scale=True``), against the rule of preferring the paper, for two reasons: the block starts as
    the identity, which is what an insertion into a (pretrained) detector needs; and the paper's form at
    full strength is ill-conditioned at initialisation: with random Q, K and activations of ~100 the energies
    are thousands apart, the softmax is an arg-max, and the fp16 rounding of the input flips near ties, so a half
    model differs from fp32 by ~25 % of the output scale on a 160×160 map (the registry's half-precision check
    fails). ``learnable_scale=False`` gives the paper's equation exactly. ``recurrence`` applies the module R
    times with shared weights (the paper's RCCA uses R = 2; the default 1 is the single criss-cross module).

    Parameters: ``2·(C·C' + C') + C² + C + 1`` (no +1 without γ), e.g. 82,241 at C = 256 (r = 8, C' = 32).

    yaml example::

        [-1, 1, CrissCrossAttention, [1024]]           # r = 8, one pass, learned γ starting at 0
        [-1, 1, CCA, [1024, 8, 2]]                     # RCCA: two passes with shared weights
        [-1, 1, CCA, [1024, 8, 1, False]]              # the paper's equation (no γ)

    Args:
        c1: input (= output) channels C.
        reduction: r, the query/key width C' = max(C // r, 1) (official code: 8).
        recurrence: R, the number of passes with shared weights.
        learnable_scale: multiply the context by a learned γ starting at 0 (official code, default); False: by 1
            (the paper's equation).
    """

    def __init__(self, c1: int, reduction: int = 8, recurrence: int = 1, learnable_scale: bool = True) -> None:
        super().__init__()
        if int(reduction) < 1 or int(recurrence) < 1:
            raise ValueError(f"CrissCrossAttention reduction and recurrence must be positive, got {reduction}, "
                             f"{recurrence}")
        self.c1 = c1
        self.reduction = int(reduction)
        self.recurrence = int(recurrence)
        self.c_ = max(c1 // self.reduction, 1)
        self.query_conv = nn.Conv2d(c1, self.c_, 1)
        self.key_conv = nn.Conv2d(c1, self.c_, 1)
        self.value_conv = nn.Conv2d(c1, c1, 1)
        self.gamma = nn.Parameter(torch.zeros(1)) if learnable_scale else None

    def weights(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The criss-cross softmax of every position, split into its column and row parts, in >= fp32.

        Returns:
            ``a_col`` (B, H, W, H'): the weight of (h', w) for query (h, w), 0 at h' = h;
            ``a_row`` (B, H, W, W'): the weight of (h, w') for query (h, w).
        """
        h = x.shape[-2]
        ft = torch.promote_types(x.dtype, torch.float32)
        q, k = self.query_conv(x), self.key_conv(x)
        with torch.autocast(device_type=x.device.type, enabled=False):
            q, k = q.to(ft), k.to(ft)
            # column energies: (B, W, H, C') @ (B, W, C', H') -> (B, W, H, H')
            e_col = torch.matmul(q.permute(0, 3, 2, 1), k.permute(0, 3, 1, 2))
            idx = torch.arange(h, device=x.device)
            e_col = e_col.masked_fill(idx[:, None] == idx[None, :], float("-inf"))  # u once: not in its column
            # row energies: (B, H, W, C') @ (B, H, C', W') -> (B, H, W, W')
            e_row = torch.matmul(q.permute(0, 2, 3, 1), k.permute(0, 2, 1, 3))
            a = torch.cat([e_col.permute(0, 2, 1, 3), e_row], -1).softmax(-1)  # (B, H, W, H' + W')
        return a[..., :h], a[..., h:]

    def step(self, x: torch.Tensor) -> torch.Tensor:
        """One criss-cross pass: ``x + scale · Σ A v``."""
        ft = torch.promote_types(x.dtype, torch.float32)
        a_col, a_row = self.weights(x)
        v = self.value_conv(x)
        with torch.autocast(device_type=x.device.type, enabled=False):
            v = v.to(ft)
            # column: (B, W, C, H') @ (B, W, H', H) -> (B, W, C, H); row: (B, H, C, W') @ (B, H, W', W) -> (B, H, C, W)
            ctx_col = torch.matmul(v.permute(0, 3, 1, 2), a_col.permute(0, 2, 3, 1))
            ctx_row = torch.matmul(v.permute(0, 2, 1, 3), a_row.permute(0, 1, 3, 2))
            ctx = ctx_col.permute(0, 2, 3, 1) + ctx_row.permute(0, 2, 1, 3)  # (B, C, H, W)
            if self.gamma is not None:
                ctx = self.gamma.to(ft) * ctx
        return x + ctx.to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.recurrence):
            x = self.step(x)
        return x

    def extra_repr(self) -> str:
        return (f"c1={self.c1}, reduction={self.reduction}, c_={self.c_}, recurrence={self.recurrence}, "
                f"learnable_scale={self.gamma is not None}")

    @torch.no_grad()
    def attention_map(self, inputs: tuple, output: torch.Tensor) -> AttentionMap:
        """Attention received by each position in the first pass, (B, H, W): the sum of the weights all queries
        give it (the mean is 1, since each query distributes 1). The channel map is the generic gain."""
        a_col, a_row = self.weights(inputs[0])
        received = a_col.float().sum(1).transpose(1, 2) + a_row.float().sum(2)  # (B, W, H') -> (B, H', W); (B, H, W')
        return AttentionMap(spatial=received, spatial_label="criss-cross attention received (1 = uniform)")

    def functional_flops(self, inputs: tuple, output: torch.Tensor) -> int:
        """FLOPs outside the three 1×1 convs (which thop counts, once per pass), per pass, with
        P = B·H·W·(H + W) attention entries (the masked one included) and n = B·C·H·W:

        energies 2·C'·P; softmax 3·P; aggregation 2·C·P; the column + row sum n; γ n (official variant only);
        the residual n.
        """
        b, c, h, w = (int(s) for s in inputs[0].shape)
        p, n = b * h * w * (h + w), numel(inputs[0].shape)
        per_pass = 2 * self.c_ * p + softmax_flops(p) + 2 * c * p + 2 * n + (n if self.gamma is not None else 0)
        return self.recurrence * per_pass
