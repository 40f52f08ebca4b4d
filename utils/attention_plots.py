"""Attention figures: a map as a JET heatmap over the image, per-channel bar charts, and one layer's figure set.

The maps themselves are computed in :mod:`utils.attention_maps` (:func:`~utils.attention_maps.layer_maps`);
this module only draws them, next to the other plots of :mod:`utils.plots`. A feature-resolution spatial map
is upsampled to the letterboxed network input, the letterbox padding is cut away
(:func:`utils.attention_maps.unletterbox`), and the result is JET-coloured and blended over the original
image (:func:`overlay_heatmap`); the colour bar shows the map's real values. matplotlib is used through its
Agg canvas without pyplot (:func:`utils.figures.new_figure`), so this is safe from any thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import cv2
import numpy as np
import torch

from utils.attention_maps import unletterbox
from utils.figures import new_figure

if TYPE_CHECKING:
    from utils.attention_maps import LayerMaps

__all__ = ["normalize01", "overlay_heatmap", "save_channel_figure", "save_layer_figures", "save_spatial_figure"]


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

    The colours span the map's own min..max; the colour bar is labelled with the real values.

    Args:
        im0: the original BGR image (h0, w0, 3).
        m: the map on the original image (h0, w0), e.g. from :func:`utils.attention_maps.unletterbox`.
        title: figure title.
        file: output image file.
        label: colour bar label.
        alpha: weight of the heatmap in the blend.
        boxes: xyxy boxes in original-image pixels, outlined in white.

    Returns:
        ``file`` as a Path.
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
    attention weights that differ by a fraction of a percent are otherwise flat bars.

    Args:
        values: (C,) per-channel values.
        title: figure title.
        file: output image file.
        label: value axis label.
        top: how many of the largest values get their channel index written.

    Returns:
        ``file`` as a Path.
    """
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
    and ``<stem>_layer<i>_<Name>_channels.png`` (bar chart), each only when that map exists.

    Args:
        lm: the layer's maps (:func:`utils.attention_maps.layer_maps`).
        b: index in the batch (a map of batch 1, or an image-independent channel vector, serves every ``b``).
        im0: the original BGR image (h0, w0, 3).
        img_shape: the letterboxed network input (h, w) the maps were computed on.
        save_dir: output folder (created).
        stem: file name prefix.

    Returns:
        The files written.
    """
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
