"""Per-image evaluation records: what ``val.run`` matched, kept per image so mAP can be recomputed on any resample.

A validation run scores every detection against the labels of its image at ten IoU thresholds (0.5:0.95). mAP
is then computed from all images' matches pooled together. :class:`EvalRecords` keeps those matches *per image*
(``tp``, ``conf``, ``pred_cls`` of every detection, the class of every label, and which image each belongs to), so
that :func:`records_map` can recompute mAP@.5 and mAP@.5:.95 on a multiset of images, e.g. a bootstrap resample,
without running the model again. With every image counted once it reproduces ``val.run``'s numbers exactly (same
ordering, same arithmetic as ``utils.metrics.ap_per_class``).

Records are saved as a small ``.npz`` (``save``/``load``): train.py writes the records of the latest and of the
best epoch to ``<run>/records/last.npz`` and ``best.npz``; ``val.py --save-records`` writes ``records.npz``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from utils.general import atomic_write
from utils.metrics import compute_ap

FORMAT = 1  # bumped when the file layout changes


@dataclass
class EvalRecords:
    """Matched-detection statistics of one validation, per image.

    Attributes:
        images: the image files in validation order (their paths as the loader gave them).
        tp: (N, T) bool, detection k is a true positive at IoU threshold j.
        conf: (N,) detection confidences (the dtype validation produced: float32, float16 under fp16 inference).
        pred_cls: (N,) predicted classes.
        pred_image: (N,) index into ``images`` of each detection.
        target_cls: (M,) class of every label.
        target_image: (M,) index into ``images`` of each label.
        iou_thresholds: (T,) the IoU thresholds of the columns of ``tp``.
        meta: small JSON-able facts saved with the records (train.py: the ``epoch`` they are from).
        source: where :meth:`load` read them (path and modification time; not saved), a cache key.
    """

    images: list[str]
    tp: np.ndarray
    conf: np.ndarray
    pred_cls: np.ndarray
    pred_image: np.ndarray
    target_cls: np.ndarray
    target_image: np.ndarray
    iou_thresholds: np.ndarray
    meta: dict = field(default_factory=dict)
    source: str | None = None

    @classmethod
    def from_stats(cls, images: Sequence[str], stats: Sequence[tuple], stat_image: Sequence[int],
                   iou_thresholds: Sequence[float]) -> "EvalRecords":
        """Build from ``val.run``'s per-image tuples ``(correct, conf, cls, target cls)`` and their image indices."""
        t = len(iou_thresholds)
        parts = [[np.asarray(x) for x in s] for s in stats]
        n_pred = [len(p[1]) for p in parts]
        n_tgt = [len(p[3]) for p in parts]
        cat = lambda k, shape, dt: (np.concatenate([p[k] for p in parts]).astype(dt, copy=False)  # noqa: E731
                                    if parts else np.zeros(shape, dt))
        conf_dt = parts[0][1].dtype if parts and parts[0][1].size else np.float32
        return cls(images=[str(x) for x in images],
                   tp=cat(0, (0, t), bool).reshape(-1, t), conf=cat(1, (0,), conf_dt), pred_cls=cat(2, (0,), np.int32),
                   pred_image=np.repeat(np.asarray(stat_image, dtype=np.int32), n_pred),
                   target_cls=cat(3, (0,), np.int32),
                   target_image=np.repeat(np.asarray(stat_image, dtype=np.int32), n_tgt),
                   iou_thresholds=np.asarray(iou_thresholds, dtype=np.float64))

    @property
    def n_images(self) -> int:
        return len(self.images)

    def save(self, path: str | Path) -> Path:
        """Write the records to ``path`` (``.npz``, compressed) atomically; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {k: getattr(self, k) for k in ("tp", "conf", "pred_cls", "pred_image", "target_cls",
                                                   "target_image", "iou_thresholds")}
        arrays["tp"] = np.packbits(self.tp, axis=1)  # 10 thresholds: 2 bytes per detection
        atomic_write(path, lambda f: np.savez_compressed(f, format=np.array(FORMAT), images=np.array(self.images),
                                                          n_thresholds=np.array(self.tp.shape[1]),
                                                          meta=np.array(json.dumps(self.meta)), **arrays))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "EvalRecords":
        """Read records written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as z:
            if int(z["format"]) != FORMAT:
                raise ValueError(f"{path}: evaluation records format {int(z['format'])}, this code reads {FORMAT}")
            t = int(z["n_thresholds"])
            tp = np.unpackbits(z["tp"], axis=1, count=t).astype(bool) if len(z["tp"]) else np.zeros((0, t), bool)
            return cls(images=[str(x) for x in z["images"]], tp=tp, conf=z["conf"], pred_cls=z["pred_cls"],
                       pred_image=z["pred_image"], target_cls=z["target_cls"], target_image=z["target_image"],
                       iou_thresholds=z["iou_thresholds"], meta=json.loads(str(z["meta"])) if "meta" in z else {},
                       source=f"{Path(path).resolve()}@{Path(path).stat().st_mtime_ns}")

    def reordered(self, images: Sequence[str]) -> "EvalRecords":
        """The same records with image indices following ``images`` (the same set of images in another order).

        Raises:
            ValueError: the two sets of images differ (naming a few that do).
        """
        images = [str(x) for x in images]
        if images == self.images:
            return self
        if sorted(images) != sorted(self.images) or len(set(images)) != len(images):
            only_a = sorted(set(self.images) - set(images))[:3]
            only_b = sorted(set(images) - set(self.images))[:3]
            raise ValueError(f"the records cover other images ({len(self.images)} vs {len(images)}; only here: "
                             f"{only_a}, only there: {only_b}): paired comparisons need the same validation set")
        pos = {name: i for i, name in enumerate(images)}
        new = np.array([pos[x] for x in self.images], dtype=np.int32)
        return replace(self, images=images,
                       pred_image=new[self.pred_image] if len(self.pred_image) else self.pred_image,
                       target_image=new[self.target_image] if len(self.target_image) else self.target_image)


class RecordsScorer:
    """mAP@.5 and mAP@.5:.95 of :class:`EvalRecords` on any multiset of its images.

    The detections are sorted by confidence once (descending, stable, as ``ap_per_class`` sorts them); scoring a
    multiset repeats each image's detections and labels as often as the image occurs, so every count is that of
    a validation set holding those copies.
    """

    def __init__(self, rec: EvalRecords):
        self.rec = rec
        order = np.argsort(-np.asarray(rec.conf, dtype=float), kind="stable")  # as ap_per_class sorts
        self.any_tp = bool(rec.tp.any())
        self.classes = np.unique(rec.target_cls)
        self.by_class = {int(c): order[rec.pred_cls[order] == c] for c in self.classes}  # each in conf order
        self.nbins = int(max(rec.target_cls.max(initial=-1), rec.pred_cls.max(initial=-1))) + 1

    def score(self, counts: np.ndarray | None = None, eps: float = 1e-16) -> tuple[float, float]:
        """``(mAP@.5, mAP@.5:.95)`` with image ``i`` counted ``counts[i]`` times (None: each image once).

        Mirrors ``val.run``: 0 when no detection is correct at any threshold; AP per label class present (a class
        with labels but no detections scores 0); classes only predicted are ignored. Cumulative counts are summed
        as integers, which gives the same floats as ``ap_per_class``'s float sums (exact up to 2**53).
        """
        rec = self.rec
        if counts is None:
            n_lab = np.bincount(rec.target_cls, minlength=self.nbins)
            rows = self.by_class
        else:
            counts = np.asarray(counts)
            n_lab = np.bincount(rec.target_cls, weights=counts[rec.target_image], minlength=self.nbins)
            rows = {c: np.repeat(o, counts[rec.pred_image[o]]) for c, o in self.by_class.items()}
        present = [int(c) for c in self.classes if n_lab[c] > 0]
        tps = {c: rec.tp[rows[c]] for c in present}
        if not present or not any(t.any() for t in tps.values()):
            return 0.0, 0.0  # val.run scores nothing when no detection is correct (or nothing is labelled)
        ap = np.zeros((len(present), rec.tp.shape[1]))
        for ci, c in enumerate(present):
            if not len(tps[c]):
                continue
            tpc = tps[c].cumsum(0)  # (n, T) int
            recall = tpc / (n_lab[c] + eps)
            precision = tpc / np.arange(1, len(tpc) + 1)[:, None]  # tp + fp = detections so far
            for j in range(tpc.shape[1]):
                ap[ci, j] = compute_ap(recall[:, j], precision[:, j])[0]
        return float(ap[:, 0].mean()), float(ap.mean(1).mean())


def records_map(rec: EvalRecords, counts: np.ndarray | None = None) -> tuple[float, float]:
    """``(mAP@.5, mAP@.5:.95)`` of ``rec`` with image ``i`` counted ``counts[i]`` times (None: once each)."""
    return RecordsScorer(rec).score(counts)
