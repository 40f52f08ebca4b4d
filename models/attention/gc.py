"""GCAttention: the global context block of GCNet.

Cao, Xu, Lin, Wei, Hu, "GCNet: Non-local Networks Meet Squeeze-Excitation Networks and Beyond",
ICCV Workshops 2019, arXiv 1904.11492.

One attention map shared by every query position (the paper's simplified non-local block), followed by an
SE-like bottleneck transform with LayerNorm, fused into every position by addition.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from models.attention.base import Attention
from models.attention.flops import numel, softmax_flops

_MIN_PLANES = 8  # smallest bottleneck width: int(C/16) is 0..2 for the small channel counts of n-size models
_POOLINGS = ("att", "avg")
_FUSIONS = {"add": ("add",), "mul": ("mul",), "both": ("mul", "add")}


def _bottleneck(c1: int, planes: int) -> nn.Sequential:
    """The transform: 1×1 conv C -> P, LayerNorm over [P, 1, 1], ReLU, 1×1 conv P -> C (last conv zeroed)."""
    seq = nn.Sequential(
        nn.Conv2d(c1, planes, 1),
        nn.LayerNorm([planes, 1, 1]),
        nn.ReLU(inplace=True),
        nn.Conv2d(planes, c1, 1))
    nn.init.zeros_(seq[-1].weight)  # the paper's zero init of the last layer: the block starts as identity
    nn.init.zeros_(seq[-1].bias)
    return seq


class GCAttention(Attention, aliases=("GlobalContext", "ContextBlock")):
    """Global context (GC) block (Cao et al., "GCNet: Non-local Networks Meet Squeeze-Excitation Networks
    and Beyond", ICCV Workshops 2019, arXiv 1904.11492).

    With x of shape (B, C, H, W), P = ``max(int(C · ratio), 8)`` and positions j = 1..H·W::

        α_j   = softmax_j(W_k x_j)                          context modelling: 1×1 conv C -> 1, softmax over H·W
        ctx   = Σ_j α_j · x_j                               (B, C, 1, 1)
        t     = W_v2 · ReLU(LN(W_v1 · ctx))                 transform: 1×1 C -> P, LayerNorm([P,1,1]), 1×1 P -> C
        out_i = x_i + t                                     fusion by addition (broadcast over positions)

    Options from the paper's ablations and official code: ``pooling="avg"`` replaces the attention pooling
    by global average pooling (the SE-like variant); ``fusion="mul"`` scales instead of adding
    (``x · sigmoid(t_mul)``) and ``fusion="both"`` does both (scale, then add). The last conv of each transform is
    zero-initialised as in the official code, so the block starts as the identity (``"add"``).

    Differences from the paper: the bottleneck width is at least 8 (``int(C/16)`` is 0 to 2 for the channel
    counts of n-size models); the softmax runs in fp32 (H·W logits) and is cast back to the input dtype.
    The ReLU counts as 0 FLOPs (thop's convention).

    Parameters at C = 1024 (P = 64), defaults: 2·C·P + 2·C + 3·P + 1 = 133,313.

    yaml example::

        [-1, 1, GCAttention, [1024]]                # ratio 1/16, attention pooling, additive fusion
        [-1, 1, GCAttention, [1024, 0.25, avg]]     # ratio 1/4, average pooling

    Args:
        c1: input (= output) channels C.
        ratio: bottleneck ratio r of the transform, P = max(int(C · r), 8).
        pooling: ``"att"`` (context modelling, the paper's default) or ``"avg"``.
        fusion: ``"add"`` (default), ``"mul"`` or ``"both"``.
    """

    def __init__(self, c1: int, ratio: float = 1 / 16, pooling: str = "att", fusion: str = "add") -> None:
        super().__init__()
        if pooling not in _POOLINGS:
            raise ValueError(f"GCAttention pooling must be one of {_POOLINGS}, got {pooling!r}")
        if fusion not in _FUSIONS:
            raise ValueError(f"GCAttention fusion must be one of {tuple(_FUSIONS)}, got {fusion!r}")
        self.c1 = c1
        self.ratio = ratio
        self.planes = max(int(c1 * ratio), _MIN_PLANES)
        self.pooling = pooling
        self.fusion = fusion
        if pooling == "att":
            self.conv_mask = nn.Conv2d(c1, 1, 1)  # W_k: one attention logit per position
            nn.init.kaiming_normal_(self.conv_mask.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(self.conv_mask.bias)
        fusions = _FUSIONS[fusion]
        self.channel_mul_conv = _bottleneck(c1, self.planes) if "mul" in fusions else None
        self.channel_add_conv = _bottleneck(c1, self.planes) if "add" in fusions else None

    def spatial_pool(self, x: torch.Tensor) -> torch.Tensor:
        """Global context of each image: the attention-weighted (or plain) mean over positions, (B, C, 1, 1)."""
        if self.pooling == "avg":
            return x.mean((2, 3), keepdim=True)  # (B, C, 1, 1)
        logits = self.conv_mask(x).flatten(2)  # (B, 1, H*W)
        w = logits.to(torch.promote_types(logits.dtype, torch.float32)).softmax(dim=-1)  # (B, 1, H*W), fp32
        ctx = torch.matmul(x.flatten(2), w.to(x.dtype).transpose(1, 2))  # (B, C, H*W) @ (B, H*W, 1) -> (B, C, 1)
        return ctx.unsqueeze(-1)  # (B, C, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ctx = self.spatial_pool(x)  # (B, C, 1, 1)
        out = x
        if self.channel_mul_conv is not None:
            out = out * torch.sigmoid(self.channel_mul_conv(ctx))  # (B, C, H, W) · (B, C, 1, 1)
        if self.channel_add_conv is not None:
            out = out + self.channel_add_conv(ctx)  # (B, C, H, W) + (B, C, 1, 1)
        return out

    def extra_repr(self) -> str:
        return f"c1={self.c1}, ratio={self.ratio}, planes={self.planes}, pooling={self.pooling}, fusion={self.fusion}"

    def functional_flops(self, inputs: tuple, output: torch.Tensor) -> int:
        """FLOPs outside the convs and LayerNorms (which thop counts); multiply-add = 2.

        * attention pooling: softmax over H·W (3 per position) + the weighted sum (2 per element of x);
          average pooling: 1 add per element of x + 1 division per (image, channel);
        * ``mul`` fusion: a sigmoid per (image, channel) and a product per element;
        * ``add`` fusion: an addition per element.
        """
        x = inputs[0]
        n = numel(x.shape)  # B·C·H·W
        bc = numel(x.shape[:2])  # B·C
        if self.pooling == "att":
            positions = int(x.shape[0]) * numel(x.shape[2:])  # B·H·W logits
            flops = softmax_flops(positions) + 2 * n  # softmax; Σ_j α_j x_j
        else:
            flops = n + bc
        if self.channel_mul_conv is not None:
            flops += bc + n
        if self.channel_add_conv is not None:
            flops += n
        return flops
