"""Small helpers shared by the attention modules.

Nothing here is registered as a yaml layer. The pieces are:

* :class:`FallbackBatchNorm2d`: a ``BatchNorm2d`` that does not fail on a one-value-per-channel batch in
  training mode (a (1, C, 1, 1) map, as the model-build stride probe produces for pooled branches).
* :func:`spatial_count`: ``H·W`` of a feature map in a form that stays dynamic under ONNX tracing.
* FLOP-counting helpers used by the modules' ``functional_flops`` methods. All counts are FLOPs (a
  multiply-add is 2), not MACs; a sigmoid, an ``exp`` or an ``abs`` counts as 1 per element.
"""

from __future__ import annotations

import math
from typing import Union

import torch
import torch.nn as nn
import torch.nn.functional as F

Size = Union[int, torch.Tensor]  # a Python int in eager mode, a 0-dim tensor while tracing


class FallbackBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` that uses its running statistics when a training batch has one value per channel.

    PyTorch's batch norm raises ``Expected more than 1 value per channel when training`` for an input of
    shape (1, C, 1, 1), which a branch applied to globally pooled features sees whenever the batch size is 1
    (YOLOv5 builds the model with a batch-1 probe in training mode). In that single case this layer
    normalises with the running statistics and leaves them unchanged; every other call is the ordinary
    batch norm. thop does not count this subclass, so its owners count it in ``functional_flops``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The check runs only in training mode, so eval-mode tracing/export sees plain batch norm.
        if self.training and self.track_running_stats and x.numel() == x.shape[1]:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                False, 0.0, self.eps)
        return super().forward(x)


def spatial_count(x: torch.Tensor) -> Size:
    """``H·W`` of an (..., H, W) tensor: an int in eager mode, a traced 0-dim tensor under ``jit.trace``."""
    h, w = x.shape[-2:]
    return h * w


def clamp_min1(n: Size) -> Size:
    """``max(n, 1)`` for an int or a traced 0-dim tensor (no Python branch on a traced value)."""
    return n.clamp(min=1) if isinstance(n, torch.Tensor) else max(int(n), 1)


def numel(shape: torch.Size | tuple) -> int:
    """Number of elements of a shape (as a Python int)."""
    return int(math.prod(int(s) for s in shape))


def batchnorm_flops(n_elements: int) -> int:
    """FLOPs of an inference batch norm folded to one multiply-add per element."""
    return 2 * n_elements


def softmax_flops(n_elements: int) -> int:
    """FLOPs of a softmax: ``exp``, the sum and the division, one each per element."""
    return 3 * n_elements
