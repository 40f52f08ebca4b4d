"""YOLOv5 v6.1 layers.

Class names, constructor signatures and attribute names are those of YOLOv5 v6.1: official checkpoints pickle
these classes by their dotted path (``models.common.Conv``...) and their attributes form the state-dict keys.
Each class is registered with its channel rule (see ``models/registry.py``), so parse_model never names one.

``CrossConv``, ``MixConv2d`` and ``Sum`` (v6.1's ``models/experimental.py`` layers) are defined here and re-exported by
``models.experimental``, which sits above ``models.yolo``. The attention classes (``models/attention/``) are re-exported
at the bottom so that checkpoints pickled by forks as ``models.common.NAMAttention`` and friends still load, and so are
``DetectMultiBackend``, ``AutoShape`` and ``Detections`` (lazily: models/backends.py and autoshape.py import this one).
"""

from __future__ import annotations

import importlib
import math

import numpy as np
import torch
import torch.nn as nn

from models.c3_attention import add_attention
from models.registry import concat, contract, conv, conv_repeat, expand, register
from utils.torch_utils import fuse_conv_and_bn


def autopad(k: int | tuple, p: int | tuple | None = None) -> int | list:
    """'Same' padding for an odd kernel ``k`` unless ``p`` is given."""
    if p is None:
        p = k // 2 if isinstance(k, int) else [x // 2 for x in k]
    return p


@register(rule=conv)
class Conv(nn.Module):
    """Conv2d (no bias) + BatchNorm2d + SiLU: the YOLOv5 convolution block."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None, g: int = 1,
                 act: bool | nn.Module = True):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, autopad(k, p), groups=g, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = nn.SiLU() if act is True else (act if isinstance(act, nn.Module) else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not hasattr(self, "bn"):  # fused
            return self.forward_fuse(x)
        return self.act(self.bn(self.conv(x)))

    def forward_fuse(self, x: torch.Tensor) -> torch.Tensor:
        """Forward after the BatchNorm was folded into ``conv``."""
        return self.act(self.conv(x))

    def fuse_layers(self) -> None:
        """Fold ``bn`` into ``conv``; ``Model.fuse()`` calls this on every module that has it."""
        if hasattr(self, "bn"):
            self.conv = fuse_conv_and_bn(self.conv, self.bn)
            delattr(self, "bn")


@register(rule=conv)
class DWConv(Conv):
    """Depth-wise convolution: groups = gcd(c1, c2)."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, act: bool | nn.Module = True):
        super().__init__(c1, c2, k, s, g=math.gcd(c1, c2), act=act)


class TransformerLayer(nn.Module):
    """Transformer layer without LayerNorm (arXiv 2010.11929, LayerNorm removed for speed)."""

    def __init__(self, c: int, num_heads: int):
        super().__init__()
        self.q = nn.Linear(c, c, bias=False)
        self.k = nn.Linear(c, c, bias=False)
        self.v = nn.Linear(c, c, bias=False)
        self.ma = nn.MultiheadAttention(embed_dim=c, num_heads=num_heads)
        self.fc1 = nn.Linear(c, c, bias=False)
        self.fc2 = nn.Linear(c, c, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (L, B, c)
        x = self.ma(self.q(x), self.k(x), self.v(x))[0] + x
        return self.fc2(self.fc1(x)) + x


@register()
class TransformerBlock(nn.Module):
    """Optional 1×1 Conv, learnable position embedding, ``num_layers`` TransformerLayers over H·W tokens."""

    def __init__(self, c1: int, c2: int, num_heads: int, num_layers: int):
        super().__init__()
        self.conv = Conv(c1, c2) if c1 != c2 else None
        self.linear = nn.Linear(c2, c2)
        self.tr = nn.Sequential(*(TransformerLayer(c2, num_heads) for _ in range(num_layers)))
        self.c2 = c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv is not None:
            x = self.conv(x)
        b, _, h, w = x.shape
        p = x.flatten(2).permute(2, 0, 1)  # (B, c2, H, W) -> (H*W, B, c2) tokens
        return self.tr(p + self.linear(p)).permute(1, 2, 0).reshape(b, self.c2, h, w)


@register(rule=conv)
class Bottleneck(nn.Module):
    """1×1 Conv -> 3×3 Conv, with a residual when ``shortcut`` and c1 == c2."""

    def __init__(self, c1: int, c2: int, shortcut: bool = True, g: int = 1, e: float = 0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_, c2, 3, 1, g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


@register(rule=conv_repeat)
class BottleneckCSP(nn.Module):
    """CSP Bottleneck (arXiv 1911.11929)."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = nn.Conv2d(c1, c_, 1, 1, bias=False)
        self.cv3 = nn.Conv2d(c_, c_, 1, 1, bias=False)
        self.cv4 = Conv(2 * c_, c2, 1, 1)
        self.bn = nn.BatchNorm2d(2 * c_)
        self.act = nn.SiLU()
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut, g, e=1.0) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y1 = self.cv3(self.m(self.cv1(x)))
        y2 = self.cv2(x)
        return self.cv4(self.act(self.bn(torch.cat((y1, y2), 1))))


@register(rule=conv_repeat)
class C3(nn.Module):
    """CSP Bottleneck with 3 convolutions; ``attention`` (a registered attention module's name) adds one in each
    bottleneck or after ``cv3`` (``where``, see ``models/blocks.py``). Without it, v6.1's C3 key for key."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5,
                 attention: str | None = None, where: str = "bottleneck", attention_args: list | tuple = ()):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c1, c_, 1, 1)
        self.cv3 = Conv(2 * c_, c2, 1)
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut, g, e=1.0) for _ in range(n)))
        if attention:
            add_attention(self, attention, where, attention_args)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))
        att = getattr(self, "att", None)  # only where="output" sets it (v6.1 pickles have no such attribute)
        return y if att is None else att(y)


@register(rule=conv_repeat)
class C3TR(C3):
    """C3 with a TransformerBlock in place of the bottlenecks."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5):
        super().__init__(c1, c2, n, shortcut, g, e)
        c_ = int(c2 * e)
        self.m = TransformerBlock(c_, c_, 4, n)


@register(rule=conv)
class C3SPP(C3):
    """C3 with an SPP block in place of the bottlenecks (``k`` is the third argument; no depth insertion)."""

    def __init__(self, c1: int, c2: int, k: tuple = (5, 9, 13), n: int = 1, shortcut: bool = True, g: int = 1,
                 e: float = 0.5):
        super().__init__(c1, c2, n, shortcut, g, e)
        c_ = int(c2 * e)
        self.m = SPP(c_, c_, k)


@register(rule=conv_repeat)
class C3Ghost(C3):
    """C3 with GhostBottlenecks."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5):
        super().__init__(c1, c2, n, shortcut, g, e)
        c_ = int(c2 * e)
        self.m = nn.Sequential(*(GhostBottleneck(c_, c_) for _ in range(n)))


@register(rule=conv)
class SPP(nn.Module):
    """Spatial Pyramid Pooling (arXiv 1406.4729): parallel max-pools of sizes ``k``."""

    def __init__(self, c1: int, c2: int, k: tuple = (5, 9, 13)):
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_ * (len(k) + 1), c2, 1, 1)
        self.m = nn.ModuleList([nn.MaxPool2d(kernel_size=x, stride=1, padding=x // 2) for x in k])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        return self.cv2(torch.cat([x] + [m(x) for m in self.m], 1))


@register(rule=conv)
class SPPF(nn.Module):
    """SPP-Fast: one max-pool applied three times in series (equal to SPP(k=(5, 9, 13)) for k=5)."""

    def __init__(self, c1: int, c2: int, k: int = 5):
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_ * 4, c2, 1, 1)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat((x, y1, y2, self.m(y2)), 1))


@register(rule=conv)
class Focus(nn.Module):
    """Space-to-depth by pixel sub-sampling, then a Conv: (B, C, H, W) -> (B, c2, H/2, W/2)."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None, g: int = 1,
                 act: bool | nn.Module = True):
        super().__init__()
        self.conv = Conv(c1 * 4, c2, k, s, p, g, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat((x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]), 1))


@register(rule=conv)
class GhostConv(nn.Module):
    """Ghost convolution (arXiv 1911.11907): half the channels from a Conv, half from a cheap depth-wise 5×5."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, g: int = 1, act: bool | nn.Module = True):
        super().__init__()
        c_ = c2 // 2
        self.cv1 = Conv(c1, c_, k, s, None, g, act)
        self.cv2 = Conv(c_, c_, 5, 1, None, c_, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv1(x)
        return torch.cat((y, self.cv2(y)), 1)


@register(rule=conv)
class GhostBottleneck(nn.Module):
    """Ghost bottleneck (arXiv 1911.11907)."""

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 1):
        super().__init__()
        c_ = c2 // 2
        self.conv = nn.Sequential(GhostConv(c1, c_, 1, 1),
                                  DWConv(c_, c_, k, s, act=False) if s == 2 else nn.Identity(),
                                  GhostConv(c_, c2, 1, 1, act=False))
        self.shortcut = nn.Sequential(DWConv(c1, c1, k, s, act=False),
                                      Conv(c1, c2, 1, 1, act=False)) if s == 2 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.shortcut(x)


@register(rule=contract)
class Contract(nn.Module):
    """Space to depth: (b, c, h, w) -> (b, c·s², h/s, w/s), channel = (row_phase·s + col_phase)·c + c_in."""

    def __init__(self, gain: int = 2):
        super().__init__()
        self.gain = gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.size()
        s = self.gain
        x = x.view(b, c, h // s, s, w // s, s)  # (b, c, h/s, row_phase, w/s, col_phase)
        x = x.permute(0, 3, 5, 1, 2, 4).contiguous()  # (b, row_phase, col_phase, c, h/s, w/s)
        return x.view(b, c * s * s, h // s, w // s)


@register(rule=expand)
class Expand(nn.Module):
    """Depth to space, the inverse of Contract: (b, c, h, w) -> (b, c/s², h·s, w·s)."""

    def __init__(self, gain: int = 2):
        super().__init__()
        self.gain = gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.size()
        s = self.gain
        x = x.view(b, s, s, c // s**2, h, w)  # (b, row_phase, col_phase, c', h, w)
        x = x.permute(0, 3, 4, 1, 5, 2).contiguous()  # (b, c', h, row_phase, w, col_phase)
        return x.view(b, c // s**2, h * s, w * s)


@register(rule=concat)
class Concat(nn.Module):
    """Concatenate a list of tensors along dimension ``d``."""

    def __init__(self, dimension: int = 1):
        super().__init__()
        self.d = dimension

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(x, self.d)


@register(rule=conv)
class CrossConv(nn.Module):
    """Cross convolution: (1, k) then (k, 1) Convs, with a residual when ``shortcut`` and c1 == c2."""

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 1, g: int = 1, e: float = 1.0, shortcut: bool = False):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, (1, k), (1, s))
        self.cv2 = Conv(c_, c2, (k, 1), (s, 1), g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


@register(rule=conv)
class MixConv2d(nn.Module):
    """Mixed depth-wise convolution (arXiv 1907.09595): output channels split over kernel sizes ``k``."""

    def __init__(self, c1: int, c2: int, k: tuple = (1, 3), s: int = 1, equal_ch: bool = True):
        super().__init__()
        n = len(k)
        if equal_ch:  # equal channels per group
            i = torch.linspace(0, n - 1e-6, c2).floor()
            c_ = [int((i == g).sum()) for g in range(n)]
        else:  # equal weight count per group: c_g * k_g^2 constant, sum c_g = c2
            inv = 1 / np.array(k, dtype=float) ** 2
            c_ = [int(x) for x in np.round(c2 * inv / inv.sum())]
        self.m = nn.ModuleList([nn.Conv2d(c1, int(cg), kg, s, kg // 2, groups=math.gcd(c1, int(cg)), bias=False)
                                for kg, cg in zip(k, c_)])
        self.bn = nn.BatchNorm2d(c2)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(torch.cat([m(x) for m in self.m], 1)))


@register()
class Sum(nn.Module):
    """Sum of a list of inputs, optionally weighted (arXiv 1911.09070)."""

    def __init__(self, n: int, weight: bool = False):
        super().__init__()
        self.weight = weight
        self.iter = range(n - 1)
        if weight:
            self.w = nn.Parameter(-torch.arange(1.0, n) / 2, requires_grad=True)  # -0.5, -1.0, ...

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        y = x[0]
        if self.weight:
            w = torch.sigmoid(self.w) * 2
            for i in self.iter:
                y = y + x[i + 1] * w[i]
        else:
            for i in self.iter:
                y = y + x[i + 1]
        return y


class Classify(nn.Module):
    """Classification head: (b, c1, h, w) -> (b, c2) via global average pooling and a conv."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None, g: int = 1):
        super().__init__()
        self.aap = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Conv2d(c1, c2, k, s, autopad(k, p), groups=g)
        self.flat = nn.Flatten()

    def forward(self, x: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        z = torch.cat([self.aap(y) for y in (x if isinstance(x, list) else [x])], 1)
        return self.flat(self.conv(z))


from models.attention import Channel_Att, CoTAttention, CotLayer, NAMAttention, SimAM, simam_module  # noqa: E402,F401
importlib.import_module("models.blocks")  # the C3 attention option's blocks and the C3 aliases (C3SE, CBAMC3...)


def __getattr__(name: str):  # v6.1 names of this module defined where they make no import cycle (see the docstring)
    if (m := {"AutoShape": "autoshape", "Detections": "autoshape", "DetectMultiBackend": "backends"}.get(name)) is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"models.{m}"), name)
