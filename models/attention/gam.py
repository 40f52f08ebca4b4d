"""GAM: the Global Attention Mechanism.

Liu, Shao, Hoffmann, "Global Attention Mechanism: Retain Information to Enhance Channel-Spatial
Interactions", 2021, arXiv 2112.05561.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.attention.base import Attention, FallbackBatchNorm2d
from models.attention.flops import batchnorm_flops, numel


class GAMAttention(Attention, aliases=("GAM_Attention",)):
    """Global Attention Mechanism: Retain Information to Enhance Channel-Spatial Interactions (Yichao Liu,
    Zongru Shao, Nico Hoffmann; arXiv 2112.05561, 2021).

    Channel submodule, then spatial submodule (CBAM's order), with no pooling anywhere so that no
    information is discarded (r = ``rate``)::

        Mc  = sigmoid(permute⁻¹(MLP(permute(x))))       MLP over the channel axis at every position:
                                                        Linear C -> C/r, ReLU, Linear C/r -> C (biases)
        x'  = Mc · x
        Ms  = sigmoid(BN(conv7×7_{C/r->C}(ReLU(BN(conv7×7_{C->C/r}(x'))))))
        out = Ms · x'

    ``permute`` moves the channels last, (B, C, H, W) -> (B, H, W, C). The 7×7 convs (padding 3) have no
    bias, because each is followed by a BatchNorm that would cancel it. The BNs are
    :class:`FallbackBatchNorm2d`, so a batch-1 training call on a 1×1 map does not fail. The paper's
    optional group convolution with channel shuffle (for ResNet-50) is not implemented. The hidden width
    is ``C // r``, at least 1.

    Parameters: ``2·C·(C//r) + C//r + C`` (MLP) ``+ 2·49·C·(C//r)`` (convs) ``+ 2·(C//r) + 2·C`` (BNs),
    e.g. 102,640 at C = 64, r = 4 and 6,555,520 at C = 512. The convs dominate: GAM is heavy.

    Also resolvable as ``GAM_Attention`` (the name YOLO forks use). Forks' yamls often write
    ``[c1, c2]`` (e.g. ``[1024, 1024]``); here the second argument is the rate, so a rate not below the
    channel count is refused with a message instead of building a 1-wide MLP.

    yaml example::

        [-1, 1, GAMAttention, [1024]]      # r = 4
        [-1, 1, GAMAttention, [1024, 8]]   # r = 8

    Args:
        c1: input (= output) channels C.
        rate: the reduction rate r of both submodules (paper: 4).
    """

    def __init__(self, c1: int, rate: int = 4) -> None:
        super().__init__()
        if int(rate) < 1 or (c1 > 1 and int(rate) >= c1):
            raise ValueError(
                f"GAMAttention rate must be a positive integer below the channels ({c1}), got {rate}: the "
                f"argument after the nominal channels is the rate (forks' [c1, c2] yamls: write [c1] or [c1, 4])")
        self.c1 = c1
        self.rate = int(rate)
        self.hidden = max(c1 // self.rate, 1)
        self.channel_fc1 = nn.Linear(c1, self.hidden)
        self.channel_fc2 = nn.Linear(self.hidden, c1)
        self.spatial_conv1 = nn.Conv2d(c1, self.hidden, 7, padding=3, bias=False)
        self.spatial_bn1 = FallbackBatchNorm2d(self.hidden)
        self.spatial_conv2 = nn.Conv2d(self.hidden, c1, 7, padding=3, bias=False)
        self.spatial_bn2 = FallbackBatchNorm2d(c1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.permute(0, 2, 3, 1)  # (B, C, H, W) -> (B, H, W, C)
        t = self.channel_fc2(F.relu(self.channel_fc1(t)))  # (B, H, W, C)
        mc = torch.sigmoid(t.permute(0, 3, 1, 2)).to(x.dtype)  # (B, H, W, C) -> (B, C, H, W)
        xc = x * mc  # (B, C, H, W)
        s = F.relu(self.spatial_bn1(self.spatial_conv1(xc)))  # (B, C/r, H, W)
        ms = torch.sigmoid(self.spatial_bn2(self.spatial_conv2(s))).to(x.dtype)  # (B, C, H, W)
        return xc * ms

    def extra_repr(self) -> str:
        return f"c1={self.c1}, rate={self.rate}, hidden={self.hidden}"

    def functional_flops(self, inputs: tuple, output: torch.Tensor) -> int:
        """FLOPs outside the Linear and conv layers (which thop counts), with n = B·C·H·W and
        m = B·(C//r)·H·W.

        Channel: ReLU m, sigmoid n, product n. Spatial: the two BatchNorms (a subclass thop skips)
        2·m + 2·n, ReLU m, sigmoid n, product n. Total ``6·n + 4·m``.
        """
        b, c, h, w = (int(s) for s in inputs[0].shape)
        n, m = numel(inputs[0].shape), b * self.hidden * h * w
        return (m + 2 * n) + (batchnorm_flops(m) + batchnorm_flops(n) + m + 2 * n)
