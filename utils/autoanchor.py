"""AutoAnchor: anchor order check, dataset fit (best possible recall) and k-means + genetic evolution."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from scipy.cluster.vq import kmeans
from tqdm import tqdm

from utils.dataset_yaml import check_dataset, split_path
from utils.datasets import LoadImagesAndLabels
from utils.general import LOGGER, colorstr, emojis
from utils.torch_utils import de_parallel

PREFIX = colorstr("AutoAnchor: ")


def check_anchor_order(m: nn.Module) -> None:
    """Flip a Detect head's anchors along the level axis when their area order disagrees with the strides."""
    a = m.anchors.prod(-1).view(-1)  # anchor areas, level by level
    da = a[-1] - a[0]
    ds = m.stride[-1] - m.stride[0]
    if da.sign() != ds.sign():
        LOGGER.info(f"{PREFIX}Reversing anchor order")
        m.anchors[:] = m.anchors.flip(0)


def _label_wh(dataset: Any, img_size: float, scale: np.ndarray | None = None) -> np.ndarray:
    """(n, 2) label widths/heights in pixels with every image resized to longest side ``img_size`` (× ``scale``)."""
    shapes = img_size * dataset.shapes / dataset.shapes.max(1, keepdims=True)
    if scale is not None:
        shapes = shapes * scale
    wh = [lb[:, 3:5] * s for s, lb in zip(shapes, dataset.labels) if len(lb)]
    return np.concatenate(wh, 0) if wh else np.zeros((0, 2))


def _ratio_metric(k: torch.Tensor, wh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per (label, anchor) worst-side ratio ``x = min(r, 1/r)`` over w, h → (n, na), and its best over anchors."""
    r = wh[:, None] / k[None]
    x = torch.min(r, 1 / r).min(2)[0]
    return x, x.max(1)[0]


def check_anchors(dataset: Any, model: nn.Module, thr: float = 4.0, imgsz: int = 640) -> None:
    """Check the model's anchors against the dataset's labels and evolve new ones when BPR <= 0.98.

    Args:
        dataset: an object with ``.shapes`` (N, 2) image (w, h) and ``.labels`` (list of (n, 5) ``cls, xywh``
            normalised) arrays, e.g. ``LoadImagesAndLabels``.
        model: the model (DP/DDP wrappers accepted); the Detect head is ``de_parallel(model).model[-1]``.
        thr: anchor-multiple threshold (``hyp['anchor_t']``).
        imgsz: training image size.

    New anchors that raise the BPR are written into ``Detect.anchors`` in grid units (pixels / stride); the yaml is
    untouched. Uses the global numpy RNG (per-image scale jitter U(0.9, 1.1)).
    """
    m = de_parallel(model).model[-1]  # Detect
    shapes = np.asarray(dataset.shapes, dtype=float)
    scale = np.random.uniform(0.9, 1.1, size=(shapes.shape[0], 1))  # augment scale
    wh = torch.tensor(_label_wh(dataset, imgsz, scale)).float()

    def metric(k: torch.Tensor) -> tuple[float, float]:
        x, best = _ratio_metric(k, wh)
        aat = (x > 1 / thr).float().sum(1).mean()  # anchors above threshold per label
        bpr = (best > 1 / thr).float().mean()  # best possible recall
        return float(bpr), float(aat)

    stride = m.stride.to(m.anchors.device).view(-1, 1, 1)
    anchors = m.anchors.clone() * stride  # pixels
    bpr, aat = metric(anchors.cpu().view(-1, 2).float())
    s = f"\n{PREFIX}{aat:.2f} anchors/target, {bpr:.3f} Best Possible Recall (BPR). "
    if bpr > 0.98:
        LOGGER.info(emojis(f"{s}Current anchors are a good fit to dataset ✅"))
        return
    LOGGER.info(emojis(f"{s}Anchors are a poor fit to dataset ⚠️, attempting to improve..."))
    na = m.anchors.numel() // 2  # anchors over all levels
    try:
        new = kmean_anchors(dataset, n=na, img_size=imgsz, thr=thr, gen=1000, verbose=False)
    except Exception as e:
        LOGGER.info(f"{PREFIX}ERROR: {e}")
        return
    new_bpr = metric(torch.tensor(new).float())[0]
    if new_bpr > bpr:  # replace
        new = torch.tensor(new, device=m.anchors.device).type_as(m.anchors)
        m.anchors[:] = new.clone().view_as(m.anchors) / stride  # grid units, as the loss reads them
        check_anchor_order(m)
        LOGGER.info(f"{PREFIX}New anchors saved to model. Update model *.yaml to use these anchors in the future.")
    else:
        LOGGER.info(f"{PREFIX}Original anchors better than new anchors. Proceeding with original anchors.")


def _load_dataset(path: str | Path) -> LoadImagesAndLabels:
    """Training split of a dataset yaml (checked by ``check_dataset``) as ``LoadImagesAndLabels(train,
    augment=True, rect=True)``."""
    data = check_dataset(str(path))
    return LoadImagesAndLabels(split_path(data, "train"), augment=True, rect=True)


def kmean_anchors(dataset: Any = "./data/coco128.yaml", n: int = 9, img_size: int = 640, thr: float = 4.0,
                  gen: int = 1000, verbose: bool = True) -> np.ndarray:
    """Anchors evolved for a dataset: scipy k-means on whitened label sizes, then a genetic search.

    Args:
        dataset: a dataset yaml path, or an object with ``.shapes`` (N, 2 w, h) and ``.labels`` (list of (n, 5)).
        n: number of anchors.
        img_size: image size the labels are scaled to (longest side).
        thr: anchor-multiple threshold (``hyp['anchor_t']``).
        gen: generations of the genetic evolution.
        verbose: log the results after every improvement.

    Returns:
        (n, 2) anchors in pixels, sorted small → large by area. Uses the global ``random`` and numpy RNGs (seed
        both for a repeatable result).
    """
    thr = 1 / thr

    def anchor_fitness(k: np.ndarray) -> float:
        _, best = _ratio_metric(torch.tensor(k, dtype=torch.float32), wh)
        return float((best * (best > thr).float()).mean())

    def print_results(k: np.ndarray, verbose: bool = True) -> np.ndarray:
        k = k[np.argsort(k.prod(1))]  # small -> large
        x, best = _ratio_metric(torch.tensor(k, dtype=torch.float32), wh0)
        bpr, aat = (best > thr).float().mean(), (x > thr).float().mean() * n
        s = (f"{PREFIX}thr={thr:.2f}: {bpr:.4f} best possible recall, {aat:.2f} anchors past thr\n"
             f"{PREFIX}n={n}, img_size={img_size}, metric_all={x.mean():.3f}/{best.mean():.3f}-mean/best, "
             f"past_thr={x[x > thr].mean():.3f}-mean: ")
        s += ", ".join(f"{round(float(a[0]))},{round(float(a[1]))}" for a in k)
        if verbose:
            LOGGER.info(s)
        return k

    if isinstance(dataset, (str, Path)):
        dataset = _load_dataset(dataset)

    wh0 = _label_wh(dataset, img_size)
    i = int((wh0 < 3.0).any(1).sum())
    if i:
        LOGGER.info(f"{PREFIX}WARNING: Extremely small objects found. "
                    f"{i} of {len(wh0)} labels are < 3 pixels in size.")
    wh = wh0[(wh0 >= 2.0).any(1)]  # at least one side >= 2 px

    LOGGER.info(f"{PREFIX}Running kmeans for {n} anchors on {len(wh)} points...")
    k = np.zeros((0, 2))
    if len(wh) >= n:
        sd = wh.std(0)
        sd[sd == 0] = 1  # identical sizes on one axis: nothing to whiten
        k = kmeans(wh / sd, n, iter=30)[0] * sd
    if len(k) != n:  # too few points, or clusters collapsed
        LOGGER.warning(f"{PREFIX}WARNING: switching strategies from kmeans to random init "
                       f"({len(k)} of {n} centroids from {len(wh)} points)")
        k = np.sort(np.random.rand(n * 2)).reshape(n, 2) * img_size
    wh = torch.tensor(wh, dtype=torch.float32)
    wh0 = torch.tensor(wh0, dtype=torch.float32)
    k = print_results(k, verbose=False)

    f, sh, mp, s = anchor_fitness(k), k.shape, 0.9, 0.1  # fitness, shape, mutation prob, sigma
    pbar = tqdm(range(gen), bar_format="{l_bar}{bar:10}{r_bar}{bar:-10b}")
    for _ in pbar:
        v = np.ones(sh)
        while (v == 1).all():  # mutate until something changes
            v = ((np.random.random(sh) < mp) * random.random() * np.random.randn(*sh) * s + 1).clip(0.3, 3.0)
        kg = (k.copy() * v).clip(min=2.0)
        fg = anchor_fitness(kg)
        if fg > f:
            f, k = fg, kg.copy()
            pbar.desc = f"{PREFIX}Evolving anchors with Genetic Algorithm: fitness = {f:.4f}"
            if verbose:
                print_results(k, verbose)
    return print_results(k)
