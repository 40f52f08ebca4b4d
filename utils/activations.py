"""Activation functions: export-friendly SiLU / Hardswish, and Mish, FReLU and ACON for model yamls and user code.

``nn.SiLU`` and ``nn.Hardswish`` map to single operators that some export targets and older ONNX opsets do
not have; :class:`SiLU` and :class:`Hardswish` compute the same values with ``sigmoid``/``hardtanh`` and products,
which every target supports. ``export.py`` swaps them in for the activations of ``Conv`` blocks before tracing.

The others are the activations YOLOv5 v6.1 ships in this module (same names and constructor arguments):
:class:`Mish` and :class:`MemoryEfficientMish` (Mish: A Self Regularized Non-Monotonic Activation Function,
arXiv:1908.08681), :class:`FReLU` (Funnel Activation for Visual Recognition, arXiv:2007.11824), :class:`AconC` and
:class:`MetaAconC` (Activate or Not: Learning Customized Activation, arXiv:2009.04759).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class SiLU(nn.Module):
    """Export-friendly SiLU (swish): ``x · σ(x)``, numerically the same function as ``nn.SiLU``."""

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


class Hardswish(nn.Module):
    """Export-friendly hard swish: ``x · hardtanh(x + 3, 0, 6) / 6``, the same function as ``nn.Hardswish``."""

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        return x * F.hardtanh(x + 3, 0.0, 6.0) / 6.0


class Mish(nn.Module):
    """Mish: ``x · tanh(softplus(x))``, softplus(x) = ln(1 + eˣ)."""

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        return x * F.softplus(x).tanh()


class MemoryEfficientMish(nn.Module):
    """Mish whose backward keeps only its input: the gradient is recomputed from ``x`` instead of stored graphs.

    d/dx [x·f(x)] = f + x·σ(x)·(1 − f²), f = tanh(softplus(x)).
    """

    class F(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x: torch.Tensor) -> torch.Tensor:
            ctx.save_for_backward(x)
            return x.mul(torch.tanh(F.softplus(x)))

        @staticmethod
        def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
            x = ctx.saved_tensors[0]
            sx = torch.sigmoid(x)
            fx = F.softplus(x).tanh()
            return grad_output * (fx + x * sx * (1 - fx * fx))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.F.apply(x)


class FReLU(nn.Module):
    """Funnel ReLU: ``max(x, T(x))`` with the spatial condition T = BatchNorm(depthwise k×k conv(x)).

    Args:
        c1: channels (in = out).
        k: depthwise kernel size (padding 1, as v6.1: the output keeps its size for k = 3).
    """

    def __init__(self, c1: int, k: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(c1, c1, k, 1, 1, groups=c1, bias=False)
        self.bn = nn.BatchNorm2d(c1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.max(x, self.bn(self.conv(x)))


class AconC(nn.Module):
    """ACON-C: ``d·σ(β·d) + p2·x`` with d = (p1 − p2)·x, learnable per channel p1, p2 and β.

    Args:
        c1: channels.
    """

    def __init__(self, c1: int):
        super().__init__()
        self.p1 = nn.Parameter(torch.randn(1, c1, 1, 1))
        self.p2 = nn.Parameter(torch.randn(1, c1, 1, 1))
        self.beta = nn.Parameter(torch.ones(1, c1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dpx = (self.p1 - self.p2) * x
        return dpx * torch.sigmoid(self.beta * dpx) + self.p2 * x


class MetaAconC(nn.Module):
    """Meta-ACON-C: ACON-C whose β is predicted per sample and channel from the input.

    β = σ(fc2(fc1(mean over H, W of x))), fc1: c1 → c2 = max(r, c1 // r) and fc2: c2 → c1 are k×k convolutions
    with bias (no normalisation).

    Args:
        c1: channels.
        k, s: kernel and stride of fc1 and fc2.
        r: reduction ratio.
    """

    def __init__(self, c1: int, k: int = 1, s: int = 1, r: int = 16):
        super().__init__()
        c2 = max(r, c1 // r)
        self.p1 = nn.Parameter(torch.randn(1, c1, 1, 1))
        self.p2 = nn.Parameter(torch.randn(1, c1, 1, 1))
        self.fc1 = nn.Conv2d(c1, c2, k, s, bias=True)
        self.fc2 = nn.Conv2d(c2, c1, k, s, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.mean(dim=(2, 3), keepdim=True)  # (b, c1, 1, 1)
        beta = torch.sigmoid(self.fc2(self.fc1(y)))  # (b, c1, 1, 1)
        dpx = (self.p1 - self.p2) * x
        return dpx * torch.sigmoid(beta * dpx) + self.p2 * x


EXPORT_ACTIVATIONS: dict[type, type] = {nn.SiLU: SiLU, nn.Hardswish: Hardswish}
"""``torch.nn`` activation class -> its export-friendly replacement."""


def export_activation(act: nn.Module) -> nn.Module:
    """The export-friendly replacement of ``act`` (an instance), or ``act`` itself when it needs none."""
    cls = EXPORT_ACTIVATIONS.get(type(act))
    return cls() if cls is not None else act
