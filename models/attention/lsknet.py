"""LSKBlock: the large selective kernel module of LSKNet.

Li, Hou, Zheng, Cheng, Yang, Li, "Large Selective Kernel Network for Remote Sensing Object Detection",
ICCV 2023, arXiv 2303.09030.

Two depthwise convs in sequence (a large receptive field decomposed into a 5×5 and a dilated 7×7 kernel), each
reduced to C/2 channels; a spatial selection (channel-wise average and max pooling, a 7×7 conv, one sigmoid map
per kernel) weights the two, and a 1×1 conv turns the mix into a gate on the input.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from models.attention.base import Attention, AttentionMap
from models.attention.flops import numel


class LSKBlock(Attention, aliases=("LSKNetAttention",)):
    """The LSK module (Yuxuan Li, Qibin Hou, Zhaohui Zheng, Ming-Ming Cheng, Jian Yang, Xiang Li, "Large Selective
    Kernel Network for Remote Sensing Object Detection", ICCV 2023, arXiv 2303.09030).

    With C' = max(C // 2, 1) and every conv with bias and 'same' zero padding::

        U1    = DW_{5×5}(x)                                  large kernel decomposition: receptive field 23
        U2    = DW_{7×7, dilation 3}(U1)
        Ũi    = W_i · Ui + b_i                               1×1 conv C -> C', i = 1, 2
        Ũ     = [Ũ1; Ũ2]                                     (B, 2C', H, W)
        SA    = [mean_c(Ũ); max_c(Ũ)]                        channel pooling, (B, 2, H, W)
        σ1,σ2 = sigmoid(conv_{7×7, 2->2}(SA))                spatial selection, one map per kernel
        S     = W_o · (σ1 · Ũ1 + σ2 · Ũ2) + b_o              1×1 conv C' -> C
        out   = x · S

    This is the LSK module itself (LSKNet's block wraps it in 1×1 projections, GELU and a shortcut). The
    channel mean runs in fp32 and is cast back.

    Parameters: 25·C + C + 49·C + C + 2·(C·C' + C') + 2·2·49 + 2 + C'·C + C, i.e. 118,470 at C = 256 (C' = 128).

    yaml example::

        [-1, 1, LSKBlock, [1024]]

    Args:
        c1: input (= output) channels C.
    """

    def __init__(self, c1: int) -> None:
        super().__init__()
        self.c1 = c1
        self.hidden = max(c1 // 2, 1)
        self.conv0 = nn.Conv2d(c1, c1, 5, padding=2, groups=c1)
        self.conv_spatial = nn.Conv2d(c1, c1, 7, padding=9, dilation=3, groups=c1)
        self.conv1 = nn.Conv2d(c1, self.hidden, 1)
        self.conv2 = nn.Conv2d(c1, self.hidden, 1)
        self.conv_squeeze = nn.Conv2d(2, 2, 7, padding=3)
        self.conv = nn.Conv2d(self.hidden, c1, 1)

    def selection(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Ũ1, Ũ2 (B, C', H, W) and the selection maps σ (B, 2, H, W)."""
        u1 = self.conv0(x)
        u2 = self.conv_spatial(u1)
        a1, a2 = self.conv1(u1), self.conv2(u2)  # (B, C', H, W) each
        u = torch.cat([a1, a2], dim=1)  # (B, 2C', H, W)
        avg = u.to(torch.promote_types(u.dtype, torch.float32)).mean(1, keepdim=True).to(u.dtype)  # (B, 1, H, W)
        mx = u.amax(1, keepdim=True)  # (B, 1, H, W)
        sig = torch.sigmoid(self.conv_squeeze(torch.cat([avg, mx], dim=1)))  # (B, 2, H, W)
        return a1, a2, sig

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a1, a2, sig = self.selection(x)
        s = self.conv(a1 * sig[:, 0:1] + a2 * sig[:, 1:2])  # (B, C, H, W)
        return x * s.to(x.dtype)

    def extra_repr(self) -> str:
        return f"c1={self.c1}, hidden={self.hidden}"

    @torch.no_grad()
    def attention_map(self, inputs: tuple, output: torch.Tensor) -> AttentionMap:
        """The selection weight of the large (dilated) kernel, σ2 / (σ1 + σ2), (B, H, W): 0.5 = no preference."""
        _, _, sig = self.selection(inputs[0])
        sig = sig.float()
        return AttentionMap(spatial=sig[:, 1] / (sig[:, 0] + sig[:, 1]),
                            spatial_label="LSK selection of the large kernel σ2/(σ1+σ2)")

    def functional_flops(self, inputs: tuple, output: torch.Tensor) -> int:
        """FLOPs outside the convs (which thop counts), with n = B·C·H·W, m = B·C'·H·W and p = B·H·W:

        channel mean 2·m + p and max 2·m over the 2C' channels, two sigmoids 2·p, the weighted sum 3·m
        (two products, one sum), the product with x n. Total ``n + 7·m + 3·p``.
        """
        x = inputs[0]
        b, _, h, w = (int(s) for s in x.shape)
        p = b * h * w
        m = p * self.hidden
        return numel(x.shape) + 7 * m + 3 * p
