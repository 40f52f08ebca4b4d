"""DoubleAttention: the double attention block of A²-Nets.

Chen, Kalantidis, Li, Yan, Feng, "A^2-Nets: Double Attention Networks", NeurIPS 2018, arXiv 1810.11579.

Gather: n global descriptors, each an attention-weighted (softmax over positions) sum of m-channel features.
Distribute: every position takes a softmax-weighted mix of the n descriptors. A 1×1 conv maps the result back
to C channels, added to the input.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from models.attention.base import Attention, AttentionMap
from models.attention.flops import numel, softmax_flops

_VECTOR_SOFTMAX = ("channel", "position")


class DoubleAttention(Attention, aliases=("A2Attention",)):
    """Double attention block (Yunpeng Chen, Yannis Kalantidis, Jianshu Li, Shuicheng Yan, Jiashi Feng,
    "A^2-Nets: Double Attention Networks", NeurIPS 2018, arXiv 1810.11579).

    With x of shape (B, C, H, W) flattened to C × L (L = H·W positions) and three 1×1 convs (with bias)
    φ: C -> m, θ: C -> n, ρ: C -> n::

        A   = φ(x)                          (B, m, L)   features
        Bm  = softmax_L(θ(x))               (B, n, L)   n attention maps, each a softmax over positions
        V   = softmax_n(ρ(x))               (B, n, L)   attention vectors, a softmax over the n maps per position
        G   = A · Bmᵀ                       (B, m, n)   step 1, feature gathering (second-order pooling)
        Z   = G · V                         (B, m, L)   step 2, feature distribution
        out = x + W_o · Z + b_o             1×1 conv m -> C, added as a residual (the paper's block)

    m = ``c_m`` and n = ``c_n`` default to C / 4 (at least 1). ``vector_softmax="position"`` gives the variant of
    a widely copied implementation, which takes the attention vectors' softmax over positions too; the default
    is the paper's softmax over the n descriptors. Both softmaxes and the gathering sum over L run in fp32 and
    are cast back. No L × L matrix is formed: memory is O((m + 2n)·L).

    Parameters: 3 convs C·m + m + 2·(C·n + n) + m·C + C, i.e. 65,984 at C = 256 (m = n = 64).

    yaml example::

        [-1, 1, DoubleAttention, [1024]]              # m = n = C/4
        [-1, 1, DoubleAttention, [1024, 128, 128]]    # m = n = 128

    Args:
        c1: input (= output) channels C.
        c_m: m, the width of each gathered descriptor (None: C // 4).
        c_n: n, the number of descriptors (None: C // 4).
        vector_softmax: ``"channel"`` (paper: over the n descriptors) or ``"position"``.
    """

    def __init__(self, c1: int, c_m: int | None = None, c_n: int | None = None,
                 vector_softmax: str = "channel") -> None:
        super().__init__()
        if vector_softmax not in _VECTOR_SOFTMAX:
            raise ValueError(f"DoubleAttention vector_softmax must be one of {_VECTOR_SOFTMAX}, got {vector_softmax!r}")
        self.c1 = c1
        self.c_m = max(c1 // 4, 1) if c_m is None else int(c_m)
        self.c_n = max(c1 // 4, 1) if c_n is None else int(c_n)
        if self.c_m < 1 or self.c_n < 1:
            raise ValueError(f"DoubleAttention c_m and c_n must be positive, got {c_m}, {c_n}")
        self.vector_softmax = vector_softmax
        self.convA = nn.Conv2d(c1, self.c_m, 1)  # φ
        self.convB = nn.Conv2d(c1, self.c_n, 1)  # θ: attention maps
        self.convV = nn.Conv2d(c1, self.c_n, 1)  # ρ: attention vectors
        self.conv_reconstruct = nn.Conv2d(self.c_m, c1, 1)

    def maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The attention maps softmax_L(θ(x)) and vectors (B, n, L), in fp32 (or wider)."""
        wide = torch.promote_types(x.dtype, torch.float32)
        b = self.convB(x).flatten(2).to(wide).softmax(dim=-1)  # (B, n, L)
        v = self.convV(x).flatten(2).to(wide)  # (B, n, L)
        v = v.softmax(dim=1 if self.vector_softmax == "channel" else -1)
        return b, v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        a = self.convA(x).flatten(2)  # (B, m, L)
        bm, v = self.maps(x)  # (B, n, L) each, fp32
        with torch.autocast(x.device.type, enabled=False):
            g = torch.bmm(a.to(bm.dtype), bm.transpose(1, 2))  # (B, m, L) @ (B, L, n) -> (B, m, n)
            z = torch.bmm(g, v)  # (B, m, n) @ (B, n, L) -> (B, m, L)
        z = z.to(x.dtype).reshape(-1, self.c_m, h, w)  # (B, m, H, W)
        return x + self.conv_reconstruct(z).to(x.dtype)

    def extra_repr(self) -> str:
        return f"c1={self.c1}, c_m={self.c_m}, c_n={self.c_n}, vector_softmax={self.vector_softmax}"

    @torch.no_grad()
    def attention_map(self, inputs: tuple, output: torch.Tensor) -> AttentionMap:
        """The n gathering maps averaged, scaled by H·W (1 = uniform attention), (B, H, W)."""
        x = inputs[0]
        h, w = x.shape[-2:]
        bm, _ = self.maps(x)
        return AttentionMap(spatial=bm.float().mean(1).view(-1, h, w) * (h * w),  # (B, L) -> (B, H, W)
                            spatial_label="gathering attention × H·W (1 = uniform)")

    def functional_flops(self, inputs: tuple, output: torch.Tensor) -> int:
        """FLOPs outside the 1×1 convs (which thop counts), with L = H·W: two softmaxes 3·B·n·L each, the
        gathering and distribution products 2·B·m·n·L each, the residual sum B·C·L."""
        x = inputs[0]
        bl = int(x.shape[0]) * numel(x.shape[2:])
        return 2 * softmax_flops(bl * self.c_n) + 4 * bl * self.c_m * self.c_n + numel(x.shape)
