"""ELA: efficient local attention.

Xu, Wan, "ELA: Efficient Local Attention for Deep Convolutional Neural Networks", 2024, arXiv 2403.01123.

Like coordinate attention, the map is pooled into a height strip and a width strip; each strip goes through a
1-D convolution and a group norm (no channel reduction, no batch norm) and becomes a sigmoid gate along its
axis; the input is multiplied by both gates.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.attention.base import Attention, AttentionMap
from models.attention.flops import numel

# The paper's four configurations: (1-D kernel size, conv groups as a fraction of C, group-norm groups).
ELA_VARIANTS = {"T": (5, 1, 32), "B": (7, 1, 16), "S": (5, 8, 16), "L": (7, 8, 16)}


def largest_divisor_at_most(n: int, cap: int) -> int:
    """The largest d <= ``cap`` (and >= 1) that divides ``n``."""
    d = max(min(int(cap), int(n)), 1)
    while n % d:
        d -= 1
    return d


class ELA(Attention):
    """Efficient Local Attention (Wei Xu, Yi Wan; "ELA: Efficient Local Attention for Deep Convolutional Neural
    Networks", 2024, arXiv 2403.01123).

    With x of shape (B, C, H, W), F a 1-D convolution (kernel k, zero padding k // 2, no bias) and GN a group
    norm over its C channels, one F and one GN for both directions, as in the authors' code::

        zh  = mean_w(x)                         (B, C, H)   the height strip
        zw  = mean_h(x)                         (B, C, W)   the width strip
        yh  = sigmoid(GN(F(zh)))                (B, C, H)
        yw  = sigmoid(GN(F(zw)))                (B, C, W)   the same F and GN (statistics per strip)
        out = x · yh[..., None] · yw[..., None, :]

    The paper's variants (``phi``): T = (k 5, depthwise conv, GN 32 groups), B = (k 7, depthwise, GN 16),
    S = (k 5, C/8 conv groups of 8 channels, GN 16), L = (k 7, C/8 conv groups, GN 16). The default is ELA-B
    (depthwise, so the cheapest in parameters after T, with the larger kernel). The conv and
    GN group counts are clamped to the largest divisor of C not above them (GN 32 -> 16 at C = 16). The means
    and the group norm run in fp32 (the group norm through ``F.group_norm`` with the GN module's affine
    parameters) and are cast back. A group holding a single value (one channel per group on a 1-pixel
    strip) normalises to 0, so its gate is sigmoid(β): defined and finite.

    Parameters: ``C·(C/g)·k + 2·C`` with g the conv groups; at C = 256: 2,304 (B), 1,792 (T), 10,752 (S),
    14,848 (L).

    yaml example::

        [-1, 1, ELA, [1024]]         # ELA-B
        [-1, 1, ELA, [1024, "T"]]    # ELA-T

    Args:
        c1: input (= output) channels C.
        phi: the paper's variant, one of "T", "B", "S", "L" (default "B").
        kernel_size: override of the variant's 1-D kernel size (odd).
        conv_groups: override of the variant's conv groups (clamped to a divisor of C).
        gn_groups: override of the variant's group-norm groups (clamped to a divisor of C).
    """

    def __init__(self, c1: int, phi: str = "B", kernel_size: int | None = None, conv_groups: int | None = None,
                 gn_groups: int | None = None) -> None:
        super().__init__()
        if phi not in ELA_VARIANTS:
            raise ValueError(f"ELA phi must be one of {tuple(ELA_VARIANTS)}, got {phi!r}")
        k, fraction, gn = ELA_VARIANTS[phi]
        k = int(kernel_size) if kernel_size is not None else k
        if k < 1 or k % 2 == 0:
            raise ValueError(f"ELA kernel_size must be a positive odd integer, got {kernel_size}")
        self.c1 = c1
        self.phi = phi
        self.kernel_size = k
        self.conv_groups = largest_divisor_at_most(c1, conv_groups if conv_groups is not None else c1 // fraction)
        self.gn_groups = largest_divisor_at_most(c1, gn_groups if gn_groups is not None else gn)
        self.conv = nn.Conv1d(c1, c1, k, padding=k // 2, groups=self.conv_groups, bias=False)
        self.gn = nn.GroupNorm(self.gn_groups, c1)  # parameters only: applied in fp32 through F.group_norm

    def gate(self, z: torch.Tensor) -> torch.Tensor:
        """sigmoid(GN(F(z))) for a (B, C, L) strip, in z's dtype."""
        y = self.conv(z)  # (B, C, L)
        ft = torch.promote_types(y.dtype, torch.float32)
        y = F.group_norm(y.to(ft), self.gn_groups, self.gn.weight.to(ft), self.gn.bias.to(ft), self.gn.eps)
        return torch.sigmoid(y).to(z.dtype)  # (B, C, L)

    def gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two gates, shaped to broadcast against x: (B, C, H, 1) and (B, C, 1, W)."""
        xf = x.to(torch.promote_types(x.dtype, torch.float32))  # means in >= fp32
        zh = xf.mean(3).to(x.dtype)  # (B, C, H)
        zw = xf.mean(2).to(x.dtype)  # (B, C, W)
        return self.gate(zh).unsqueeze(3), self.gate(zw).unsqueeze(2)  # (B, C, H, 1), (B, C, 1, W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gh, gw = self.gates(x)
        return x * gh.to(x.dtype) * gw.to(x.dtype)

    def extra_repr(self) -> str:
        return (f"c1={self.c1}, phi={self.phi}, kernel_size={self.kernel_size}, conv_groups={self.conv_groups}, "
                f"gn_groups={self.gn_groups}")

    @torch.no_grad()
    def attention_map(self, inputs: tuple, output: torch.Tensor) -> AttentionMap:
        """The gate product yh·yw: its mean over channels (B, H, W) and over positions (B, C)."""
        gh, gw = self.gates(inputs[0])
        gh, gw = gh.float(), gw.float()
        return AttentionMap(spatial=(gh * gw).mean(1),  # (B, C, H, W) -> (B, H, W)
                            channel=gh.mean((2, 3)) * gw.mean((2, 3)),  # mean over H·W of a product of factors
                            spatial_label="ELA gate yh·yw, mean over channels",
                            channel_label="ELA gate yh·yw, mean over positions")

    def functional_flops(self, inputs: tuple, output: torch.Tensor) -> int:
        """FLOPs outside the 1-D conv (which thop counts, once per direction), with n = B·C·H·W and
        s = B·C·(H+W) strip values.

        The two means 2·n + s (sums, divisions); the group norms 7 per strip value (mean, subtract,
        square-accumulate 2, scale, affine 2) and 3 per (image, group, direction); the sigmoids s; the two
        products with x 2·n. Total ``4·n + 9·s + 6·B·G``.
        """
        b, c, h, w = (int(v) for v in inputs[0].shape)
        n, s = numel(inputs[0].shape), b * c * (h + w)
        return 4 * n + 9 * s + 6 * b * self.gn_groups
