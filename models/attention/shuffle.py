"""ShuffleAttention: the shuffle attention (SA) module of SA-Net.

Zhang, Yang, "SA-Net: Shuffle Attention for Deep Convolutional Neural Networks", ICASSP 2021,
arXiv 2102.00240.

Channels are split into G groups; each group is split in two halves, one gated per channel (from global
average pooling), the other gated per position (from a group norm); the halves are concatenated and the
channels shuffled so that information flows between the groups.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.attention.base import Attention
from models.attention.flops import numel


def shuffle_groups(c1: int, groups: int) -> int:
    """The largest G <= ``groups`` with ``c1 % (2·G) == 0`` (SA splits every group into two halves).

    Raises:
        ValueError: ``c1`` is odd, so no G works.
    """
    if c1 < 2 or c1 % 2:
        raise ValueError(f"ShuffleAttention needs an even channel count, got {c1}")
    g = max(min(int(groups), c1 // 2), 1)
    while c1 % (2 * g):
        g -= 1
    return g


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's channel shuffle: (B, g·n, H, W) viewed as (B, g, n, H, W), transposed to (B, n, g, H, W)."""
    c = int(x.shape[1])
    h, w = x.shape[-2:]
    x = x.reshape(-1, groups, c // groups, h, w).transpose(1, 2)  # (B, g, n, H, W) -> (B, n, g, H, W)
    return x.reshape(-1, c, h, w)  # (B, C, H, W)


class ShuffleAttention(Attention):
    """Shuffle attention (Zhang, Yang, "SA-Net: Shuffle Attention for Deep Convolutional Neural Networks",
    ICASSP 2021, arXiv 2102.00240).

    x (B, C, H, W) is viewed as B·G sub-features of C/G channels, each split into two halves x₁, x₂ of
    c = C/(2G) channels; with per-channel parameters W₁, b₁, W₂, b₂ of shape (1, c, 1, 1)::

        x₁' = x₁ · sigmoid(W₁ · mean_hw(x₁) + b₁)          channel attention
        x₂' = x₂ · sigmoid(W₂ · GN(x₂) + b₂)               spatial attention; GN with c groups (per channel)
        out = channel_shuffle(cat[x₁', x₂'] viewed as (B, C, H, W), 2)

    As in the official code, W₁ and W₂ start at 0 and b₁, b₂ at 1, and the GroupNorm keeps its own affine
    (``gn.weight``, ``gn.bias``). G defaults to 64 (the paper's value) and is reduced automatically to the
    largest G with C divisible by 2G; C must be even. The group norm runs in fp32 and is cast back, so its
    variance (which exceeds fp16's range for activations above about 256) never depends on how a backend
    accumulates fp16. Parameters: 6·C/(2G), i.e. 24 at C = 512.

    yaml example::

        [-1, 1, ShuffleAttention, [1024]]       # G = 64
        [-1, 1, ShuffleAttention, [1024, 8]]    # G = 8

    Args:
        c1: input (= output) channels C.
        groups: the number of groups G (upper bound; reduced so that C % (2G) == 0).
    """

    def __init__(self, c1: int, groups: int = 64) -> None:
        super().__init__()
        self.c1 = c1
        self.groups = shuffle_groups(c1, groups)
        c = c1 // (2 * self.groups)  # channels per half-group
        self.cweight = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.cbias = nn.Parameter(torch.ones(1, c, 1, 1))
        self.sweight = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.sbias = nn.Parameter(torch.ones(1, c, 1, 1))
        self.gn = nn.GroupNorm(c, c)  # parameters only: forward applies it in fp32 through F.group_norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        c = self.gn.num_channels
        x0, x1 = x.reshape(-1, 2 * c, h, w).chunk(2, dim=1)  # (B*G, 2c, H, W) -> 2 × (B*G, c, H, W)

        s = x0.mean((2, 3), keepdim=True)  # (B*G, c, 1, 1)
        xn = x0 * torch.sigmoid(self.cweight * s + self.cbias).to(x.dtype)

        ft = torch.promote_types(x.dtype, torch.float32)
        gn = F.group_norm(x1.to(ft), c, self.gn.weight.to(ft), self.gn.bias.to(ft), self.gn.eps)  # (B*G, c, H, W)
        xs = x1 * torch.sigmoid(self.sweight.to(ft) * gn + self.sbias.to(ft)).to(x.dtype)

        out = torch.cat([xn, xs], dim=1).reshape(-1, self.c1, h, w)  # (B*G, 2c, H, W) -> (B, C, H, W)
        return channel_shuffle(out, 2)

    def extra_repr(self) -> str:
        return f"c1={self.c1}, groups={self.groups}"

    def functional_flops(self, inputs: tuple, output: torch.Tensor) -> int:
        """FLOPs of the whole module (no child module is called, so thop counts none of it).

        Per element of each half (n/2 elements each, n = B·C·H·W) and per (image, group, channel) pair
        (B·C/2 of them in each half):

        * channel half: mean 1, product 1 per element; division, affine (2), sigmoid per pair;
        * spatial half: group norm 7 per element (mean, subtract, square-accumulate 2, scale, affine 2) and
          3 per pair (÷n, +eps, rsqrt); affine 2, sigmoid 1, product 1 per element.

        The concatenation and the channel shuffle move data only.
        """
        x = inputs[0]
        half = numel(x.shape) // 2
        pairs = numel(x.shape[:2]) // 2
        return (2 * half + 4 * pairs) + (11 * half + 3 * pairs)
