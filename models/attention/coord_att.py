"""Coordinate attention.

Hou, Zhou, Feng, "Coordinate Attention for Efficient Mobile Network Design", CVPR 2021, arXiv 2103.02907.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from models.attention.base import Attention
from models.attention.flops import numel


def h_swish(x: torch.Tensor) -> torch.Tensor:
    """Hard swish ``x · ReLU6(x + 3) / 6`` in elementary operations (exports as Clip/Mul/Div at any opset)."""
    return x * (x + 3).clamp(0.0, 6.0) / 6.0


class CoordAtt(Attention, aliases=("CA",)):
    """Coordinate Attention for Efficient Mobile Network Design (Qibin Hou, Daquan Zhou, Jiashi Feng;
    CVPR 2021; arXiv 2103.02907).

    Channel attention factorised into two 1-D encodings that keep the position along the other axis
    (mip = max(8, C // r))::

        zh  = mean_w(x)                                   (B, C, H, 1)  pooled along the width
        zw  = mean_h(x), transposed                       (B, C, W, 1)  pooled along the height
        f   = h_swish(BN(conv1x1_{C->mip}([zh; zw])))     concatenated along the spatial axis, (B, mip, H+W, 1)
        fh, fw = split f into its first H and last W rows
        gh  = sigmoid(conv1x1_{mip->C}(fh))               (B, C, H, 1)
        gw  = sigmoid(conv1x1_{mip->C}(fw)), transposed   (B, C, 1, W)
        out = x · gh · gw

    The 1×1 convs have biases (as in the authors' code). The means are taken over one axis in fp32 (no
    ``AdaptiveAvgPool2d((None, 1))``, which does not export with dynamic shapes) and cast back; the split
    is done by slicing, so the H/W boundary stays dynamic in ONNX. The BatchNorm sees the H + W ≥ 2 values
    of the strip per channel and image, so a batch-1 training call on a 1×1 map does not fail; it is a plain
    ``nn.BatchNorm2d``.

    Parameters: ``3·C·mip + 2·C + 3·mip``, e.g. 25,648 at C = 512 (mip = 16).

    Also resolvable as ``CA`` (the name some YOLO forks use). Forks' yaml ``[1024, 32]`` means the same
    here: the nominal channels, then the reduction.

    yaml example::

        [-1, 1, CoordAtt, [1024]]       # r = 32
        [-1, 1, CoordAtt, [1024, 16]]   # r = 16

    Args:
        c1: input (= output) channels C.
        reduction: r; the hidden width is ``mip = max(8, C // r)`` (paper: r = 32).
    """

    def __init__(self, c1: int, reduction: int = 32) -> None:
        super().__init__()
        if int(reduction) < 1:
            raise ValueError(f"CoordAtt reduction must be a positive integer, got {reduction}")
        self.c1 = c1
        self.reduction = int(reduction)
        self.mip = max(8, c1 // self.reduction)
        self.conv1 = nn.Conv2d(c1, self.mip, 1, bias=True)
        self.bn1 = nn.BatchNorm2d(self.mip)
        self.conv_h = nn.Conv2d(self.mip, c1, 1, bias=True)
        self.conv_w = nn.Conv2d(self.mip, c1, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.shape[2]  # an int, or a traced size while exporting (the slices below stay dynamic)
        xf = x.to(torch.promote_types(x.dtype, torch.float32))  # means in >= fp32
        zh = xf.mean(3, keepdim=True).to(x.dtype)  # (B, C, H, 1)
        zw = xf.mean(2, keepdim=True).to(x.dtype).transpose(2, 3)  # (B, C, 1, W) -> (B, C, W, 1)
        f = h_swish(self.bn1(self.conv1(torch.cat([zh, zw], 2))))  # (B, mip, H+W, 1)
        gh = torch.sigmoid(self.conv_h(f[:, :, :h]))  # (B, C, H, 1)
        gw = torch.sigmoid(self.conv_w(f[:, :, h:])).transpose(2, 3)  # (B, C, W, 1) -> (B, C, 1, W)
        return x * gh.to(x.dtype) * gw.to(x.dtype)

    def extra_repr(self) -> str:
        return f"c1={self.c1}, reduction={self.reduction}, mip={self.mip}"

    def functional_flops(self, inputs: tuple, output: torch.Tensor) -> int:
        """FLOPs outside the convs and the BatchNorm (which thop counts), with n = B·C·H·W.

        The two means: 2·n additions and B·C·(H+W) divisions; h_swish: 4 per element of the
        (B, mip, H+W) strip (+3, clamp, product, /6); the two sigmoids: B·C·(H+W); the two products with
        x: 2·n. Total ``4·n + 2·B·C·(H+W) + 4·B·mip·(H+W)``.
        """
        b, c, h, w = (int(s) for s in inputs[0].shape)
        n = numel(inputs[0].shape)
        return 4 * n + 2 * b * c * (h + w) + 4 * b * self.mip * (h + w)
