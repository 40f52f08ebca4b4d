"""Float64 building blocks for the attention modules' reference tests (written from the papers' equations)."""

from __future__ import annotations

import torch


def P(t: torch.Tensor) -> torch.Tensor:  # noqa: N802
    """A parameter or buffer as a float64 constant."""
    return t.detach().double()


def sig(t: torch.Tensor) -> torch.Tensor:
    """The logistic sigmoid, written out."""
    return 1.0 / (1.0 + torch.exp(-t))


def softmax(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Softmax along ``dim``, written out (max-shifted)."""
    e = torch.exp(t - t.amax(dim, keepdim=True))
    return e / e.sum(dim, keepdim=True)
