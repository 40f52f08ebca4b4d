"""Smaller v6.1 plotting helpers of ``utils.plots`` (re-exported there): font check, 2-D density, low-pass filter,
LR schedule, val/targets text-file histograms and the iDetection app profile.

Figures are pyplot-free (:func:`utils.figures.new_figure`); scipy is imported only by the low-pass filter.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import ImageFont

from utils.annotator import load_font
from utils.boxes import xyxy2xywh
from utils.figures import new_figure
from utils.general import FONT, LOGGER

IDETECTION_PANELS = ("Images", "Free Storage (GB)", "RAM Usage (GB)", "Battery", "dt_raw (ms)", "dt_smooth (ms)",
                     "real-world FPS")
_font_warned: set[str] = set()


def check_pil_font(font: str | Path = FONT, size: int = 10) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """A PIL TrueType font of ``size``: ``font`` when found locally (see :func:`utils.checks.check_font`).

    v6.1 downloads a missing font. This project never downloads: it falls back to the first installed of
    DejaVu Sans (shipped with matplotlib), Liberation Sans, FreeSans, else PIL's built-in default font, and
    warns once per font which one it used instead.
    """
    from utils.checks import check_font

    try:
        return ImageFont.truetype(str(check_font(font)), size)
    except (FileNotFoundError, OSError) as e:
        f = load_font(str(font), size)
        path = getattr(f, "path", None)
        used = Path(path).name if isinstance(path, (str, Path)) else "PIL's built-in default font"
        if str(font) not in _font_warned:
            _font_warned.add(str(font))
            LOGGER.warning(f"WARNING: {e}. Using {used} instead.")
        return f


def hist2d(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, n: int = 100) -> np.ndarray:
    """Log point density: for each point ``(x[i], y[i])``, ``log(count)`` of the points in its cell of an
    ``n`` x ``n`` histogram spanning the data (>= 0, since a point's own cell holds at least itself)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    h, xe, ye = np.histogram2d(x, y, n)  # h: (n, n) counts
    xi = np.clip(np.digitize(x, xe) - 1, 0, h.shape[0] - 1)  # the maximum belongs to the last cell
    yi = np.clip(np.digitize(y, ye) - 1, 0, h.shape[1] - 1)
    return np.log(h[xi, yi])


def butter_lowpass_filtfilt(data: Sequence[float] | np.ndarray, cutoff: float = 1500, fs: float = 50000,
                            order: int = 5) -> np.ndarray:
    """Zero-phase low-pass filter: an ``order`` Butterworth filter with ``cutoff`` Hz at sample rate ``fs`` Hz,
    applied forwards and backwards (scipy.signal.filtfilt), so the output has no delay."""
    try:
        from scipy.signal import butter, filtfilt
    except ImportError as e:
        raise ImportError("butter_lowpass_filtfilt needs scipy (pip install \"scipy>=1.4.1\")") from e
    b, a = butter(order, cutoff / (0.5 * fs), btype="low", analog=False)
    return filtfilt(b, a, np.asarray(data, dtype=float))


def _light_copy(optimizer: torch.optim.Optimizer, scheduler: Any) -> tuple[torch.optim.Optimizer, Any]:
    """Deep copies of an optimizer and its scheduler that share neither tensors nor memory with the originals:
    parameters and per-parameter state are replaced by empty tensors (the LR schedule never reads them)."""
    memo: dict[int, Any] = {}
    for g in optimizer.param_groups:
        for p in g["params"]:
            memo[id(p)] = torch.empty(0)
    for state in optimizer.state.values():
        for v in state.values():
            if isinstance(v, torch.Tensor):
                memo[id(v)] = torch.empty(0)
    return copy.deepcopy((optimizer, scheduler), memo)


def plot_lr_scheduler(optimizer: torch.optim.Optimizer, scheduler: Any, epochs: int = 300,
                      save_dir: str | Path = "") -> Path:
    """``LR.png``: the learning rate of the first parameter group over ``epochs`` scheduler steps.

    Steps copies of ``optimizer`` and ``scheduler``; the caller's objects (their learning rates, step counters and
    state) are left untouched. Returns the file written.
    """
    optimizer, scheduler = _light_copy(optimizer, scheduler)
    y = []
    with warnings.catch_warnings():  # stepping a scheduler without optimizer.step() warns: intended here
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(epochs):
            scheduler.step()
            y.append(optimizer.param_groups[0]["lr"])
    fig = new_figure((6, 4))
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(y, ".-", label="LR")
    ax.set_xlabel("epoch")
    ax.set_ylabel("LR")
    ax.grid()
    ax.set_xlim(0, epochs)
    ax.set_ylim(0)
    out = Path(save_dir) / "LR.png"
    fig.savefig(out, dpi=200)
    return out


def plot_val_txt(file: str | Path = "val.txt") -> tuple[Path, Path]:
    """``hist2d.png`` and ``hist1d.png`` of the box centres in ``file`` (rows ``x1 y1 x2 y2 ...`` in pixels),
    written next to it (v6.1 reads ``val.txt`` in the working directory, the default here)."""
    file = Path(file)
    x = np.loadtxt(file, dtype=np.float32, ndmin=2)
    box = xyxy2xywh(x[:, :4])
    cx, cy = box[:, 0], box[:, 1]
    fig = new_figure((6, 6))
    ax = fig.add_subplot(1, 1, 1)
    ax.hist2d(cx, cy, bins=600, cmax=10, cmin=0)
    ax.set_aspect("equal")
    out2 = file.parent / "hist2d.png"
    fig.savefig(out2, dpi=300)
    fig = new_figure((12, 6))
    for i, (v, name) in enumerate(((cx, "x"), (cy, "y"))):
        a = fig.add_subplot(1, 2, i + 1)
        a.hist(v, bins=600)
        a.set_title(f"{name} centre")
    out1 = file.parent / "hist1d.png"
    fig.savefig(out1, dpi=200)
    return out2, out1


def plot_targets_txt(file: str | Path = "targets.txt") -> Path:
    """``targets.jpg`` next to ``file``: histograms of its first four columns (x, y, width, height of the targets),
    each labelled with its mean +/- standard deviation (v6.1 reads ``targets.txt`` in the working directory)."""
    file = Path(file)
    x = np.loadtxt(file, dtype=np.float32, ndmin=2).T
    fig = new_figure((8, 8))
    for i, s in enumerate(("x targets", "y targets", "width targets", "height targets")):
        a = fig.add_subplot(2, 2, i + 1)
        a.hist(x[i], bins=100, label=f"{x[i].mean():.3g} +/- {x[i].std():.3g}")
        a.legend()
        a.set_title(s)
    out = file.parent / "targets.jpg"
    fig.savefig(out, dpi=200)
    return out


def profile_idetection(start: int = 0, stop: int = 0, labels: Sequence[str] = (), save_dir: str | Path = "") -> Path:
    """``idetection_profile.png`` from the iDetection iOS app's ``frames*.txt`` logs in ``save_dir``.

    Each row of a log is one frame: column 0 its time stamp (s), then free storage (GB), RAM (GB), battery,
    dt_raw (ms), dt_smooth (ms) and real-world FPS. Rows ``start:stop`` (``stop`` 0 = to the end) are drawn against
    the time since the first of them; the 'Images' panel shows the frame index. One line per file, labelled
    ``labels[i]`` or the file name. Returns the file written.
    """
    save_dir = Path(save_dir)
    fig = new_figure((12, 6))
    ax = [fig.add_subplot(2, 4, i + 1) for i in range(8)]
    ax[-1].set_visible(False)  # 7 panels
    for fi, f in enumerate(sorted(save_dir.glob("frames*.txt"))):
        try:
            r = np.loadtxt(f, ndmin=2)[start:stop or None].T  # (columns, frames)
            t = r[0] - r[0].min()
            r[0] = np.arange(start, start + r.shape[1])
            label = labels[fi] if fi < len(labels) else f.stem.replace("frames_", "")
            for i, a in enumerate(ax[:min(len(r), len(IDETECTION_PANELS))]):
                a.plot(t, r[i], marker=".", label=label, linewidth=1, markersize=5)
                a.set_title(IDETECTION_PANELS[i])
                a.set_xlabel("time (s)")
        except Exception as e:  # a malformed log must not stop the others
            LOGGER.warning(f"Warning: Plotting error for {f}; {e}")
    ax[1].legend()
    out = save_dir / "idetection_profile.png"
    fig.savefig(out, dpi=200)
    return out
