"""Channels-last memory format for CPU and CUDA convolutions (speed; the layout, not the math, changes).

oneDNN on the CPU and cuDNN on tensor cores run NHWC convolutions faster than NCHW: on a 2-core AVX-512 CPU a
yolov5n training step at 320 (batch 16) takes about 0.8x the time, a fused batch-1 forward about 0.85x. The
result is the same convolution summed in another order, so outputs differ from NCHW in the last bits (about
1e-6 relative); the scripts turn it on by default and ``--no-channels-last`` turns it off.

Only 4-D tensors have a channels-last layout: parameters and buffers of another rank (Detect's 5-D grids, linear
layers, BatchNorm vectors) are left alone, which is why this walks the tensors instead of calling
``model.to(memory_format=...)`` (that raises on the first 5-D buffer).
"""

from __future__ import annotations

import torch
import torch.nn as nn


def set_memory_format(model: nn.Module, channels_last: bool = True) -> nn.Module:
    """Store every 4-D parameter and buffer of ``model`` channels-last (or contiguous NCHW), in place.

    The parameter objects stay the same (their ``.data`` is replaced), so an optimizer or EMA built before keeps
    pointing at them.

    Args:
        model: any module.
        channels_last: True for NHWC strides, False for the default contiguous NCHW strides.

    Returns:
        ``model``.
    """
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            if t.dim() == 4 and not t.is_contiguous(memory_format=fmt):
                t.data = t.data.contiguous(memory_format=fmt)
    return model


def is_channels_last(model: nn.Module) -> bool:
    """Whether ``model`` has a 4-D parameter and all of them are stored channels-last (a 1x1 kernel is both)."""
    w = [p for p in model.parameters() if p.dim() == 4]
    return bool(w) and all(p.is_contiguous(memory_format=torch.channels_last) for p in w)


def to_input_format(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """A 4-D image batch in the layout the model's weights use (a copy only when the layout changes)."""
    if x.dim() != 4:
        return x
    return x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def batch_to_model_input(imgs: torch.Tensor, device: torch.device | str, channels_last: bool) -> torch.Tensor:
    """A uint8 0-255 image batch as the float 0.0-1.0 model input, on ``device`` and in the model's layout.

    The layout changes on the uint8 tensor (a quarter of the float bytes); ``float() / 255`` keep it, so the
    values are the same as converting afterwards, without a second float copy of the batch.
    """
    imgs = to_input_format(imgs.to(device, non_blocking=True), channels_last)  # (b, 3, h, w) uint8, NHWC strides
    return imgs.float() / 255  # same strides, 0.0-1.0


def channels_last_option(opt: object) -> bool:
    """``opt.channels_last``, True where the option is missing (an ``opt.yaml`` written before it existed)."""
    return bool(getattr(opt, "channels_last", True))
