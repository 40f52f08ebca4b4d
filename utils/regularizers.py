"""Parameter regularisers applied as training callbacks, on unscaled gradients, before the optimizer step.

A layer opts in by defining ``regularized_parameters() -> list[nn.Parameter]`` (the attention base class gives every
attention module an empty default; NAM returns its BN scales γ). Nothing here knows any layer class: the regulariser
visits every submodule that has the method.

The L1 penalty ``strength · Σ|θ|`` is not added to the loss; its gradient ``strength · sign(θ)`` is added to each
parameter's ``.grad`` after ``backward`` (and, under AMP, after ``GradScaler.unscale_``), which is the same update
without a second graph. Training registers it on the ``optimizer_step`` hook when the hyperparameter ``nam_l1`` is
set and non-zero::

    callbacks.register_action("optimizer_step", name="regularizers", callback=L1Regularizer(hyp["nam_l1"]))
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn


def regularized_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Every distinct parameter that some submodule of ``model`` lists in its ``regularized_parameters()``."""
    seen: dict[int, nn.Parameter] = {}
    for m in model.modules():
        fn = getattr(m, "regularized_parameters", None)
        if callable(fn):
            for p in fn():
                seen.setdefault(id(p), p)
    return list(seen.values())


def add_l1_grad(model: nn.Module, strength: float) -> int:
    """Add ``strength · sign(θ)`` to the gradient of every regularised parameter θ of ``model``.

    Args:
        model: any module (a DP/DDP wrapper too: ``modules()`` reaches the wrapped model).
        strength: the L1 weight; 0 does nothing.

    Returns:
        How many parameter tensors had their gradient changed (those without ``.grad`` are skipped).
    """
    if not strength:
        return 0
    touched = 0
    with torch.no_grad():
        for p in regularized_parameters(model):
            if p.grad is not None:
                p.grad.add_(torch.sign(p.detach()).to(p.grad.dtype), alpha=strength)
                touched += 1
    return touched


class L1Regularizer:
    """An ``optimizer_step`` callback: ``L1Regularizer(1e-4)(model, optimizer)`` adds the L1 gradient.

    Attributes:
        strength: the L1 weight.
        touched: parameters changed by the last call (for logs and tests).
    """

    def __init__(self, strength: float) -> None:
        self.strength = float(strength)
        self.touched = 0

    def __call__(self, model: nn.Module, optimizer: Any = None, **kwargs: Any) -> None:
        self.touched = add_l1_grad(model, self.strength)

    def __repr__(self) -> str:
        return f"L1Regularizer(strength={self.strength})"
