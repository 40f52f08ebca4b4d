"""LSKA: large separable kernel attention.

Lau, Po, Rehman, "Large Separable Kernel Attention: Rethinking the Large Kernel Attention Design in CNN",
Expert Systems with Applications, 2024, arXiv 2309.01439.

VAN's large kernel attention (a depthwise conv, a dilated depthwise conv, a 1×1 conv, the result multiplying
the input) with each 2-D depthwise kernel split into a horizontal and a vertical 1-D kernel.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from models.attention.base import Attention, AttentionMap
from models.attention.flops import numel

# kernel size k -> (dilation d, local kernel 2d - 1, dilated kernel k // d): receptive field (2d - 1) + (k//d - 1)·d = k
LSKA_KERNELS = {7: (2, 3, 3), 11: (2, 3, 5), 23: (3, 5, 7), 35: (3, 5, 11), 41: (3, 5, 13), 53: (3, 5, 17)}


def _dw(c: int, k: int, horizontal: bool, dilation: int = 1) -> nn.Conv2d:
    """A depthwise 1×k (horizontal) or k×1 (vertical) conv, dilated along its long axis, 'same' zero padding, bias."""
    pad = dilation * (k - 1) // 2
    if horizontal:
        return nn.Conv2d(c, c, (1, k), padding=(0, pad), dilation=(1, dilation), groups=c)
    return nn.Conv2d(c, c, (k, 1), padding=(pad, 0), dilation=(dilation, 1), groups=c)


class LSKA(Attention):
    """Large Separable Kernel Attention (Kin Wai Lau, Lai-Man Po, Yasar Abbas Ur Rehman, "Large Separable Kernel
    Attention: Rethinking the Large Kernel Attention Design in CNN", Expert Systems with Applications, 2024,
    arXiv 2309.01439).

    For kernel size k with dilation d (d = 2 for k <= 11, else 3), k0 = 2d − 1 and k1 = ⌊k / d⌋ (receptive
    field k0 + (k1 − 1)·d = k), all depthwise convs with bias and 'same' zero padding::

        u   = DW_{k0×1}(DW_{1×k0}(x))                       local separable depthwise conv
        v   = DW_{k1×1, d}(DW_{1×k1, d}(u))                 dilated separable depthwise conv
        A   = W · v + b                                     1×1 conv C -> C
        out = A ⊙ x

    The kernel sizes of the paper's table are supported: 7, 11 (default), 23, 35, 41, 53. This is the attention
    operator itself (VAN's surrounding 1×1 projections, GELU and shortcut are not part of it), as the paper's LSKA
    module defines it.

    Parameters: 2·C·(k0 + 1) + 2·C·(k1 + 1) + C² + C, i.e. 70,912 at C = 256, k = 11 (k0 = 3, k1 = 5).

    yaml example::

        [-1, 1, LSKA, [1024]]        # k = 11
        [-1, 1, LSKA, [1024, 23]]    # k = 23 (d = 3: 1×5 / 5×1, then 1×7 / 7×1 with dilation 3)

    Args:
        c1: input (= output) channels C.
        k_size: the large kernel size k, one of 7, 11, 23, 35, 41, 53.
    """

    def __init__(self, c1: int, k_size: int = 11) -> None:
        super().__init__()
        if int(k_size) not in LSKA_KERNELS:
            raise ValueError(f"LSKA k_size must be one of {sorted(LSKA_KERNELS)}, got {k_size}")
        self.c1 = c1
        self.k_size = int(k_size)
        d, k0, k1 = LSKA_KERNELS[self.k_size]
        self.conv0h = _dw(c1, k0, horizontal=True)
        self.conv0v = _dw(c1, k0, horizontal=False)
        self.conv_spatial_h = _dw(c1, k1, horizontal=True, dilation=d)
        self.conv_spatial_v = _dw(c1, k1, horizontal=False, dilation=d)
        self.conv1 = nn.Conv2d(c1, c1, 1)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The attention map A, (B, C, H, W)."""
        u = self.conv0v(self.conv0h(x))
        return self.conv1(self.conv_spatial_v(self.conv_spatial_h(u)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention(x)

    def extra_repr(self) -> str:
        return f"c1={self.c1}, k_size={self.k_size}"

    @torch.no_grad()
    def attention_map(self, inputs: tuple, output: torch.Tensor) -> AttentionMap:
        """The attention A averaged over channels, (B, H, W) (A multiplies x; it is not bounded to [0, 1])."""
        return AttentionMap(spatial=self.attention(inputs[0]).float().mean(1),
                            spatial_label="LSKA attention A, mean over channels")

    def functional_flops(self, inputs: tuple, output: torch.Tensor) -> int:
        """The product A ⊙ x, one per element (the convs are thop's)."""
        return numel(inputs[0].shape)
