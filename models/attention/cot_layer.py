"""CotLayer: the official Contextual Transformer block, with local attention.

Li et al., "Contextual Transformer Networks for Visual Recognition", TPAMI 2022, arXiv 2107.12292.
The official local aggregation is a CUDA kernel; here it is plain PyTorch (k·k shifted slices of a
zero-padded value map), so it runs on CPU and exports to ONNX opset 12.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.attention.base import Attention, FallbackBatchNorm2d
from models.attention.flops import batchnorm_flops, numel, softmax_flops


def local_aggregation(v: torch.Tensor, a: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """``out[b, c, h, w] = Σ_taps a[b, c mod G, tap, h, w] · v[b, c, h + dh, w + dw]``, zero padded.

    Channel c uses attention map ``c mod G`` (interleaved). Written as k·k shifted slices of the padded v,
    with slice bounds that are constants relative to the ends, so traced graphs stay valid at any size.

    Args:
        v: values, (B, C, H, W).
        a: attention weights, (B, G, k·k, H, W) with C divisible by G; taps in row-major (dh, dw) order.
        kernel_size: k (odd).

    Returns:
        (B, C, H, W).
    """
    c, g, k = v.shape[1], a.shape[1], kernel_size
    p = k // 2
    vp = F.pad(v, [p, p, p, p])  # (B, C, H+2p, W+2p)
    vp = vp.view(vp.shape[0], c // g, g, vp.shape[2], vp.shape[3])  # (B, C/G, G, H+2p, W+2p); c = j*G + g
    out = None
    for i in range(k):
        for j in range(k):
            # rows i .. i+H-1 and cols j .. j+W-1 of the padded map, i.e. offsets (i-p, j-p)
            patch = vp[:, :, :, i:(i - 2 * p) or None, j:(j - 2 * p) or None]  # (B, C/G, G, H, W)
            term = a[:, None, :, i * k + j] * patch  # (B, 1, G, H, W) * (B, C/G, G, H, W)
            out = term if out is None else out + term
    return out.view(v.shape)  # (B, C, H, W)


class CotLayer(Attention):
    """The official CoT block (Li et al., "Contextual Transformer Networks for Visual Recognition",
    TPAMI 2022, arXiv 2107.12292).

    With C channels, k = ``kernel_size``, G = C/8 attention groups (share groups of 8 channels)::

        k1 = ReLU(BN(grouped k×k conv(x)))                         static context ("key_embed")
        A  = GN(conv1x1(ReLU(BN(conv1x1(cat[x, k1])))))            (B, k·k·G, H, W) -> (B, G, k·k, H, W)
        v  = BN(conv1x1(x))                                        values ("conv1x1")
        k2 = Σ_taps A[b, c mod G, tap] · v[b, c, shifted]          local aggregation, zero padding
        k2 = SiLU(BN(k2))                                          dynamic context
        s  = mean_hw(k1 + k2);  a = softmax over 2 of se(s)        radix-2 split attention ("se")
        out = a0 · k2 + a1 · k1

    Unlike ``CoTAttention`` the attention is local (a k×k neighbourhood per position) and has no softmax.
    The fusion branch's BatchNorm sees a (B, C', 1, 1) map; it falls back to its running statistics for a
    batch-1 training call (the stride probe at model build), which plain BatchNorm rejects.

    yaml example::

        [-1, 1, CotLayer, [1024, 3]]

    Args:
        dim: input (= output) channels C, divisible by 8.
        kernel_size: k (odd), the neighbourhood size.
    """

    def __init__(self, dim: int, kernel_size: int = 3) -> None:
        super().__init__()
        if dim % 8:
            raise ValueError(f"CotLayer needs channels divisible by 8, got {dim}")
        if kernel_size % 2 == 0:
            raise ValueError(f"CotLayer needs an odd kernel size, got {kernel_size}")
        self.dim = dim
        self.kernel_size = kernel_size
        self.groups = dim // 8  # G: attention maps, each shared by 8 (interleaved) channels
        self.radix = 2
        kk = kernel_size * kernel_size
        self.key_embed = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=4, bias=False),
            nn.BatchNorm2d(dim),
            nn.ReLU())
        self.embed = nn.Sequential(
            nn.Conv2d(2 * dim, dim // 2, 1, bias=False),
            nn.BatchNorm2d(dim // 2),
            nn.ReLU(),
            nn.Conv2d(dim // 2, kk * self.groups, 1),
            nn.GroupNorm(num_groups=self.groups, num_channels=kk * self.groups))
        self.conv1x1 = nn.Sequential(nn.Conv2d(dim, dim, 1, bias=False), nn.BatchNorm2d(dim))  # value
        self.bn = nn.BatchNorm2d(dim)
        self.act = nn.SiLU()
        attn_chs = max(dim * self.radix // 4, 32)
        self.se = nn.Sequential(
            nn.Conv2d(dim, attn_chs, 1),
            FallbackBatchNorm2d(attn_chs),
            nn.ReLU(),
            nn.Conv2d(attn_chs, self.radix * dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kk = self.kernel_size * self.kernel_size
        k1 = self.key_embed(x)  # (B, C, H, W)
        a = self.embed(torch.cat([x, k1], dim=1))  # (B, G*k*k, H, W)
        a = a.view(a.shape[0], self.groups, kk, a.shape[2], a.shape[3])  # (B, G, k*k, H, W)
        v = self.conv1x1(x)  # (B, C, H, W)
        k2 = self.act(self.bn(local_aggregation(v, a, self.kernel_size)))  # (B, C, H, W)
        s = (k1 + k2).mean((2, 3), keepdim=True)  # (B, C, 1, 1)
        w = self.se(s)  # (B, 2*C, 1, 1)
        w = torch.softmax(w.view(w.shape[0], self.dim, self.radix), dim=2)  # (B, C, 2), per channel
        w = w.view(w.shape[0], self.dim, self.radix, 1, 1)  # (B, C, 2, 1, 1)
        return w[:, :, 0] * k2 + w[:, :, 1] * k1  # (B, C, H, W)

    def functional_flops(self, inputs: tuple, output: torch.Tensor) -> int:
        """FLOPs outside thop-counted children: the local aggregation, the pooled sum, the fusion softmax and
        weighted sum, and the fusion BatchNorm (a subclass thop does not count)."""
        b, c = int(inputs[0].shape[0]), self.dim
        n = numel(inputs[0].shape)  # B·C·H·W
        kk = self.kernel_size * self.kernel_size
        aggregation = 2 * kk * n  # k·k products and sums per output element
        pooled = 2 * n  # k1 + k2, then the spatial mean
        fusion = softmax_flops(b * c * self.radix) + 3 * n  # softmax over 2, then a0·k2 + a1·k1
        se_bn = batchnorm_flops(b * self.se[0].out_channels)
        return aggregation + pooled + fusion + se_bn
