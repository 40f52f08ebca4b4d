"""CBAM: the Convolutional Block Attention Module.

Woo, Park, Lee, Kweon, "CBAM: Convolutional Block Attention Module", ECCV 2018, arXiv 1807.06521.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.attention.base import Attention, FallbackBatchNorm2d
from models.attention.flops import batchnorm_flops


class CBAM(Attention, aliases=("CBAMBlock",)):
    """CBAM: Convolutional Block Attention Module (Sanghyun Woo, Jongchan Park, Joon-Young Lee, In So Kweon;
    ECCV 2018; arXiv 1807.06521).

    Channel attention, then spatial attention, each applied multiplicatively (r = ``reduction``,
    k = ``kernel_size``)::

        MLP(v) = W1 · ReLU(W0 · v + b0) + b1                    shared; W0: C/r × C, W1: C × C/r
        Mc     = sigmoid(MLP(mean_hw(x)) + MLP(max_hw(x)))      (B, C, 1, 1)
        x'     = Mc · x
        Ms     = sigmoid(BN(conv_k×k([mean_c(x'); max_c(x')])))  (B, 1, H, W)
        out    = Ms · x'

    As in the authors' code, the MLP layers have biases (so b1 enters twice), and the k×k convolution of
    the spatial gate (2 -> 1 channels, padding k // 2) has no bias and is followed by a one-channel
    BatchNorm; the paper's formula writes neither. That BN is a :class:`FallbackBatchNorm2d` so that a
    batch-1 training call on a 1×1 map does not fail. The MLP is two 1×1 convolutions on pooled
    (B, C, 1, 1) tensors; its hidden width is ``C // r``, at least 1. Means are taken in fp32 and cast back.

    Parameters: ``2·C·(C//r) + C//r + C + 2·k² + 2``, e.g. 33,412 at C = 512, r = 16, k = 7.

    Also resolvable as ``CBAMBlock`` (the name of a widely copied implementation). Forks' yaml
    ``[1024, 16, 7]`` means the same here.

    yaml example::

        [-1, 1, CBAM, [1024]]          # r = 16, k = 7
        [-1, 1, CBAM, [1024, 8, 3]]    # r = 8, k = 3

    Args:
        c1: input (= output) channels C.
        reduction: the channel MLP's reduction ratio r (paper: 16).
        kernel_size: k of the spatial gate's convolution, odd (paper: 7).
    """

    def __init__(self, c1: int, reduction: int = 16, kernel_size: int = 7) -> None:
        super().__init__()
        if int(reduction) < 1:
            raise ValueError(f"CBAM reduction must be a positive integer, got {reduction}")
        if int(kernel_size) < 1 or int(kernel_size) % 2 == 0:
            raise ValueError(f"CBAM kernel_size must be a positive odd integer, got {kernel_size}")
        self.c1 = c1
        self.reduction = int(reduction)
        self.kernel_size = int(kernel_size)
        self.hidden = max(c1 // self.reduction, 1)
        self.fc1 = nn.Conv2d(c1, self.hidden, 1, bias=True)  # W0, b0 (shared by both pooled vectors)
        self.fc2 = nn.Conv2d(self.hidden, c1, 1, bias=True)  # W1, b1
        self.spatial_conv = nn.Conv2d(2, 1, self.kernel_size, padding=self.kernel_size // 2, bias=False)
        self.spatial_bn = FallbackBatchNorm2d(1)

    def mlp(self, v: torch.Tensor) -> torch.Tensor:
        """The shared MLP on a pooled (B, C, 1, 1) tensor."""
        return self.fc2(F.relu(self.fc1(v)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        wide = torch.promote_types(x.dtype, torch.float32)  # means over many values in >= fp32
        avg = x.to(wide).mean((2, 3), keepdim=True).to(x.dtype)  # (B, C, 1, 1)
        mx = x.amax(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
        mc = torch.sigmoid(self.mlp(avg) + self.mlp(mx)).to(x.dtype)  # (B, C, 1, 1)
        xc = x * mc  # (B, C, H, W)
        pooled = torch.cat([xc.to(wide).mean(1, keepdim=True).to(x.dtype), xc.amax(1, keepdim=True)], 1)  # (B, 2, H, W)
        ms = torch.sigmoid(self.spatial_bn(self.spatial_conv(pooled))).to(x.dtype)  # (B, 1, H, W)
        return xc * ms

    def extra_repr(self) -> str:
        return f"c1={self.c1}, reduction={self.reduction}, kernel_size={self.kernel_size}, hidden={self.hidden}"

    def functional_flops(self, inputs: tuple, output: torch.Tensor) -> int:
        """FLOPs outside the convolutions (which thop counts), with n = B·C·H·W and p = B·H·W.

        Channel gate: average pool n + B·C (sums, divisions), max pool n (comparisons), ReLU 2·B·(C//r)
        (two pooled vectors), the sum of the two MLP outputs B·C, sigmoid B·C, product with x n.
        Spatial gate: channel mean n + p, channel max n, the BatchNorm (a subclass thop skips) 2·p,
        sigmoid p, product n. Total ``6·n + 3·B·C + 2·B·(C//r) + 4·p``.
        """
        x = inputs[0]
        b, c, h, w = (int(s) for s in x.shape)
        n, p = b * c * h * w, b * h * w
        channel = 3 * n + 3 * b * c + 2 * b * self.hidden
        spatial = 3 * n + p + batchnorm_flops(p) + p
        return channel + spatial
