"""The attention module contract, :class:`Attention`, and the building blocks the modules share.

* :class:`Attention`: the base class of every attention layer. Subclassing it registers the class as a yaml
  layer; its default methods are the hooks the FLOP counter, ``Model.fuse()``, the attention-map figures and
  the L1 regulariser call.
* :class:`AttentionMap`: what :meth:`Attention.attention_map` returns (defined in ``utils.attention_maps``,
  which cannot import ``models``; re-exported here).
* :class:`FallbackBatchNorm2d`: a ``BatchNorm2d`` that does not fail on a one-value-per-channel batch in
  training mode (a (1, C, 1, 1) map, as the model-build stride probe produces for pooled branches).
  Checkpoints pickle it under this module's path, so it stays defined here.
* :func:`spatial_count` and :func:`clamp_min1`: ``H·W`` of a feature map, and ``max(n, 1)``, in forms that
  stay dynamic under ONNX tracing.

The FLOP-counting helpers of the modules' ``functional_flops`` methods are in :mod:`models.attention.flops`.
"""

from __future__ import annotations

from typing import Any, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.registry import attention, register
from utils.attention_maps import AttentionMap

Size = Union[int, torch.Tensor]  # a Python int in eager mode, a 0-dim tensor while tracing

__all__ = ["Attention", "AttentionMap", "FallbackBatchNorm2d", "Size", "clamp_min1", "spatial_count"]


class Attention(nn.Module):
    """Base class of the attention layers: subclassing it is all it takes to make a yaml layer.

    The contract every subclass keeps:

    * the constructor takes the input channel count ``c1`` first (modules that do not need it still accept
      it), then the module's own options; the yaml line ``[-1, 1, MyAttention, [1024, 8]]`` builds
      ``MyAttention(c1, 8)`` with the real input channels (the nominal 1024 is checked against them);
    * ``forward(x)`` returns a tensor of the input's shape (B, C, H, W), on any H, W >= 1;
    * it is fp16/bf16 safe: reductions over many values (means, variances, softmaxes) run in at least fp32
      and are cast back, so a half-precision forward neither overflows nor returns NaN;
    * it is traceable for TorchScript and ONNX export: no Python branch on tensor values, and spatial sizes
      stay dynamic (:func:`spatial_count`, slices relative to the ends);
    * parameter and buffer names are part of the checkpoint format: renaming one breaks loading.

    Subclassing registers the class with :mod:`models.registry` under its class name (kind ``"attention"``,
    channel rule :func:`models.registry.attention`); further yaml names go in the ``aliases`` class keyword::

        class SEAttention(Attention, aliases=("SE",)):
            def __init__(self, c1: int, reduction: int = 16) -> None: ...
            def forward(self, x: torch.Tensor) -> torch.Tensor: ...

    A name taken by another class is an error at class creation; the same class defined again (its module
    imported twice, as when ``models/yolo.py`` runs as a script) replaces its entry.

    Default methods, each overridden where the module has something to say:

    * :meth:`functional_flops`: FLOPs of the tensor operations outside child modules (0);
    * :meth:`fuse_layers`: inference folding, called by ``Model.fuse()`` (nothing);
    * :meth:`attention_map`: what the layer weights, for the figures (None: the generic gain maps);
    * :meth:`regularized_parameters`: parameters under the training L1 penalty (none).

    Helper submodules of an attention layer that are not yaml layers themselves (NAM's ``Channel_Att``) are
    plain ``nn.Module``s; they may still define ``functional_flops``, which the FLOP counter adds as well.
    """

    def __init_subclass__(cls, aliases: tuple[str, ...] = (), **kwargs: Any) -> None:
        """Register the new subclass as a yaml layer under its class name and ``aliases``.

        Raises:
            ValueError: a name is already registered for a class of another qualified name.
        """
        super().__init_subclass__(**kwargs)
        register(rule=attention, kind="attention", aliases=tuple(aliases))(cls)

    def functional_flops(self, inputs: tuple, output: torch.Tensor) -> int:
        """FLOPs of the tensor operations outside child ``nn.Module``s, for one call.

        thop counts only the modules it knows (convolutions, BatchNorm2d, ...); ``utils.flops.count_macs`` adds
        this count for every module that defines it, each module once per call. Count FLOPs, a multiply-add
        being 2; a sigmoid, an ``exp`` or an ``abs`` counts 1 per element (see :mod:`models.attention.flops`).

        Args:
            inputs: the positional inputs of the call, ``(x,)``.
            output: its output.

        Returns:
            The FLOP count; 0 by default (every operation is in child modules).
        """
        return 0

    def fuse_layers(self) -> None:
        """Fold layers for inference (``Model.fuse()`` calls it); must be idempotent. Does nothing by default."""

    def attention_map(self, inputs: tuple, output: torch.Tensor) -> AttentionMap | None:
        """What this layer weights, for the attention figures (``utils.attention_maps.layer_maps``).

        Args:
            inputs: the positional inputs of the recorded call, ``(x,)``.
            output: its output.

        Returns:
            The layer's own maps; a field left None is filled with the generic gain. None by default: both maps
            are the generic gain ``Σ|out| / Σ|in|``.
        """
        return None

    def regularized_parameters(self) -> list[nn.Parameter]:
        """Parameters the training L1 penalty acts on (``utils.regularizers``); none by default."""
        return []


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
