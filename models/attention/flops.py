"""FLOP-counting helpers for the attention modules' ``functional_flops`` methods.

All counts are FLOPs (a multiply-add is 2), not MACs; a sigmoid, an ``exp`` or an ``abs`` counts as 1 per
element. ``utils.flops.count_macs`` halves them into thop's MAC convention.
"""

from __future__ import annotations

import math

import torch

__all__ = ["batchnorm_flops", "numel", "softmax_flops"]


def numel(shape: torch.Size | tuple) -> int:
    """Number of elements of a shape (as a Python int)."""
    return int(math.prod(int(s) for s in shape))


def batchnorm_flops(n_elements: int) -> int:
    """FLOPs of an inference batch norm folded to one multiply-add per element."""
    return 2 * n_elements


def softmax_flops(n_elements: int) -> int:
    """FLOPs of a softmax: ``exp``, the sum and the division, one each per element."""
    return 3 * n_elements
