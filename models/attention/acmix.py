"""ACmix: local self-attention and convolution sharing their 1×1 projections.

Pan, Ge, Lu, Song, Chen, Huang, Huang, "On the Integration of Self-Attention and Convolution", CVPR 2022,
arXiv 2111.14556.

Stage I: three 1×1 convs give q, k, v (N heads). Stage II: a local window self-attention path over the heads,
and a convolution path (a light fully connected layer over the 3N head features giving k² maps, then shifted
and summed by a depthwise conv initialised to shift kernels); the two paths are mixed by learnt scalars.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.attention.base import Attention, AttentionMap, clamp_min1
from models.attention.flops import numel, softmax_flops


def largest_divisor(c1: int, upper: int) -> int:
    """The largest d <= ``upper`` (and >= 1) that divides ``c1``."""
    d = max(min(int(upper), c1), 1)
    while c1 % d:
        d -= 1
    return d


def window(t: torch.Tensor, i: int, j: int, pad: int) -> torch.Tensor:
    """The (..., H, W) view of a (..., H + 2·pad, W + 2·pad) tensor starting at row i, column j.

    The ends are relative to the padded size (static negative indices), so the slice stays dynamic when traced.
    """
    ei, ej = i - 2 * pad, j - 2 * pad
    return t[..., i:(ei if ei else None), j:(ej if ej else None)]


class ACmix(Attention):
    """ACmix (Xuran Pan, Chunjiang Ge, Rui Lu, Shiji Song, Guanfu Chen, Zeyi Huang, Gao Huang, "On the Integration
    of Self-Attention and Convolution", CVPR 2022, arXiv 2111.14556).

    With N heads of d = C/N channels, window size K = ``kernel_att`` and conv kernel k = ``kernel_conv``::

        q, k, v = W_q x + b_q, W_k x + b_k, W_v x + b_v          stage I: three 1×1 convs C -> C
        a_ij    = softmax_{j ∈ N_K(i)} (q_iᵀ k_j / √d)          per head; N_K(i): the K×K window inside the map
        F_att,i = Σ_{j ∈ N_K(i)} a_ij · v_j                     (B, C, H, W), heads concatenated
        f       = FC([q; k; v])                                  per head channel: 3N -> k² (no bias)
        F_conv  = DWConv_k(f)                                    groups d, k²·d -> C; init: shift kernels
        out     = α · F_att + β · F_conv                         α, β learnt scalars

    α starts at ``att_init`` = 0 and β at 0.5; the authors' code starts both at 0.5 (``att_init=0.5``). The
    default phases the attention path in by training because at full strength it is ill-conditioned at
    initialisation: with random projections and activations of ~100 the window logits are ~10³ apart, the softmax
    is an arg-max, and the fp16 rounding of the input moves near ties, so a half model differs from fp32 by 15 to
    40 % of the output scale on 8×8 to 160×160 maps (the registry's half-precision check fails). α still gets its
    gradient from the first step.

    Window attention keeps the paper's neighbourhood N_K(i) on every map size: k and v are zero padded by K//2
    and the padded positions are masked out of the softmax (so a 1×1 map attends to itself). The authors' code
    reflection-pads instead (a border window then holds mirrored keys twice; it fails on maps smaller than the
    window). It also adds a relative positional term q_iᵀ(p_i − p_j), p = a 1×1 conv (2 -> d) of coordinates
    normalised to [−1, 1]: ``rel_pos=True`` adds it (its bias cancels in p_i − p_j, so that conv has none); the
    default follows the paper's attention formula, which has none. The logits, softmax and weighted sum run in
    fp32 and are cast back; the window is gathered by K² shifted slices (no unfold), so memory is O(K²·B·N·H·W)
    for the logits only, and the ONNX export (opset 12) keeps dynamic H, W. The heads are reduced to the largest
    divisor of C not above ``head``.

    Parameters: 3·(C² + C) + 3N·k² + C·k⁴ + C + 2 (+ 2d with ``rel_pos``), i.e. 218,478 at C = 256 (N = 4, k = 3).

    yaml example::

        [-1, 1, ACmix, [1024]]                # K = 7, 4 heads, k = 3
        [-1, 1, ACmix, [1024, 5, 8, 3]]       # K = 5, 8 heads
        [-1, 1, ACmix, [1024, 7, 4, 3, True, 0.5]]   # as the authors' code: relative positions, α from 0.5

    Args:
        c1: input (= output) channels C.
        kernel_att: the attention window K, odd (7, as in the paper).
        head: the number of heads N (4, the authors' code's default), reduced to a divisor of C.
        kernel_conv: the kernel k of the convolution path, odd (3, as in the paper).
        rel_pos: add the authors' code's relative positional term to the logits.
        att_init: the initial α (the authors' code: 0.5).
    """

    def __init__(self, c1: int, kernel_att: int = 7, head: int = 4, kernel_conv: int = 3, rel_pos: bool = False,
                 att_init: float = 0.0) -> None:
        super().__init__()
        for name, k in (("kernel_att", kernel_att), ("kernel_conv", kernel_conv)):
            if int(k) < 1 or int(k) % 2 == 0:
                raise ValueError(f"ACmix {name} must be a positive odd integer, got {k}")
        self.c1 = c1
        self.kernel_att, self.kernel_conv = int(kernel_att), int(kernel_conv)
        self.head = largest_divisor(c1, head)
        self.head_dim = c1 // self.head
        self.rel_pos = bool(rel_pos)
        self.conv1 = nn.Conv2d(c1, c1, 1)  # q
        self.conv2 = nn.Conv2d(c1, c1, 1)  # k
        self.conv3 = nn.Conv2d(c1, c1, 1)  # v
        if self.rel_pos:
            self.conv_p = nn.Conv2d(2, self.head_dim, 1, bias=False)
        kk = self.kernel_conv ** 2
        self.fc = nn.Conv2d(3 * self.head, kk, 1, bias=False)
        self.dep_conv = nn.Conv2d(kk * self.head_dim, c1, self.kernel_conv, padding=self.kernel_conv // 2,
                                  groups=self.head_dim)
        self.att_init = float(att_init)
        self.rate1 = nn.Parameter(torch.full((1,), self.att_init))  # α
        self.rate2 = nn.Parameter(torch.full((1,), 0.5))  # β
        self.reset_shift()

    @torch.no_grad()
    def reset_shift(self) -> None:
        """Initialise the depthwise conv as the sum of k² shifts: input map t of a group is shifted by tap t."""
        k = self.kernel_conv
        w = torch.zeros_like(self.dep_conv.weight)  # (C, k², k, k)
        for t in range(k * k):
            w[:, t, t // k, t % k] = 1.0
        self.dep_conv.weight.copy_(w)
        nn.init.zeros_(self.dep_conv.bias)

    def window_softmax(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Softmax weights over the K×K window, (B·N, K², H, W) in fp32, from q, k of shape (B·N, d, H, W)."""
        kw, p = self.kernel_att, self.kernel_att // 2
        wide = torch.promote_types(q.dtype, torch.float32)
        q = q.to(wide) * self.head_dim ** -0.5
        kp = F.pad(k.to(wide), (p, p, p, p))  # (B·N, d, H + 2p, W + 2p)
        valid = F.pad(torch.ones_like(q[:1, :1]), (p, p, p, p))  # (1, 1, H + 2p, W + 2p): 1 inside the map
        offsets = [(i, j) for i in range(kw) for j in range(kw)]
        logits = torch.stack([(q * window(kp, i, j, p)).sum(1) for i, j in offsets], 1)  # (B·N, K², H, W)
        if self.rel_pos:
            logits = logits + self.position_logits(q, offsets)
        inside = torch.cat([window(valid, i, j, p) for i, j in offsets], 1) > 0.5  # (1, K², H, W)
        return logits.masked_fill(~inside, float("-inf")).softmax(dim=1)

    def position_logits(self, q: torch.Tensor, offsets: list) -> torch.Tensor:
        """q_iᵀ(p_i − p_j) for every window offset, (B·N, K², H, W); p = W_p · (x, y), coordinates in [−1, 1]."""
        h, w = q.shape[-2:]
        p = self.kernel_att // 2
        wp = self.conv_p.weight.to(q.dtype)  # (d, 2, 1, 1)
        qx, qy = ((q * wp[:, t]).sum(1) for t in (0, 1))  # (B·N, H, W): q·W_p[:, x], q·W_p[:, y] (elementwise: fp32)
        sx, sy = 2.0 / clamp_min1(w - 1), 2.0 / clamp_min1(h - 1)  # coordinate step along x and y
        # p_i − p_j = −W_p · (Δx, Δy) with Δ = (j − p)·sx, (i − p)·sy for the window offset (i, j)
        return torch.stack([-(qx * ((j - p) * sx) + qy * ((i - p) * sy)) for i, j in offsets], 1)

    def attention_path(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """F_att, (B, C, H, W) in q's dtype, from q, k, v of shape (B, C, H, W)."""
        h, w = q.shape[-2:]
        kw, p = self.kernel_att, self.kernel_att // 2
        heads = [t.reshape(-1, self.head_dim, h, w) for t in (q, k, v)]  # (B, C, H, W) -> (B·N, d, H, W)
        a = self.window_softmax(heads[0], heads[1])  # (B·N, K², H, W)
        vp = F.pad(heads[2].to(a.dtype), (p, p, p, p))  # (B·N, d, H + 2p, W + 2p)
        out = sum(a[:, i * kw + j:i * kw + j + 1] * window(vp, i, j, p) for i in range(kw) for j in range(kw))
        return out.to(q.dtype).reshape(-1, self.c1, h, w)  # (B·N, d, H, W) -> (B, C, H, W)

    def conv_path(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """F_conv, (B, C, H, W), from q, k, v of shape (B, C, H, W)."""
        h, w = q.shape[-2:]
        feats = [t.reshape(-1, self.head, self.head_dim, h * w) for t in (q, k, v)]  # (B, N, d, H·W) each
        f = self.fc(torch.cat(feats, dim=1))  # (B, 3N, d, H·W) -> (B, k², d, H·W)
        f = f.permute(0, 2, 1, 3).reshape(-1, self.head_dim * self.kernel_conv ** 2, h, w)  # (B, d·k², H, W)
        return self.dep_conv(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.conv1(x), self.conv2(x), self.conv3(x)
        return self.rate1 * self.attention_path(q, k, v) + self.rate2 * self.conv_path(q, k, v)

    def extra_repr(self) -> str:
        return (f"c1={self.c1}, kernel_att={self.kernel_att}, head={self.head}, kernel_conv={self.kernel_conv}, "
                f"rel_pos={self.rel_pos}, att_init={self.att_init}")

    @torch.no_grad()
    def attention_map(self, inputs: tuple, output: torch.Tensor) -> AttentionMap:
        """Attention received per position, mean over heads, (B, H, W): 1 = as much as a uniform share.

        Position j receives Σ_i a_ij over the queries i whose window holds it; the shares sum to H·W per head.
        """
        x = inputs[0]
        h, w = x.shape[-2:]
        kw, p = self.kernel_att, self.kernel_att // 2
        q, k = (t.reshape(-1, self.head_dim, h, w) for t in (self.conv1(x), self.conv2(x)))
        ap = F.pad(self.window_softmax(q, k), (p, p, p, p))  # (B·N, K², H + 2p, W + 2p)
        got = sum(window(ap[:, i * kw + j], kw - 1 - i, kw - 1 - j, p) for i in range(kw) for j in range(kw))
        return AttentionMap(spatial=got.float().reshape(-1, self.head, h, w).mean(1),  # (B·N, H, W) -> (B, H, W)
                            spatial_label="window attention received (1 = uniform)")

    def functional_flops(self, inputs: tuple, output: torch.Tensor) -> int:
        """FLOPs outside the convs (which thop counts), with n = B·C·H·W, K² window taps and N heads:

        q scaling n, logits 2·K²·n, softmax 3 per logit (K²·B·N·H·W logits), weighted sum 2·K²·n, the mix
        3·n; with ``rel_pos`` also the q·W_p projection 4·n and 4 per logit (two products, a sum, a negation).
        """
        x = inputs[0]
        n = numel(x.shape)
        kk = self.kernel_att ** 2
        logits = n // self.head_dim * kk  # B·N·H·W·K²
        flops = n + 2 * kk * n + softmax_flops(logits) + 2 * kk * n + 3 * n
        if self.rel_pos:
            flops += 4 * n + 4 * logits
        return flops
