"""What an attention layer weights: per-layer maps computed from recorded layer inputs and outputs.

Nothing here knows any model or attention class. :class:`utils.recording.Recorder` (``Model.record``) records
the inputs and output of chosen layers during a forward pass; :func:`layer_maps` turns one record into a spatial
map (B, H, W) and a channel vector (C,) or (B, C) (:func:`record_maps`: every record of a recorder):

* a module that defines ``attention_map(inputs, output) -> AttentionMap | None`` supplies its own maps in an
  :class:`AttentionMap` (``spatial``, ``channel``, and ``spatial_label`` / ``channel_label`` naming what they
  are); ``drop_spatial`` / ``drop_channel`` show no map of that kind at all;
* every map it leaves None (all of them when it returns None or has no ``attention_map``) is the generic,
  module-agnostic **gain** (:func:`gain_maps`)::

      spatial[b, h, w] = Σ_c |out| / Σ_c |in|        channel[b, c] = Σ_hw |out| / Σ_hw |in|

  For multiplicative attention ``out = x · w`` with ``w >= 0`` the spatial gain is
  ``Σ_c (|x_c| / Σ_k |x_k|) · w_c``: the ``|x|``-weighted mean of the weights over channels at that position,
  so it *is* ``w`` when the weights are shared by all channels (spatial attention; SimAM's gate averaged over
  channels); likewise the channel gain is the ``|x|``-weighted mean weight over positions, exactly ``w_c`` for
  channel attention. For a module that is not a multiplication (CoTAttention adds a context branch) it is the
  layer's amplification per position / channel: where the layer boosts or damps the features.

:func:`unletterbox` maps a feature-resolution map onto the original image (the letterbox geometry is
:func:`utils.boxes.letterbox_geometry`, shared with ``scale_coords``). The figures are drawn by
:mod:`utils.attention_plots`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import cv2
import numpy as np
import torch
import torch.nn as nn

from utils.boxes import letterbox_geometry
from utils.recording import Record

SPATIAL_GAIN = "spatial gain Σc|out| / Σc|in|"
CHANNEL_GAIN = "channel gain Σhw|out| / Σhw|in|"


# ------------------------------------------------------------------------------------------------ maps
def gain_maps(x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """Generic gain of a layer with input ``x`` and output ``y``, both (B, C, H, W) (see the module docstring).

    Returns:
        ``{"spatial": (B, H, W)}`` when the spatial sizes match and ``{"channel": (B, C)}`` when the channel
        counts match (both for a shape-preserving layer, none for a layer that changes both).
    """
    out: dict[str, torch.Tensor] = {}
    if x.dim() != 4 or y.dim() != 4 or x.shape[0] != y.shape[0]:
        return out
    x, y = x.detach().float().abs(), y.detach().float().abs()
    if x.shape[2:] == y.shape[2:]:
        out["spatial"] = _ratio(y.sum(1), x.sum(1))  # (B, H, W)
    if x.shape[1] == y.shape[1]:
        out["channel"] = _ratio(y.sum((2, 3)), x.sum((2, 3)))  # (B, C)
    return out


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den`` with an epsilon relative to the mean of ``den`` (features can be ~1e-9 in untrained
    models, so an absolute epsilon would bias the ratio); 0 where both are 0."""
    return num / (den + 1e-6 * den.mean()).clamp_min(torch.finfo(den.dtype).tiny)


@dataclass
class LayerMaps:
    """The maps of one layer for one forward pass.

    Attributes:
        index: the layer's index (its yaml row).
        name: the module's class name.
        spatial: (B, H, W) float map, or None.
        channel: (C,) (image-independent) or (B, C) float vector, or None.
        spatial_label: what ``spatial`` is (written on the figure).
        channel_label: what ``channel`` is.
    """

    index: int
    name: str
    spatial: torch.Tensor | None = None
    channel: torch.Tensor | None = None
    spatial_label: str = SPATIAL_GAIN
    channel_label: str = CHANNEL_GAIN


@dataclass
class AttentionMap:
    """What an attention layer says it weights: the return value of its ``attention_map(inputs, output)``.

    Attributes:
        spatial: (B, H, W) float map ((H, W) and (B, 1, H, W) are accepted), or None for the generic spatial gain.
        channel: (C,) image-independent or (B, C) per-image vector, or None for the generic channel gain.
        spatial_label: what ``spatial`` is (written on the figure); None: ``"<Name>.attention_map() spatial"``.
            Ignored when ``spatial`` is None.
        channel_label: what ``channel`` is; as ``spatial_label``.
        drop_spatial: show no spatial map for this layer at all (neither ``spatial`` nor the generic gain).
        drop_channel: show no channel map for this layer at all.
    """

    spatial: torch.Tensor | None = None
    channel: torch.Tensor | None = None
    spatial_label: str | None = None
    channel_label: str | None = None
    drop_spatial: bool = False
    drop_channel: bool = False


def layer_maps(index: int, module: nn.Module, inputs: tuple, output: Any) -> LayerMaps:
    """The module's own :class:`AttentionMap`, completed by the generic gain (see the module docstring).

    Raises:
        TypeError: the module's ``attention_map`` returned something other than an AttentionMap or None.
    """
    name = module_name(module)
    x = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
    generic = gain_maps(x, output) if x is not None and isinstance(output, torch.Tensor) else {}
    own = _own_map(module, inputs, output)
    lm = LayerMaps(index, name)
    if not own.drop_spatial:
        if own.spatial is not None:
            lm.spatial_label = own.spatial_label or f"{name}.attention_map() spatial"
        spatial = _as_float(own.spatial if own.spatial is not None else generic.get("spatial"))
        if spatial is not None and spatial.dim() in (2, 4):
            spatial = spatial[None] if spatial.dim() == 2 else spatial[:, 0]  # (H, W) or (B, 1, H, W) -> (B, H, W)
        lm.spatial = spatial
    if not own.drop_channel:
        if own.channel is not None:
            lm.channel_label = own.channel_label or f"{name}.attention_map() channel"
        lm.channel = _as_float(own.channel if own.channel is not None else generic.get("channel"))
    return lm


def _own_map(module: nn.Module, inputs: tuple, output: Any) -> AttentionMap:
    """``module.attention_map(inputs, output)`` under no_grad; an empty AttentionMap when it has none or says None."""
    fn = getattr(module, "attention_map", None)
    if not callable(fn):
        return AttentionMap()
    with torch.no_grad():
        own = fn(inputs, output)
    if own is None:
        return AttentionMap()
    if not isinstance(own, AttentionMap):
        raise TypeError(f"{module_name(module)}.attention_map() must return an AttentionMap or None, "
                        f"got {type(own).__name__}")
    return own


def _as_float(v: Any) -> torch.Tensor | None:
    """A detached float copy of a tensor; None for anything else."""
    return v.detach().float() if isinstance(v, torch.Tensor) else None


def module_name(module: nn.Module) -> str:
    """The class name; ``NAMAttentionx2`` for an ``nn.Sequential`` of two repeated modules (yaml ``n`` > 1)."""
    if isinstance(module, nn.Sequential) and len(module):
        return f"{type(module[0]).__name__}x{len(module)}"
    return type(module).__name__


def record_maps(records: Iterable[Record]) -> list[LayerMaps]:
    """:func:`layer_maps` of each record (e.g. of a :class:`utils.recording.Recorder`), in the order given."""
    return [layer_maps(r.index, r.module, r.inputs, r.output) for r in records]


# ------------------------------------------------------------------------------------------------ images
def unletterbox(m: np.ndarray | torch.Tensor, img_shape: Sequence[int], img0_shape: Sequence[int]) -> np.ndarray:
    """Map a feature-resolution 2-D map onto the original image.

    The map (h', w') covers the letterboxed network input ``img_shape`` (h, w); it is upsampled bilinearly to
    (h, w), the padding that ``letterbox`` added is cut off (same rounding as ``letterbox``), and the rest is
    resized to the original ``img0_shape`` (h0, w0).

    Returns:
        float32 array (h0, w0).
    """
    m = m.detach().cpu().float().numpy() if isinstance(m, torch.Tensor) else np.asarray(m, dtype=np.float32)
    h, w = int(img_shape[0]), int(img_shape[1])
    h0, w0 = int(img0_shape[0]), int(img0_shape[1])
    top, left, uh, uw = letterbox_geometry((h, w), (h0, w0)).inner  # the resized image inside the padding
    up = cv2.resize(m.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)  # (h, w)
    crop = up[max(top, 0):max(top, 0) + uh, max(left, 0):max(left, 0) + uw]  # (uh, uw)
    return cv2.resize(crop, (w0, h0), interpolation=cv2.INTER_LINEAR)  # (h0, w0)
