"""Activation functions written out as elementary tensor operations, for export.

``nn.SiLU`` and ``nn.Hardswish`` map to single operators that some export targets and older ONNX opsets do
not have; these modules compute the same values with ``sigmoid``/``hardtanh`` and products, which every
target supports. ``export.py`` swaps them in for the activations of ``Conv`` blocks before tracing.
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


EXPORT_ACTIVATIONS: dict[type, type] = {nn.SiLU: SiLU, nn.Hardswish: Hardswish}
"""``torch.nn`` activation class -> its export-friendly replacement."""


def export_activation(act: nn.Module) -> nn.Module:
    """The export-friendly replacement of ``act`` (an instance), or ``act`` itself when it needs none."""
    cls = EXPORT_ACTIVATIONS.get(type(act))
    return cls() if cls is not None else act
