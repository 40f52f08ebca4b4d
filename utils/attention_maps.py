"""What an attention layer weights: forward hooks, per-layer maps, and heatmap / bar-chart figures.

Nothing here knows any model or attention class. :class:`LayerHooks` records the input and output of given
``(index, module)`` pairs during a forward pass; :func:`layer_maps` turns one record into a spatial map
(B, H, W) and a channel vector (C,) or (B, C):

* a module that defines ``attention_map(inputs, output) -> dict`` supplies its own entries (``"spatial"``,
  ``"channel"``, optionally ``"spatial_label"`` / ``"channel_label"`` strings naming what they are); a key set
  to ``None`` drops that map;
* every entry it does not supply is the generic, module-agnostic **gain** (:func:`gain_maps`)::

      spatial[b, h, w] = Σ_c |out| / Σ_c |in|        channel[b, c] = Σ_hw |out| / Σ_hw |in|

  For multiplicative attention ``out = x · w`` with ``w >= 0`` the spatial gain is
  ``Σ_c (|x_c| / Σ_k |x_k|) · w_c``: the ``|x|``-weighted mean of the weights over channels at that position,
  so it *is* ``w`` when the weights are shared by all channels (spatial attention; SimAM's gate averaged over
  channels); likewise the channel gain is the ``|x|``-weighted mean weight over positions, exactly ``w_c`` for
  channel attention. For a module that is not a multiplication (CoTAttention adds a context branch) it is the
  layer's amplification per position / channel: where the layer boosts or damps the features.

Figures (:func:`save_spatial_figure`, :func:`save_channel_figure`) use matplotlib's Agg canvas without pyplot.
The spatial map is upsampled to the letterboxed network input, the letterbox padding is cut away
(:func:`unletterbox`), and the result is JET-coloured and blended over the original image
(:func:`overlay_heatmap`); the colour bar shows the map's real values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import torch
import torch.nn as nn

from utils.figures import new_figure

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


def layer_maps(index: int, module: nn.Module, inputs: tuple, output: Any) -> LayerMaps:
    """The module's own ``attention_map`` entries, completed by the generic gain (see the module docstring)."""
    name = module_name(module)
    x = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
    generic = gain_maps(x, output) if x is not None and isinstance(output, torch.Tensor) else {}
    own: dict[str, Any] = {}
    fn = getattr(module, "attention_map", None)
    if callable(fn):
        with torch.no_grad():
            own = dict(fn(inputs, output) or {})
    lm = LayerMaps(index, name)
    for key in ("spatial", "channel"):
        if key in own:
            v = own[key]
            setattr(lm, f"{key}_label", str(own.get(f"{key}_label", f"{name}.attention_map() {key}")))
        else:
            v = generic.get(key)
        if isinstance(v, torch.Tensor):
            v = v.detach().float()
            if key == "spatial" and v.dim() in (2, 4):
                v = v[None] if v.dim() == 2 else v[:, 0]  # (H, W) or (B, 1, H, W) -> (B, H, W)
        setattr(lm, key, v if isinstance(v, torch.Tensor) else None)
    return lm


def module_name(module: nn.Module) -> str:
    """The class name; ``NAMAttentionx2`` for an ``nn.Sequential`` of two repeated modules (yaml ``n`` > 1)."""
    if isinstance(module, nn.Sequential) and len(module):
        return f"{type(module[0]).__name__}x{len(module)}"
    return type(module).__name__


@dataclass
class _Record:
    inputs: tuple
    output: Any


@dataclass
class LayerHooks:
    """Forward hooks on ``(index, module)`` pairs that keep each module's input and output.

    Only the *first* call of each module after :meth:`reset` is kept (test-time augmentation runs the model
    several times; the first run is the un-augmented image). Use as a context manager, or call :meth:`close`.

    Args:
        layers: ``(index, module)`` pairs to watch.
    """

    layers: Sequence[tuple[int, nn.Module]]
    records: dict[int, _Record] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._handles = [m.register_forward_hook(self._hook(i)) for i, m in self.layers]

    def _hook(self, i: int):
        def hook(module: nn.Module, inputs: tuple, output: Any) -> None:
            if i not in self.records:  # detached copies: later in-place ops must not change them
                keep = tuple(t.detach().clone() if isinstance(t, torch.Tensor) else t for t in inputs)
                out = output.detach().clone() if isinstance(output, torch.Tensor) else output
                self.records[i] = _Record(keep, out)
        return hook

    def reset(self) -> None:
        """Forget the records (call before each forward pass)."""
        self.records.clear()

    def maps(self) -> list[LayerMaps]:
        """:func:`layer_maps` of every watched layer that ran since :meth:`reset`, in index order."""
        return [layer_maps(i, m, self.records[i].inputs, self.records[i].output)
                for i, m in sorted(self.layers, key=lambda p: p[0]) if i in self.records]

    def output(self, index: int) -> Any:
        """The recorded output of layer ``index``.

        Raises:
            KeyError: that layer is not watched or did not run since :meth:`reset`.
        """
        return self.records[index].output

    def close(self) -> None:
        """Remove the hooks."""
        for h in self._handles:
            h.remove()
        self._handles = []

    def __enter__(self) -> "LayerHooks":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
    r = min(h / h0, w / w0)  # letterbox scale
    uw, uh = max(int(round(w0 * r)), 1), max(int(round(h0 * r)), 1)  # resized image inside the padding
    top, left = int(round((h - uh) / 2 - 0.1)), int(round((w - uw) / 2 - 0.1))
    up = cv2.resize(m.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)  # (h, w)
    crop = up[max(top, 0):max(top, 0) + uh, max(left, 0):max(left, 0) + uw]  # (uh, uw)
    return cv2.resize(crop, (w0, h0), interpolation=cv2.INTER_LINEAR)  # (h0, w0)


def normalize01(m: np.ndarray) -> tuple[np.ndarray, float, float]:
    """``(m - min) / (max - min)`` (zeros for a constant map) and the (min, max) it used."""
    lo, hi = float(np.min(m)), float(np.max(m))
    return ((m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)).astype(np.float32), lo, hi


def overlay_heatmap(im0: np.ndarray, heat01: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a JET-coloured ``heat01`` (h0, w0) in [0, 1] over the BGR image ``im0`` (h0, w0, 3); returns BGR."""
    heat = cv2.applyColorMap((np.clip(heat01, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)  # (h0, w0, 3) BGR
    return cv2.addWeighted(im0, 1 - alpha, heat, alpha, 0)


def save_spatial_figure(im0: np.ndarray, m: np.ndarray, title: str, file: str | Path, label: str = "",
                        alpha: float = 0.5, boxes: Sequence[Sequence[float]] = ()) -> Path:
    """Save ``m`` (h0, w0, already on the original image) as a JET overlay on ``im0`` (BGR) with a colour bar.

    The colours span the map's own min..max; the colour bar is labelled with the real values. ``boxes``
    (xyxy, original-image pixels) are outlined in white.
    """
    from matplotlib.patches import Rectangle
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    heat, lo, hi = normalize01(m)
    over = overlay_heatmap(im0, heat, alpha)
    h0, w0 = im0.shape[:2]
    s = 8 / max(h0, w0)
    fig = new_figure((max(w0 * s + 1.4, 4), max(h0 * s + 0.6, 3)), "constrained")
    ax = fig.add_subplot()
    ax.imshow(over[..., ::-1])  # BGR -> RGB
    for x1, y1, x2, y2 in boxes:
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="white", lw=2))
    ax.set_axis_off()
    ax.set_title(title, fontsize=10)
    sm = ScalarMappable(norm=Normalize(lo, hi if hi > lo else lo + 1e-6), cmap="jet")
    cb = fig.colorbar(sm, ax=ax, fraction=0.046, pad=0.02)
    cb.set_label(label, fontsize=8)
    cb.ax.tick_params(labelsize=7)
    fig.savefig(file, dpi=100)
    return Path(file)


def save_channel_figure(values: np.ndarray | torch.Tensor, title: str, file: str | Path, label: str = "",
                        top: int = 5) -> Path:
    """Bar chart of per-channel values: in channel order (``top`` largest annotated with their index), and
    sorted from largest to smallest with the cumulative share of the total on a second axis.

    When all values lie within 20 % of the largest, the value axes are zoomed to min..max (the legend says so):
    attention weights that differ by a fraction of a percent are otherwise flat bars."""
    v = values.detach().cpu().float().numpy() if isinstance(values, torch.Tensor) else np.asarray(values, float)
    v = v.reshape(-1)
    c = np.arange(len(v))
    lo, hi = float(v.min()), float(v.max())
    zoom = hi > lo and hi - lo < 0.2 * max(abs(hi), abs(lo))
    ylim = (lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo)) if zoom else None
    fig = new_figure((10, 6), "constrained")
    ax1, ax2 = fig.subplots(2, 1)
    ax1.bar(c, v, width=1.0, color="tab:blue")
    note = f"mean {v.mean():.4g}, min {lo:.4g}, max {hi:.4g}" + (" (y axis zoomed)" if zoom else
                                                                 " (all equal)" if hi == lo else "")
    ax1.axhline(v.mean(), color="tab:red", ls="--", lw=1, label=note)
    for j in np.argsort(-v)[:top] if hi > lo else []:
        ax1.annotate(str(j), (j, v[j]), ha="center", va="bottom", fontsize=7)
    ax1.set(xlim=(-0.5, len(v) - 0.5), xlabel="channel", ylabel=label or "value")
    ax1.legend(fontsize=8, loc="upper right")
    ax1.set_title(title, fontsize=10)
    order = np.sort(v)[::-1]
    ax2.bar(c, order, width=1.0, color="tab:gray")
    ax2.set(xlim=(-0.5, len(v) - 0.5), xlabel="channels sorted by value", ylabel=label or "value")
    if ylim:
        ax1.set_ylim(*ylim)
        ax2.set_ylim(*ylim)
    total = order.sum()
    if total > 0:
        twin = ax2.twinx()
        twin.plot(c, np.cumsum(order) / total, color="tab:green", lw=1.5)
        twin.set(ylim=(0, 1.02), ylabel="cumulative share")
    fig.savefig(file, dpi=100)
    return Path(file)


def save_layer_figures(lm: LayerMaps, b: int, im0: np.ndarray, img_shape: Sequence[int], save_dir: str | Path,
                       stem: str) -> list[Path]:
    """Write the figures of one layer for batch element ``b``: ``<stem>_layer<i>_<Name>.png`` (spatial overlay)
    and ``<stem>_layer<i>_<Name>_channels.png`` (bar chart), each only when that map exists."""
    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    base = f"{stem}_layer{lm.index}_{lm.name}"
    files = []
    if lm.spatial is not None:
        m = unletterbox(lm.spatial[min(b, len(lm.spatial) - 1)], img_shape, im0.shape[:2])
        files.append(save_spatial_figure(im0, m, f"layer {lm.index} {lm.name}: {lm.spatial_label}",
                                         save_dir / f"{base}.png", lm.spatial_label))
    if lm.channel is not None:
        ch = lm.channel[min(b, len(lm.channel) - 1)] if lm.channel.dim() == 2 else lm.channel
        files.append(save_channel_figure(ch, f"layer {lm.index} {lm.name}: {lm.channel_label}",
                                         save_dir / f"{base}_channels.png", lm.channel_label))
    return files
