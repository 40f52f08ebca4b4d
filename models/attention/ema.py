"""EMAttention: the efficient multi-scale attention (EMA) module.

Ouyang et al., "Efficient Multi-Scale Attention Module with Cross-Spatial Learning", ICASSP 2023,
arXiv 2305.13563.

Channels are split into G groups. In each group a 1×1 branch encodes the two directional means (as
coordinate attention does) and a 3×3 branch encodes local context; each branch's globally pooled channel
descriptor, through a softmax, weights the *other* branch's features, and the sum of the two resulting
spatial maps, through a sigmoid, gates the group.

The class is not named ``EMA``, which would read as the model's exponential moving average (``ModelEMA``).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.attention.base import Attention, AttentionMap
from models.attention.flops import softmax_flops


def ema_groups(c1: int, groups: int) -> int:
    """The largest G <= ``groups`` that divides ``c1`` (at least 1)."""
    g = max(min(int(groups), int(c1)), 1)
    while c1 % g:
        g -= 1
    return g


class EMAttention(Attention, aliases=("EMA_attention", "EMAModule")):
    """Efficient Multi-Scale Attention Module with Cross-Spatial Learning (Daliang Ouyang et al.; ICASSP 2023;
    arXiv 2305.13563).

    x (B, C, H, W) is viewed as B·G groups x_g of c = C/G channels; per group::

        z^H = mean_w(x_g)  (c, H, 1),   z^W = mean_h(x_g)  (c, 1, W)     directional pooling
        [s^H; s^W] = conv1×1([z^H; z^W])                                 one shared 1×1 conv c -> c
        x1 = GN(x_g · sigmoid(s^H) · sigmoid(s^W))                       1×1 branch, re-weighted, GroupNorm
        x2 = conv3×3(x_g)                                                3×3 branch (padding 1)
        a1 = softmax_c(mean_hw(x1)),  a2 = softmax_c(mean_hw(x2))        (1, c) channel descriptors
        M  = a1 · x2 + a2 · x1                                           cross-spatial: (1, c) @ (c, H·W) each
        out = x_g · sigmoid(M)                                           (1, H, W) map shared by the group

    The GroupNorm has c groups of one channel (each channel normalised over its H·W positions, with its own
    affine), as in the official code. G is 32 by default (the official code's ``factor``), reduced to the
    largest divisor of C; C = 16 gives 16 groups of one channel, where both softmaxes are 1 and the map is
    ``x1 + x2``. The directional means, the GroupNorm and the softmaxes run in at least fp32 and are cast back.
    The official code follows the paper's description, so no variant is offered.

    Parameters (both convs with bias, GN affine): ``10·c² + 4·c`` with c = C/G, i.e. 672 at C = 256 (G = 32,
    c = 8).

    yaml example::

        [-1, 1, EMAttention, [1024]]         # G = 32
        [-1, 1, EMA_attention, [1024, 8]]    # G = 8

    Args:
        c1: input (= output) channels C.
        groups: the number of groups G (the official ``factor``; upper bound, reduced to a divisor of C).
    """

    def __init__(self, c1: int, groups: int = 32) -> None:
        super().__init__()
        self.c1 = c1
        self.groups = ema_groups(c1, groups)
        c = c1 // self.groups
        self.conv1x1 = nn.Conv2d(c, c, 1)
        self.conv3x3 = nn.Conv2d(c, c, 3, padding=1)
        self.gn = nn.GroupNorm(c, c)  # parameters only: applied in fp32 through F.group_norm

    def spatial_map(self, x: torch.Tensor) -> torch.Tensor:
        """The pre-sigmoid cross-spatial map M of every group, (B*G, 1, H, W), in at least fp32."""
        h, w = x.shape[-2:]
        c = self.c1 // self.groups
        ft = torch.promote_types(x.dtype, torch.float32)
        xg = x.reshape(-1, c, h, w)  # (B*G, c, H, W)
        zh = xg.to(ft).mean(3, keepdim=True)  # (B*G, c, H, 1)
        zw = xg.to(ft).mean(2, keepdim=True)  # (B*G, c, 1, W)
        # The shared 1×1 conv is pointwise, so applying it to each strip equals applying it to their concatenation.
        sh = torch.sigmoid(self.conv1x1(zh.to(x.dtype)).to(ft))  # (B*G, c, H, 1)
        sw = torch.sigmoid(self.conv1x1(zw.to(x.dtype)).to(ft))  # (B*G, c, 1, W)
        x1 = F.group_norm(xg.to(ft) * sh * sw, c, self.gn.weight.to(ft), self.gn.bias.to(ft), self.gn.eps)
        x2 = self.conv3x3(xg).to(ft)  # (B*G, c, H, W)
        a1 = x1.mean((2, 3)).softmax(-1).unsqueeze(1)  # (B*G, 1, c)
        a2 = x2.mean((2, 3)).softmax(-1).unsqueeze(1)  # (B*G, 1, c)
        with torch.autocast(device_type=x.device.type, enabled=False):  # keep the products in fp32
            m = torch.matmul(a1, x2.flatten(2)) + torch.matmul(a2, x1.flatten(2))  # (B*G, 1, H*W)
        return m.reshape(-1, 1, h, w)  # (B*G, 1, H, W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        s = torch.sigmoid(self.spatial_map(x)).to(x.dtype)  # (B*G, 1, H, W)
        out = x.reshape(-1, self.c1 // self.groups, h, w) * s  # (B*G, c, H, W)
        return out.reshape(-1, self.c1, h, w)  # (B, C, H, W)

    def extra_repr(self) -> str:
        return f"c1={self.c1}, groups={self.groups}"

    @torch.no_grad()
    def attention_map(self, inputs: tuple, output: torch.Tensor) -> AttentionMap:
        """The gate sigmoid(M) averaged over the groups, (B, H, W); the channel map is the generic gain."""
        x = inputs[0]
        h, w = x.shape[-2:]
        s = torch.sigmoid(self.spatial_map(x)).float().reshape(-1, self.groups, h, w)  # (B, G, H, W)
        return AttentionMap(spatial=s.mean(1), spatial_label="EMA gate sigmoid(M), mean over groups")

    def functional_flops(self, inputs: tuple, output: torch.Tensor) -> int:
        """FLOPs outside the two convs (which thop counts), with n = B·C·H·W and p = B·G·H·W.

        Directional means 2·n + B·C·(H + W) (sums, divisions); their sigmoids B·C·(H + W); the re-weighting
        2·n; the GroupNorm 7·n + 3·B·C (as in ShuffleAttention's count); the two global means 2·n + 2·B·C;
        two softmaxes over c 2·3·B·C; the two (1, c) @ (c, H·W) products 4·n and their sum p; the sigmoid p
        and the gating product n. Total ``18·n + 11·B·C + 2·B·C·(H + W) + 2·p``.
        """
        x = inputs[0]
        b, c, h, w = (int(s) for s in x.shape)
        n, bc, p = b * c * h * w, b * c, b * self.groups * h * w
        return 18 * n + 5 * bc + softmax_flops(2 * bc) + 2 * bc * (h + w) + 2 * p
