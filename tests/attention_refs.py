"""Float64 building blocks for the attention modules' reference tests (written from the papers' equations)."""

from __future__ import annotations

import copy

import torch
import torch.nn as nn


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


def check_against_reference(m: torch.nn.Module, x: torch.Tensor, ref: torch.Tensor, tol32: float = 1e-5,
                            tol64: float = 1e-10, changes: bool = True) -> torch.Tensor:
    """Assert the module's fp32 output and its float64 copy's output equal the float64 reference ``ref`` (within
    ``tol32`` and ``tol64``, relative and absolute), with the input's shape; with ``changes`` also that the module
    does something (the output differs from ``x``). Returns the fp32 output."""
    with torch.no_grad():
        y = m(x)
        y64 = copy.deepcopy(m).double()(x.double())
    assert y.dtype == torch.float32 and y.shape == x.shape
    torch.testing.assert_close(y64, ref, rtol=tol64, atol=tol64)
    torch.testing.assert_close(y.double(), ref, rtol=tol32, atol=tol32)
    if changes:
        assert (y - x).abs().max() > 1e-2  # the module does something
    return y


@torch.no_grad()
def randomize_layers(m: nn.Module, seed: int = 0, norms: tuple = (nn.BatchNorm2d,),
                     layers: tuple = (nn.Conv1d, nn.Conv2d), gain: float = 2.0) -> torch.Generator:
    """Move a module away from its default initialisation, in place, so a reference test can fail.

    Norm layers of the ``norms`` types get random affine parameters (BatchNorm also running statistics); layers of
    the ``layers`` types get their weights scaled by ``gain`` (gates away from 0.5) and random biases. Returns the
    seeded generator, for module-specific extras drawn after these.
    """
    g = torch.Generator().manual_seed(seed)
    for mod in m.modules():
        if isinstance(mod, norms):
            mod.weight.copy_(torch.randn(mod.weight.shape, generator=g))
            mod.bias.copy_(0.3 * torch.randn(mod.bias.shape, generator=g))
        if isinstance(mod, nn.BatchNorm2d) and isinstance(mod, norms):
            mod.running_mean.copy_(0.2 * torch.randn(mod.running_mean.shape, generator=g))
            mod.running_var.copy_(0.5 + torch.rand(mod.running_var.shape, generator=g))
        elif isinstance(mod, layers):
            mod.weight.mul_(gain)
            if mod.bias is not None:
                mod.bias.copy_(0.3 * torch.randn(mod.bias.shape, generator=g))
    return g
