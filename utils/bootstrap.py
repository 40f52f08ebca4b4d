"""Paired bootstrap over validation images: is a variant's mAP better than the baseline's, beyond sampling noise?

Two models validated on the same images are scored on the same draws of images. One resample draws ``n_images``
images with replacement (fixed seed); both models' mAP@.5 and mAP@.5:.95 are recomputed on it from their per-image
records (``utils.eval_records``), and Δ = variant − baseline. Over ``n`` resamples (default 1000) the 2.5 and 97.5
percentiles of Δ give a 95% interval, and the fraction of resamples with Δ > 0 says how often the variant wins.
Because both models see the same draw, image difficulty cancels and the interval is far narrower than one built
from each model's own spread.

Several seeds: the baseline and the variant of the same seed form a pair; every pair is resampled with the same
draws and the pairs' Δs are pooled (``seeds × n`` values), so the interval widens when seeds disagree. The point
estimate is the mean over seeds of Δ on the full validation set.

What it measures: how much the verdict could change with another validation set of the same kind (image sampling
noise). It does not resample training: training noise is what the seeds are for.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from utils.eval_records import EvalRecords, RecordsScorer

METRICS = ("mAP50", "mAP50_95")


def resample_counts(n_images: int, n: int = 1000, seed: int = 0) -> np.ndarray:
    """(n, n_images) int: how many times each image occurs in each of ``n`` bootstrap resamples (fixed seed)."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_images, size=(n, n_images))
    return np.stack([np.bincount(d, minlength=n_images) for d in draws]) if n_images else np.zeros((n, 0), int)


def resampled_maps(rec: EvalRecords, counts: np.ndarray) -> np.ndarray:
    """(1 + n, 2): ``(mAP@.5, mAP@.5:.95)`` on the full set (row 0), then on each resample of ``counts``."""
    scorer = RecordsScorer(rec)
    return np.array([scorer.score(None)] + [scorer.score(c) for c in counts])


@dataclass
class PairedDelta:
    """Variant minus baseline for one metric, over seeds and bootstrap resamples.

    Attributes:
        metric: ``mAP50`` or ``mAP50_95``.
        delta: mean over seeds of Δ on the full validation set.
        lo, hi: the percentile interval of the pooled resampled Δs (``level``, default 95%).
        win: fraction of pooled resamples in which the variant scores higher.
        n_resamples, n_seeds, n_images: the sizes behind the interval.
        level: the interval's coverage.
    """

    metric: str
    delta: float
    lo: float
    hi: float
    win: float
    n_resamples: int
    n_seeds: int
    n_images: int
    level: float = 0.95

    @property
    def verdict(self) -> str:
        """``better`` (interval above 0), ``worse`` (below 0) or ``no detectable difference``."""
        if self.lo > 0:
            return "better"
        if self.hi < 0:
            return "worse"
        return "no detectable difference"

    def to_dict(self) -> dict:
        return {**asdict(self), "verdict": self.verdict}


def paired_bootstrap(pairs: Sequence[tuple[EvalRecords, EvalRecords]], n: int = 1000, seed: int = 0,
                     level: float = 0.95, cache: dict | None = None) -> dict[str, PairedDelta]:
    """Paired bootstrap of variant − baseline over validation images, pooled over seeds (module docstring).

    Args:
        pairs: ``(baseline records, variant records)`` per seed; the two of a pair must cover the same images.
        n: resamples per pair.
        seed: seed of the resampling (every pair uses the same draws).
        level: interval coverage.
        cache: optional dict that keeps each records' resampled scores (keyed by where they were loaded from, or
            the object, with the image order, ``n`` and ``seed``): a baseline shared by several variants, or an
            ablation that rewrites its report after every run, scores each run once.

    Returns:
        ``{"mAP50": PairedDelta, "mAP50_95": PairedDelta}``.

    Raises:
        ValueError: no pairs, or a pair whose images differ.
    """
    if not pairs:
        raise ValueError("paired_bootstrap needs at least one (baseline, variant) pair")
    cache, local = ({} if cache is None else cache), {}
    full, resampled, n_images = [], [], None
    for base, var in pairs:
        var = var.reordered(base.images)  # same images, the baseline's order (raises if they differ)
        counts = None
        m = []
        for r in (base, var):
            store = cache if r.source else local  # in-memory records: this call only (ids are reused)
            key = (r.source or id(r), hash(tuple(r.images)), n, seed)
            if key not in store:
                counts = resample_counts(base.n_images, n, seed) if counts is None else counts
                store[key] = resampled_maps(r, counts)
            m.append(store[key])
        d = m[1] - m[0]  # (1 + n, 2)
        full.append(d[0])
        resampled.append(d[1:])
        n_images = base.n_images
    full, pooled = np.mean(full, 0), np.concatenate(resampled, 0)  # (2,), (seeds * n, 2)
    q = (1 - level) / 2 * 100
    out = {}
    for k, name in enumerate(METRICS):
        lo, hi = np.percentile(pooled[:, k], [q, 100 - q]) if len(pooled) else (full[k], full[k])
        out[name] = PairedDelta(metric=name, delta=float(full[k]), lo=float(lo), hi=float(hi),
                                win=float((pooled[:, k] > 0).mean()) if len(pooled) else 0.0,
                                n_resamples=len(pooled), n_seeds=len(pairs), n_images=int(n_images), level=level)
    return out
