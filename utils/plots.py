"""Plotting helpers: training mosaics, label statistics, results curves, crops and feature maps.

Drawing primitives (``Colors``, ``colors``, ``Annotator``) live in ``utils.annotator`` and are re-exported here.
matplotlib is used through its object-oriented ``Figure`` API (no pyplot state), so these functions are safe to
call from a background thread.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
from PIL import Image, ImageDraw

from utils.annotator import Annotator, Colors, colors, is_ascii, load_font  # noqa: F401  (re-exported)
from utils.boxes import clip_coords, xywh2xyxy, xyxy2xywh
from utils.figures import new_figure
from utils.general import LOGGER, RANK, increment_path
from utils.plot_tools import (butter_lowpass_filtfilt, check_pil_font, hist2d, plot_lr_scheduler, plot_targets_txt,
                              plot_val_txt, profile_idetection)

__all__ = ["Annotator", "Colors", "colors", "feature_visualization", "output_to_target", "plot_images",
           "plot_labels", "plot_results", "save_one_box", "plot_evolve", "plot_val_study", "is_ascii", "load_font",
           "RANK", "butter_lowpass_filtfilt", "check_pil_font", "hist2d", "plot_lr_scheduler", "plot_targets_txt",
           "plot_val_txt", "profile_idetection"]

RESULTS_PANELS = (1, 2, 3, 4, 5, 8, 9, 10, 6, 7)  # results.csv columns shown in the 2x5 results.png panels


def _to_numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    return x.detach().cpu().float().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _figure(nrows: int, ncols: int, figsize: tuple[float, float]):
    """A pyplot-free matplotlib figure with an Agg canvas and its axes array."""
    fig = new_figure(figsize)
    return fig, np.atleast_1d(fig.subplots(nrows, ncols)).ravel()


def output_to_target(output: Sequence[torch.Tensor | np.ndarray]) -> np.ndarray:
    """Per-image NMS outputs ``(n, 6) [x1, y1, x2, y2, conf, cls]`` -> ``(N, 7) [batch_id, cls, x, y, w, h, conf]``."""
    rows = []
    for i, o in enumerate(output):
        o = _to_numpy(o).reshape(-1, 6)
        if len(o):
            xywh = xyxy2xywh(o[:, :4].copy())
            rows.append(np.concatenate((np.full((len(o), 1), i), o[:, 5:6], xywh, o[:, 4:5]), 1))
    return np.concatenate(rows, 0) if rows else np.zeros((0, 7))


def plot_images(images: torch.Tensor | np.ndarray, targets: torch.Tensor | np.ndarray,
                paths: Sequence[str] | None = None, fname: str | Path = "images.jpg",
                names: Sequence[str] | dict | None = None, max_size: int = 1920, max_subplots: int = 16) -> None:
    """Save a square mosaic of a batch with its boxes to ``fname``.

    Args:
        images: (bs, 3, h, w) RGB batch, 0-1 floats or 0-255.
        targets: (n, 6) labels ``[batch_id, cls, x, y, w, h]`` or (n, 7) predictions with a trailing ``conf``;
            xywh normalised (all <= 1.1) or in pixels. Predictions are drawn only when conf > 0.25.
        paths: image file names, first 40 characters written on each tile.
        fname: output image file.
        names: class names (list or dict); class indices are written when absent.
        max_size: the mosaic is downscaled so that its larger side is at most about this.
        max_subplots: at most this many images.
    """
    images, targets = _to_numpy(images), _to_numpy(targets)
    if targets.ndim != 2:
        targets = targets.reshape(-1, 6)
    if images.size and np.max(images[0]) <= 1:
        images = images * 255  # de-normalise
    bs, _, h, w = images.shape
    bs = min(bs, max_subplots)
    ns = math.ceil(bs ** 0.5)  # tiles per side
    mosaic = np.full((ns * h, ns * w, 3), 255, dtype=np.uint8)
    for i in range(bs):
        x, y = w * (i % ns), h * (i // ns)  # row-major tile origin
        mosaic[y:y + h, x:x + w] = images[i].transpose(1, 2, 0).clip(0, 255).astype(np.uint8)

    scale = max_size / ns / max(h, w)
    if scale < 1:
        h, w = math.ceil(scale * h), math.ceil(scale * w)
        mosaic = cv2.resize(mosaic, (w * ns, h * ns))

    fs = int((h + w) * ns * 0.01)  # font size
    annotator = Annotator(mosaic, line_width=round(fs / 10), font_size=fs, pil=True,
                          example=str(list(names.values()) if isinstance(names, dict) else names))
    for i in range(bs):
        x, y = w * (i % ns), h * (i // ns)
        annotator.rectangle((x, y, x + w, y + h), None, (255, 255, 255), width=2)  # tile border
        if paths is not None and i < len(paths):
            annotator.text((x + 5, y + 5), Path(paths[i]).name[:40], txt_color=(220, 220, 220))
        ti = targets[targets[:, 0] == i]
        if not len(ti):
            continue
        is_labels = ti.shape[1] == 6
        conf = None if is_labels else ti[:, 6]
        boxes = xywh2xyxy(ti[:, 2:6].copy())
        if boxes.max() <= 1.1:  # normalised -> pixels
            boxes[:, [0, 2]] *= w
            boxes[:, [1, 3]] *= h
        elif scale < 1:  # pixels of the unscaled tile
            boxes *= scale
        boxes[:, [0, 2]] += x
        boxes[:, [1, 3]] += y
        for j, box in enumerate(boxes):
            if is_labels or conf[j] > 0.25:
                cls = int(ti[j, 1])
                name = names[cls] if names is not None and (cls in names if isinstance(names, dict)
                                                            else cls < len(names)) else cls
                label = f"{name}" if is_labels else f"{name} {conf[j]:.1f}"
                annotator.box_label(box, label, color=colors(cls))
    annotator.im.save(str(fname))


def plot_labels(labels: np.ndarray, names: Sequence[str] | dict = (), save_dir: Path | str = Path("")) -> None:
    """Write ``labels_correlogram.jpg`` and ``labels.jpg`` for dataset labels ``(n, 5) [cls, x, y, w, h]``."""
    import pandas as pd

    save_dir = Path(save_dir)
    LOGGER.info(f"Plotting labels to {save_dir / 'labels.jpg'}... ")
    labels = _to_numpy(labels).reshape(-1, 5)
    c, b = labels[:, 0].astype(int), labels[:, 1:].T
    nc = int(c.max() + 1) if len(c) else 1
    df = pd.DataFrame(b.T, columns=["x", "y", "width", "height"])
    _correlogram(df, save_dir / "labels_correlogram.jpg")

    fig, ax = _figure(2, 2, (8, 8))
    ax[0].hist(c, bins=np.arange(nc + 1) - 0.5, rwidth=0.8)  # one bar centred on each class index
    ax[0].set_ylabel("instances")
    if 0 < len(names) < 30:
        n = list(names.values()) if isinstance(names, dict) else list(names)
        ax[0].set_xticks(range(len(n)))
        ax[0].set_xticklabels(n, rotation=90, fontsize=10)
    else:
        ax[0].set_xlabel("classes")
    ax[2].hist2d(df["x"], df["y"], bins=50, cmap="Blues", cmin=1)
    ax[2].set_xlabel("x")
    ax[2].set_ylabel("y")
    ax[3].hist2d(df["width"], df["height"], bins=50, cmap="Blues", cmin=1)
    ax[3].set_xlabel("width")
    ax[3].set_ylabel("height")

    canvas = Image.fromarray(np.full((2000, 2000, 3), 255, dtype=np.uint8))  # box outlines, centred
    draw = ImageDraw.Draw(canvas)
    outlines = xywh2xyxy(np.concatenate((np.full((len(c), 2), 0.5), b[2:].T), 1)[:1000]) * 2000
    for cls, box in zip(c[:1000], outlines):
        draw.rectangle(tuple(box), width=1, outline=colors(cls))
    ax[1].imshow(canvas)
    ax[1].axis("off")
    for a in (ax[0], ax[2], ax[3]):
        for s in ("top", "right"):
            a.spines[s].set_visible(False)
    fig.savefig(save_dir / "labels.jpg", dpi=200)


def _correlogram(df, file: Path) -> None:
    """Corner pair plot of the label columns: histograms on the diagonal, 2D histograms below it."""
    cols = list(df.columns)
    k = len(cols)
    fig, ax = _figure(k, k, (8, 8))
    ax = ax.reshape(k, k)
    for i in range(k):
        for j in range(k):
            a = ax[i, j]
            if j > i:
                a.set_visible(False)
                continue
            if i == j:
                a.hist(df[cols[i]], bins=50, color="#1f77b4", alpha=0.8)
            else:
                a.hist2d(df[cols[j]], df[cols[i]], bins=50, cmap="Blues", cmin=1)
            a.set_xlabel(cols[j] if i == k - 1 else "")
            a.set_ylabel(cols[i] if j == 0 and i > 0 else "")
            if i < k - 1:
                a.set_xticklabels([])
            for s in ("top", "right"):
                a.spines[s].set_visible(False)
    fig.savefig(file, dpi=200)


def plot_results(file: str | Path = "path/to/results.csv", dir: str | Path = "") -> None:
    """Plot every ``results*.csv`` next to ``file`` (or in ``dir``) into ``results.png`` (2x5 panels)."""
    save_dir = Path(file).parent if file else Path(dir)
    files = sorted(save_dir.glob("results*.csv"))
    if not files:
        LOGGER.warning(f"WARNING: No results.csv files found in {save_dir.resolve()}, nothing to plot.")
        return
    fig, ax = _figure(2, 5, (12, 6))
    for f in files:
        try:
            with open(f) as fh:
                s = [x.strip() for x in fh.readline().split(",")]
            data = np.loadtxt(f, delimiter=",", skiprows=1, ndmin=2)  # plain csv: no pandas import needed
            x = data[:, 0]
            for i, j in enumerate(RESULTS_PANELS):
                ax[i].plot(x, data[:, j], marker=".", label=f.stem, linewidth=2, markersize=8)
                ax[i].set_title(s[j], fontsize=12)
        except Exception as e:  # a malformed file must not stop the others
            LOGGER.warning(f"Warning: Plotting error for {f}: {e}")
    ax[1].legend()
    fig.savefig(save_dir / "results.png", dpi=200)


def save_one_box(xyxy: Sequence[float] | torch.Tensor, im: np.ndarray, file: Path | str = Path("im.jpg"),
                 gain: float = 1.02, pad: int = 10, square: bool = False, BGR: bool = False,
                 save: bool = True) -> np.ndarray:
    """Crop ``xyxy`` from the BGR image ``im``, enlarged by ``gain`` and ``pad`` pixels (optionally square).

    The crop is saved (BGR, as a ``.jpg`` at an incremented ``file`` path) when ``save``; it is returned in BGR
    order if ``BGR`` else in RGB order.
    """
    b = xyxy2xywh(torch.as_tensor(xyxy, dtype=torch.float32).view(-1, 4))
    if square:
        b[:, 2:] = b[:, 2:].max(1)[0].unsqueeze(1)  # rectangle -> square
    b[:, 2:] = b[:, 2:] * gain + pad
    box = xywh2xyxy(b).long()
    clip_coords(box, im.shape)
    x1, y1, x2, y2 = (int(v) for v in box[0])
    crop = im[y1:y2, x1:x2]
    if save:
        file = Path(file)
        file.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(increment_path(file).with_suffix(".jpg")), crop)
    return crop if BGR else crop[..., ::-1]


def feature_visualization(x: torch.Tensor, module_type: str, stage: int, n: int = 32,
                          save_dir: Path = Path("runs/detect/exp")) -> None:
    """Save up to ``n`` channels of a (b, c, h, w) feature map as ``stage{i}_{type}_features.png`` (+ .npy)."""
    if "Detect" in module_type or not isinstance(x, torch.Tensor) or x.dim() != 4:
        return
    _, channels, height, width = x.shape
    if height <= 1 or width <= 1:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    f = save_dir / f"stage{stage}_{module_type.split('.')[-1]}_features.png"
    blocks = torch.chunk(x[0].detach().float().cpu(), channels, dim=0)  # per-channel (1, h, w) maps
    n = min(n, channels)
    fig, ax = plt.subplots(math.ceil(n / 8), 8, tight_layout=True)
    ax = np.atleast_1d(ax).ravel()
    plt.subplots_adjust(wspace=0.05, hspace=0.05)
    for i in range(len(ax)):
        if i < n:
            ax[i].imshow(blocks[i].squeeze())
        ax[i].axis("off")
    LOGGER.info(f"Saving {f}... ({n}/{channels})")
    plt.savefig(f, dpi=300, bbox_inches="tight")
    plt.close(fig)
    np.save(str(f.with_suffix(".npy")), x[0].detach().float().cpu().numpy())


def plot_evolve(evolve_csv: str | Path = "path/to/evolve.csv") -> Path:
    """``evolve.png`` next to ``evolve_csv``: each evolved hyp against fitness, the best generation marked.

    One panel per hyp column on a 6×5 grid (v6.1's layout): the generations as points coloured by their density
    (log counts of a 20×20 histogram, :func:`hist2d`), a black ``+`` at the best one, its value in the title.
    Logs the best row and its values.
    """
    evolve_csv = Path(evolve_csv)
    with open(evolve_csv) as f:
        keys = [k.strip() for k in f.readline().split(",")]
    x = np.loadtxt(evolve_csv, ndmin=2, delimiter=",", skiprows=1)
    f = x[:, 2] * 0.1 + x[:, 3] * 0.9  # fitness: 0.1 mAP@.5 + 0.9 mAP@.5:.95
    j = int(np.argmax(f))
    fig = new_figure((10, 12))
    LOGGER.info(f"Best results from row {j} of {evolve_csv}:")
    for i, k in enumerate(keys[7:]):
        v = x[:, 7 + i]
        ax = fig.add_subplot(6, 5, i + 1)
        ax.scatter(v, f, c=hist2d(v, f, 20), cmap="viridis", alpha=0.8, edgecolors="none")
        ax.plot(v[j], f.max(), "k+", markersize=15)
        ax.set_title(f"{k} = {v[j]:.3g}", fontdict={"size": 9})
        if i % 5:
            ax.set_yticks([])
        ax.tick_params(labelsize=8)
        LOGGER.info(f"{k:>15}: {v[j]:.3g}")
    out = evolve_csv.with_suffix(".png")
    fig.savefig(out, dpi=200)
    LOGGER.info(f"Saved {out}")
    return out


def plot_val_study(file: str | Path = "", dir: str | Path = "", x: Sequence[int] | None = None) -> Path:
    """``study.png`` from the ``study*.txt`` tables of ``val.py --task study``: COCO AP against GPU speed.

    Reads the sorted ``study*.txt`` in the folder of ``file`` (or ``dir``, or the working directory); per table,
    mAP@.5:.95 × 100 against inference ms/img over the sizes up to its best mAP (the first size skipped), with
    EfficientDet's published points for reference, as v6.1 draws it. ``x`` (the image sizes) is accepted for
    v6.1's signature. Returns the file written next to the tables.
    """
    save_dir = Path(file).parent if file else Path(dir or ".")
    fig = new_figure((8, 4))
    ax = fig.add_subplot(1, 1, 1)
    for f in sorted(save_dir.glob("study*.txt")):
        y = np.loadtxt(f, dtype=np.float32, usecols=[0, 1, 2, 3, 7, 8, 9], ndmin=2).T
        j = int(y[3].argmax()) + 1
        ax.plot(y[5, 1:j], y[3, 1:j] * 1e2, ".-", linewidth=2, markersize=8,
                label=f.stem.replace("study_coco_", "").replace("yolo", "YOLO"))
    ax.plot(1e3 / np.array([209, 140, 97, 58, 35, 18]), [34.6, 40.5, 43.0, 47.5, 49.7, 51.5], "k.-", linewidth=2,
            markersize=8, alpha=0.25, label="EfficientDet")
    ax.grid(alpha=0.2)
    ax.set_yticks(np.arange(20, 60, 5))
    ax.set_xlim(0, 57)
    ax.set_ylim(25, 55)
    ax.set_xlabel("GPU Speed (ms/img)")
    ax.set_ylabel("COCO AP val")
    ax.legend(loc="lower right")
    out = save_dir / "study.png"
    LOGGER.info(f"Saving {out}...")
    fig.savefig(out, dpi=300)
    return out
