"""Figures of the validation metrics: PR / metric-confidence curves and the confusion matrix.

Figures come from ``utils.figures.new_figure`` (pyplot-free, Agg); matplotlib and seaborn are imported when one is
drawn, so importing the metrics stays cheap.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from utils.figures import new_figure


def plot_pr_curve(px: np.ndarray, py: Sequence[np.ndarray], ap: np.ndarray, save_dir: str | Path = "pr_curve.png",
                  names: Sequence[str] = (), map50: float | None = None) -> None:
    """Precision-recall curves at IoU .5, one per class with predictions, plus their mean in bold.

    Args:
        px: (1000,) recall samples.
        py: per-class (1000,) precision envelopes sampled at ``px``.
        ap: (len(py), t) AP rows of the curves in ``py``; the legend shows ``ap[:, 0]``.
        save_dir: output file.
        names: names of the curves in ``py`` (legend entries only when 1…20 of them).
        map50: mAP@.5 of the bold mean curve's legend (default: mean of ``ap[:, 0]``).
    """
    fig = new_figure((9, 6))
    ax = fig.add_subplot()
    y = np.stack(py, axis=1) if len(py) else np.zeros((len(px), 1))
    if 0 < len(names) < 21:
        for i, yi in enumerate(y.T):
            ax.plot(px, yi, linewidth=1, label=f"{names[i]} {ap[i, 0]:.3f}")
    else:
        ax.plot(px, y, linewidth=1, color="grey")
    if map50 is None:
        map50 = float(ap[:, 0].mean()) if len(ap) else 0.0
    ax.plot(px, y.mean(1), linewidth=3, color="blue", label=f"all classes {map50:.3f} mAP@0.5")
    ax.set_xlabel("Recall")
    ax.set_ylabel("Precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(bbox_to_anchor=(1.04, 1), loc="upper left")
    fig.savefig(Path(save_dir), dpi=250)


def plot_mc_curve(px: np.ndarray, py: np.ndarray, save_dir: str | Path = "mc_curve.png", names: Sequence[str] = (),
                  xlabel: str = "Confidence", ylabel: str = "Metric") -> None:
    """A metric (F1, P or R) against confidence, one curve per class plus the bold class mean.

    Args:
        px: (1000,) confidence samples.
        py: (nc, 1000) metric values.
        save_dir: output file.
        names: class names (legend entries only when 1…20 of them).
        xlabel, ylabel: axis titles.
    """
    fig = new_figure((9, 6))
    ax = fig.add_subplot()
    py = np.asarray(py).reshape(-1, len(px))
    if 0 < len(names) < 21:
        for i, y in enumerate(py):
            ax.plot(px, y, linewidth=1, label=f"{names[i]}")
    else:
        ax.plot(px, py.T, linewidth=1, color="grey")
    y = py.mean(0) if len(py) else np.zeros(len(px))
    ax.plot(px, y, linewidth=3, color="blue", label=f"all classes {y.max():.2f} at {px[y.argmax()]:.3f}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(bbox_to_anchor=(1.04, 1), loc="upper left")
    fig.savefig(Path(save_dir), dpi=250)


def plot_confusion_matrix(matrix: np.ndarray, nc: int, file: str | Path = "confusion_matrix.png",
                          normalize: bool = True, names: Sequence[str] = ()) -> None:
    """Seaborn heatmap of a (nc+1, nc+1) confusion matrix, columns normalised, values < 0.005 left blank.

    Tick labels are the class names plus ``background FP`` (x) / ``background FN`` (y) when 0 < len(names) < 99
    and len(names) == nc; cells are annotated when nc < 30.
    """
    import seaborn as sn

    array = matrix / ((matrix.sum(0).reshape(1, -1) + 1e-9) if normalize else 1)
    array[array < 0.005] = np.nan
    fig = new_figure((12, 9))
    ax = fig.add_subplot()
    sn.set(font_scale=1.0 if nc < 50 else 0.8)
    labels = (0 < len(names) < 99) and len(names) == nc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # all-NaN matrices warn
        sn.heatmap(array, ax=ax, annot=nc < 30, annot_kws={"size": 8}, cmap="Blues", fmt=".2f", square=True,
                   xticklabels=list(names) + ["background FP"] if labels else "auto",
                   yticklabels=list(names) + ["background FN"] if labels else "auto").set_facecolor((1, 1, 1))
    fig.axes[0].set_xlabel("True")
    fig.axes[0].set_ylabel("Predicted")
    fig.savefig(Path(file), dpi=250)
