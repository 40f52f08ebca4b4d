"""Suppression rules other than hard NMS, for ``utils.nms.non_max_suppression(method=...)``.

* ``"diou"``: DIoU-NMS (Zheng et al., "Distance-IoU Loss: Faster and Better Learning for Bounding Box
  Regression", AAAI 2020, arXiv 1911.08287). Greedy like hard NMS, but a lower-scored box of the same class is
  suppressed when ``IoU − ρ²/c² > iou_thres``, with ρ the distance between the two box centres and c the diagonal
  of the smallest box enclosing both. Boxes that overlap a lot but whose centres lie apart (two adjacent objects)
  survive more often.
* ``"soft-linear"`` and ``"soft-gaussian"``: Soft-NMS (Bodla et al., "Soft-NMS -- Improving Object Detection
  With One Line of Code", ICCV 2017, arXiv 1704.04503). Overlapping boxes are not removed but their scores
  decay each time a higher-scored box of the same class is picked: linear ``s·(1 − IoU)`` when
  ``IoU > iou_thres`` (exclusive, like hard NMS; the paper writes ``≥``), Gaussian ``s·exp(−IoU²/σ)`` for every
  box (``iou_thres`` is not used). A box whose decayed score is no longer above ``conf_thres`` is dropped: the same
  test that admitted it as a candidate (val.py's 0.001 is the paper's score threshold). The kept rows carry their
  decayed scores.

Both are loops over picks with one-against-the-rest tensor operations. The rows are split by class (so no
coordinate offset, and no float rounding of large coordinates); each pick takes the best remaining row of any
class and compares it with the rows of its own class only. Classes do not interact, so every class gets the
same sequence of picks as when run alone. The picked scores never increase (decay only lowers the scores
left), so the loop stops after ``max_det`` picks: exactly the ``max_det`` best rows of the full result.
"""

from __future__ import annotations

import torch

from utils.general import InputError

NMS_METHODS = ("nms", "diou", "soft-linear", "soft-gaussian")
EMPTY = float("-inf")  # the best remaining score of a class with no rows left


def check_nms_method(method: str, sigma: float = 0.5) -> None:
    """Raise :class:`InputError` for an unknown ``method``, or a ``sigma`` that is not positive with
    ``"soft-gaussian"`` (the only method that uses it)."""
    if method not in NMS_METHODS:
        raise InputError(f"NMS method must be one of {list(NMS_METHODS)}, got {method!r}")
    if method == "soft-gaussian" and not sigma > 0:  # also catches NaN
        raise InputError(f"the soft-NMS sigma must be positive, got {sigma}")


def _area(b: torch.Tensor) -> torch.Tensor:
    return (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])


def iou_one(box: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """IoU (n,) of one xyxy ``box`` (4,) with each of ``boxes`` (n, 4); 0 where the union is empty."""
    wh = (torch.minimum(box[2:], boxes[:, 2:]) - torch.maximum(box[:2], boxes[:, :2])).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    union = _area(box) + _area(boxes) - inter
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(union.dtype).tiny), torch.zeros_like(inter))


def diou_one(box: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """DIoU (n,) = IoU − ρ²/c² of one xyxy ``box`` (4,) with each of ``boxes`` (n, 4) (IoU where c = 0)."""
    rho2 = ((box[:2] + box[2:] - boxes[:, :2] - boxes[:, 2:]) / 2).pow(2).sum(1)  # squared centre distance
    c2 = (torch.maximum(box[2:], boxes[:, 2:]) - torch.minimum(box[:2], boxes[:, :2])).pow(2).sum(1)  # diagonal²
    penalty = torch.where(c2 > 0, rho2 / c2.clamp(min=torch.finfo(c2.dtype).tiny), torch.zeros_like(c2))
    return iou_one(box, boxes) - penalty


def _class_groups(boxes: torch.Tensor, scores: torch.Tensor, cls: torch.Tensor) -> list[list[torch.Tensor]]:
    """Per class present, ``[boxes (m, 4) float32, scores (m,) float32, row indices (m,)]`` by descending score
    (ties: the earlier row first)."""
    order = torch.sort(scores, descending=True, stable=True)[1]
    order = order[torch.sort(cls[order], stable=True)[1]]  # grouped by class, each group still by score
    counts = torch.unique_consecutive(cls[order], return_counts=True)[1].tolist()
    parts = boxes[order].float().split(counts), scores[order].float().split(counts), order.split(counts)
    return [list(g) for g in zip(*parts)]


def _best(heads: list[float]) -> int:
    """Index of the class whose best remaining score is highest (the lowest index on ties); -1 when all are empty."""
    j = max(range(len(heads)), key=heads.__getitem__, default=-1)
    return j if j >= 0 and heads[j] != EMPTY else -1



def diou_nms(boxes: torch.Tensor, scores: torch.Tensor, cls: torch.Tensor, iou_thres: float,
             max_det: int) -> torch.Tensor:
    """Greedy DIoU-NMS per class.

    Args:
        boxes: (n, 4) xyxy.
        scores: (n,).
        cls: (n,) class ids (all equal for class-agnostic suppression).
        iou_thres: a box is suppressed when its DIoU with a picked box of its class exceeds this.
        max_det: most picks.

    Returns:
        Indices (k,) of the kept boxes, by descending score.
    """
    groups = _class_groups(boxes, scores, cls)  # each class's remainder, best first
    heads = torch.stack([s[0] for _, s, _ in groups]).tolist() if groups else []
    keep = []
    while len(keep) < max_det and (j := _best(heads)) >= 0:
        b, s, idx = groups[j]
        keep.append(idx[:1])
        rest = ~(diou_one(b[0], b[1:]) > iou_thres)
        groups[j] = b, s, idx = b[1:][rest], s[1:][rest], idx[1:][rest]
        heads[j] = float(s[0]) if len(s) else EMPTY
    return torch.cat(keep) if keep else torch.zeros(0, dtype=torch.long, device=boxes.device)


def soft_nms(boxes: torch.Tensor, scores: torch.Tensor, cls: torch.Tensor, iou_thres: float, conf_thres: float,
             gaussian: bool, sigma: float, max_det: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft-NMS per class: pick the best remaining box, decay the scores of its class, drop those at or below
    ``conf_thres``; repeat.

    Args:
        boxes: (n, 4) xyxy.
        scores: (n,).
        cls: (n,) class ids (all equal for class-agnostic suppression).
        iou_thres: linear decay applies above this IoU (the Gaussian ignores it).
        conf_thres: decayed scores must stay above this.
        gaussian: Gaussian decay ``exp(−IoU²/sigma)``, else linear ``1 − IoU``.
        sigma: the Gaussian's σ.
        max_det: most picks.

    Returns:
        Indices (k,) of the kept boxes and their decayed scores (k,) (float32), by descending decayed score.
    """
    groups = _class_groups(boxes, scores, cls)
    heads = torch.stack([s[0] for _, s, _ in groups]).tolist() if groups else []
    keep, kept = [], []
    while len(keep) < max_det and (j := _best(heads)) >= 0:
        b, s, idx = groups[j]
        k = s.argmax()  # the first of equal scores: the earlier row
        keep.append(idx[k].view(1))
        kept.append(s[k].view(1))
        iou = iou_one(b[k], b)
        if gaussian:
            s = s * torch.exp(-iou.pow(2) / sigma)
        else:
            s = torch.where(iou > iou_thres, s * (1 - iou), s)
        alive = s > conf_thres
        alive[k] = False  # the pick leaves the pool
        groups[j] = b, s, idx = b[alive], s[alive], idx[alive]
        heads[j] = float(s.max()) if len(s) else EMPTY
    if not keep:
        return torch.zeros(0, dtype=torch.long, device=boxes.device), torch.zeros(0, device=boxes.device)
    return torch.cat(keep), torch.cat(kept)


def suppress(x: torch.Tensor, method: str, conf_thres: float, iou_thres: float, sigma: float, agnostic: bool,
             max_det: int) -> torch.Tensor:
    """Rows of ``x`` (n, 6) ``x1, y1, x2, y2, conf, cls`` kept by ``method`` (not ``"nms"``), at most ``max_det``,
    by descending conf; soft-NMS rows carry their decayed conf (in ``x``'s dtype)."""
    cls = torch.zeros_like(x[:, 5]) if agnostic else x[:, 5]
    if method == "diou":
        return x[diou_nms(x[:, :4], x[:, 4], cls, iou_thres, max_det)]
    if method not in ("soft-linear", "soft-gaussian"):
        raise InputError(f"NMS method must be one of {list(NMS_METHODS)}, got {method!r}")
    i, s = soft_nms(x[:, :4], x[:, 4], cls, iou_thres, conf_thres, method == "soft-gaussian", sigma, max_det)
    out = x[i]
    out[:, 4] = s.to(x.dtype)
    return out
