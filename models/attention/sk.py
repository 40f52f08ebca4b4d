"""SKAttention: the selective kernel (SK) convolution.

Li, Wang, Hu, Yang, "Selective Kernel Networks", CVPR 2019, arXiv 1903.06586.

Split (parallel grouped convolutions with different receptive fields), fuse (sum, global average pooling, a
compact descriptor), select (per-channel softmax across the branches, weighted sum).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn

from models.attention.base import Attention, FallbackBatchNorm2d
from models.attention.flops import batchnorm_flops, numel, softmax_flops


def _branch(c1: int, k: int, groups: int, dilated: bool) -> nn.Sequential:
    """One SK path: a grouped k×k conv (a 3×3 conv with dilation (k-1)/2 when ``dilated``) + BN + ReLU."""
    if k < 1 or k % 2 == 0:
        raise ValueError(f"SKAttention kernels must be odd, got {k}")
    ks, dil = (3, (k - 1) // 2) if dilated and k > 3 else (k, 1)
    return nn.Sequential(
        nn.Conv2d(c1, c1, ks, padding=dil * (ks // 2), dilation=dil, groups=groups, bias=False),
        nn.BatchNorm2d(c1),
        nn.ReLU(inplace=True))


class SKAttention(Attention):
    """Selective kernel convolution (Li, Wang, Hu, Yang, "Selective Kernel Networks", CVPR 2019,
    arXiv 1903.06586).

    With M branches (kernels k_1..k_M), C channels and d = ``max(int(C / reduction), min_dim)``::

        U_m = ReLU(BN(GroupConv_{k_m}(x)))                 split: M paths, (B, C, H, W) each
        U   = Σ_m U_m                                      fuse
        s   = mean_hw(U)                                   (B, C, 1, 1)
        z   = ReLU(BN(W_fc · s))                           (B, d, 1, 1), 1×1 conv C -> d without bias
        a_m = softmax_m(A_m · z)                           select: per-branch 1×1 conv d -> C, softmax over m
        out = Σ_m a_m · U_m                                (B, C, H, W)

    The paper's defaults: M = 2 with kernels 3 and 5, the 5×5 path being a 3×3 conv with dilation 2
    (``dilated=True``), G = 32 groups, r = 16, L = 32. The group count is reduced to ``gcd(C, groups)`` so that
    it divides C. The output replaces x (SK is a convolution, not a residual gate); output channels = input
    channels. The BN after the pooled descriptor is a :class:`FallbackBatchNorm2d` (batch-1 training calls
    see one value per channel). The softmax runs in fp32 and is cast back.

    Parameters at C = 1024, defaults (G = 32, d = 64): M·(9·C·C/G + 2·C) + C·d + 2·d + M·d·C = 790,656.

    yaml example::

        [-1, 1, SKAttention, [1024]]                     # kernels 3 and 5 (dilated 3×3), G=32, r=16, L=32
        [-1, 1, SKAttention, [1024, [3, 5, 7], 16]]      # three branches, 16 groups

    Args:
        c1: input (= output) channels C.
        kernels: the branch kernel sizes (odd), M = ``len(kernels)``.
        groups: the cardinality G of the branch convolutions (reduced to ``gcd(C, G)``).
        reduction: r in d = max(C / r, L).
        min_dim: L, the smallest width of the compact descriptor.
        dilated: implement kernels above 3 as dilated 3×3 convs (the paper's choice) instead of plain k×k.
    """

    def __init__(self, c1: int, kernels: Sequence[int] = (3, 5), groups: int = 32, reduction: int = 16,
                 min_dim: int = 32, dilated: bool = True) -> None:
        super().__init__()
        if len(kernels) < 2:
            raise ValueError(f"SKAttention needs at least two kernels to select between, got {list(kernels)}")
        self.c1 = c1
        self.kernels = tuple(int(k) for k in kernels)
        self.groups = math.gcd(c1, int(groups))
        self.d = max(int(c1 / reduction), int(min_dim))
        self.dilated = dilated
        self.convs = nn.ModuleList(_branch(c1, k, self.groups, dilated) for k in self.kernels)
        self.fc = nn.Sequential(
            nn.Conv2d(c1, self.d, 1, bias=False),
            FallbackBatchNorm2d(self.d),
            nn.ReLU(inplace=True))
        self.fcs = nn.ModuleList(nn.Conv2d(self.d, c1, 1, bias=False) for _ in self.kernels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = torch.stack([conv(x) for conv in self.convs], dim=1)  # (B, M, C, H, W)
        u = feats.sum(dim=1)  # (B, C, H, W)
        z = self.fc(u.mean((2, 3), keepdim=True))  # (B, C, 1, 1) -> (B, d, 1, 1)
        logits = torch.stack([fc(z) for fc in self.fcs], dim=1)  # (B, M, C, 1, 1)
        a = logits.to(torch.promote_types(logits.dtype, torch.float32)).softmax(dim=1)  # over the M branches
        return (feats * a.to(feats.dtype)).sum(dim=1)  # (B, M, C, H, W) -> (B, C, H, W)

    def extra_repr(self) -> str:
        return f"c1={self.c1}, kernels={self.kernels}, groups={self.groups}, d={self.d}, dilated={self.dilated}"

    def functional_flops(self, inputs: tuple, output: torch.Tensor) -> int:
        """FLOPs outside the convs and branch BNs (which thop counts); multiply-add = 2.

        With n = B·C·H·W and M branches: the branch sum (M−1)·n, the pooling n + B·C, the descriptor's BN
        (a FallbackBatchNorm2d, which thop skips) 2·B·d, the softmax 3·M·B·C and the weighted sum
        M·n products + (M−1)·n additions. The ReLUs count as 0 (thop's convention).
        """
        x = inputs[0]
        n = numel(x.shape)
        b, bc, m = int(x.shape[0]), numel(x.shape[:2]), len(self.kernels)
        return (m - 1) * n + (n + bc) + batchnorm_flops(b * self.d) + softmax_flops(m * bc) + (2 * m - 1) * n
