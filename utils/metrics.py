"""Detection metrics: IoU variants, AP, val matching, confusion matrix.

The curve and confusion-matrix figures are drawn by :mod:`utils.metric_plots`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from utils.coco import coco80_to_coco91_class  # noqa: F401  (v6.1 users import it from utils.metrics / general)
from utils.boxes import bbox_ioa  # noqa: F401  (box geometry; v6.1 users import it from here)
from utils.general import LOGGER
from utils.iou import ciou, diou, giou, iou
from utils.metric_plots import plot_confusion_matrix, plot_mc_curve, plot_pr_curve

__all__ = ["fitness", "box_iou", "bbox_iou", "bbox_ioa", "wh_iou", "compute_ap", "ap_per_class", "process_batch",
           "ConfusionMatrix", "coco80_to_coco91_class", "labels_to_class_weights", "labels_to_image_weights"]


def fitness(x: np.ndarray) -> np.ndarray:
    """Model fitness per row of ``[P, R, mAP@.5, mAP@.5:.95, ...]``: 0.1·mAP@.5 + 0.9·mAP@.5:.95."""
    w = np.array([0.0, 0.0, 0.1, 0.9])
    return (np.asarray(x)[:, :4] * w).sum(1)


# ---------------------------------------------------------------------------------------------------------- IoU
_IOU = {"IoU": iou, "GIoU": giou, "DIoU": diou, "CIoU": ciou}  # the IoU family itself lives in utils/iou.py


def box_iou(box1: torch.Tensor, box2: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of xyxy boxes.

    Args:
        box1: (N, 4) boxes x1, y1, x2, y2.
        box2: (M, 4) boxes x1, y1, x2, y2.

    Returns:
        (N, M) tensor ``inter / (area1 + area2 - inter)`` (no eps, as v6.1).
    """
    area1 = (box1[:, 2] - box1[:, 0]) * (box1[:, 3] - box1[:, 1])
    area2 = (box2[:, 2] - box2[:, 0]) * (box2[:, 3] - box2[:, 1])
    lt = torch.max(box1[:, None, :2], box2[None, :, :2])
    rb = torch.min(box1[:, None, 2:], box2[None, :, 2:])
    inter = (rb - lt).clamp(0).prod(2)
    return inter / (area1[:, None] + area2[None, :] - inter)


def bbox_iou(box1: torch.Tensor, box2: torch.Tensor, x1y1x2y2: bool = True, GIoU: bool = False, DIoU: bool = False,
             CIoU: bool = False, eps: float = 1e-7) -> torch.Tensor:
    """Element-wise IoU / GIoU / DIoU / CIoU between two box sets, v6.1 calling convention.

    Args:
        box1: (4,) one box or (4, n) boxes given **transposed** (as the loss passes ``pbox.T``).
        box2: (n, 4) boxes.
        x1y1x2y2: boxes are corners; False means centre x, centre y, width, height.
        GIoU, DIoU, CIoU: return that variant instead of plain IoU (CIoU wins over DIoU wins over GIoU).
        eps: guards the divisions (added to heights and to the union, enclosing area and diagonal).

    Returns:
        (n,) tensor of the requested overlap measure, computed by :mod:`utils.iou` (whose formulas these are;
        SIoU, EIoU, alpha-IoU and WIoU are there too).
    """
    kind = "CIoU" if CIoU else "DIoU" if DIoU else "GIoU" if GIoU else "IoU"
    return _IOU[kind](box1.T if box1.ndim == 2 else box1, box2, xywh=not x1y1x2y2, eps=eps)


def wh_iou(wh1: torch.Tensor, wh2: torch.Tensor) -> torch.Tensor:
    """IoU of (n, 2) and (m, 2) width-height pairs as if sharing a corner → (n, m)."""
    wh1, wh2 = wh1[:, None], wh2[None]
    inter = torch.min(wh1, wh2).prod(2)
    return inter / (wh1.prod(2) + wh2.prod(2) - inter)


# ----------------------------------------------------------------------------------------------------------- AP
def _trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))


def compute_ap(recall: Sequence[float], precision: Sequence[float],
               method: str = "interp") -> tuple[float, np.ndarray, np.ndarray]:
    """Average precision of one PR curve.

    Sentinels recall 0 / precision 1 and recall 1 / precision 0 are added, precision is replaced by its
    envelope (reverse cumulative maximum), then integrated.

    Args:
        recall: recall values in prediction (descending confidence) order.
        precision: matching precision values.
        method: ``'interp'`` (v6.1 default: trapezoid over the envelope sampled at 101 recall points) or
            ``'continuous'`` (sum of Δrecall · precision where recall changes).

    Returns:
        (ap, envelope precision with sentinels, recall with sentinels).
    """
    mrec = np.concatenate(([0.0], np.asarray(recall, dtype=float), [1.0]))
    mpre = np.concatenate(([1.0], np.asarray(precision, dtype=float), [0.0]))
    mpre = np.flip(np.maximum.accumulate(np.flip(mpre)))
    if method == "interp":
        x = np.linspace(0, 1, 101)
        ap = _trapezoid(np.interp(x, mrec, mpre), x)
    else:
        i = np.where(mrec[1:] != mrec[:-1])[0]
        ap = float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))
    return ap, mpre, mrec


def ap_per_class(tp: np.ndarray, conf: np.ndarray, pred_cls: np.ndarray, target_cls: np.ndarray, plot: bool = False,
                 save_dir: str | Path = ".", names: Sequence[str] | dict = (), eps: float = 1e-16
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-class precision, recall, F1 and AP at each IoU threshold.

    Args:
        tp: (n, t) bool/0-1, prediction i is correct at IoU threshold j.
        conf: (n,) prediction confidences.
        pred_cls: (n,) predicted classes.
        target_cls: (m,) classes of all labels.
        plot: write ``PR_curve.png``, ``F1_curve.png``, ``P_curve.png``, ``R_curve.png`` into ``save_dir``.
        save_dir: output folder of the plots.
        names: class names, a list indexed by class id or a ``{id: name}`` dict.
        eps: guards divisions.

    Returns:
        ``tp, fp, p, r, f1, ap, classes``: tp/fp/p/r/f1 (nc,) at the operating point (argmax of the class-mean F1
        over the 1000 confidence samples, no smoothing — v6.1), ``ap`` (nc, t), ``classes`` (nc,) int32 =
        the unique label classes.
    """
    tp = np.asarray(tp, dtype=float)
    tp = tp[:, None] if tp.ndim == 1 else tp
    conf, pred_cls = np.asarray(conf, dtype=float), np.asarray(pred_cls)
    i = np.argsort(-conf, kind="stable")
    tp, conf, pred_cls = tp[i], conf[i], pred_cls[i]

    unique_classes, nt = np.unique(np.asarray(target_cls), return_counts=True)
    nc = unique_classes.shape[0]
    px, py, py_cls = np.linspace(0, 1, 1000), [], []  # confidence samples; PR curves at IoU .5 for plotting
    ap, p, r = np.zeros((nc, tp.shape[1])), np.zeros((nc, 1000)), np.zeros((nc, 1000))
    for ci, c in enumerate(unique_classes):
        i = pred_cls == c
        n_l, n_p = nt[ci], int(i.sum())
        if n_p == 0 or n_l == 0:
            continue
        fpc = (1 - tp[i]).cumsum(0)
        tpc = tp[i].cumsum(0)
        recall = tpc / (n_l + eps)
        precision = tpc / (tpc + fpc)
        r[ci] = np.interp(-px, -conf[i], recall[:, 0], left=0)  # -x: xp must increase
        p[ci] = np.interp(-px, -conf[i], precision[:, 0], left=1)
        for j in range(tp.shape[1]):
            ap[ci, j], mpre, mrec = compute_ap(recall[:, j], precision[:, j])
            if plot and j == 0:
                py.append(np.interp(px, mrec, mpre))
                py_cls.append(ci)

    f1 = 2 * p * r / (p + r + eps)
    if plot:
        name_map = names if isinstance(names, dict) else dict(enumerate(names))
        cls_names = [name_map.get(int(c), str(int(c))) for c in unique_classes] if len(name_map) else []
        save_dir = Path(save_dir)
        plot_pr_curve(px, py, ap[py_cls], save_dir / "PR_curve.png", [cls_names[k] for k in py_cls] if cls_names
                      else [], map50=float(ap[:, 0].mean()) if nc else 0.0)
        plot_mc_curve(px, f1, save_dir / "F1_curve.png", cls_names, ylabel="F1")
        plot_mc_curve(px, p, save_dir / "P_curve.png", cls_names, ylabel="Precision")
        plot_mc_curve(px, r, save_dir / "R_curve.png", cls_names, ylabel="Recall")

    i = int(f1.mean(0).argmax()) if nc else 0  # operating point: max mean F1 (v6.1: no smoothing)
    p, r, f1 = p[:, i], r[:, i], f1[:, i]
    tp = (r * nt).round()
    fp = (tp / (p + eps) - tp).round()
    return tp, fp, p, r, f1, ap, unique_classes.astype("int32")


# ----------------------------------------------------------------------------------------------------- matching
def _dedup(matches: np.ndarray, col: int) -> np.ndarray:
    """Rows of ``matches`` holding the first occurrence of each value in column ``col`` (ordered by that value)."""
    return matches[np.unique(matches[:, col], return_index=True)[1]]


def _by_iou_desc(matches: np.ndarray) -> np.ndarray:
    return matches[np.argsort(matches[:, 2], kind="stable")[::-1]]


def process_batch(detections: torch.Tensor, labels: torch.Tensor, iouv: torch.Tensor) -> torch.Tensor:
    """v6.1 val matching of one image's detections to its labels.

    Pairs with IoU >= iouv[0] and equal class are candidates; sorted by IoU descending, each detection keeps its
    best label; then each label keeps the first remaining pair in detection-index order (= NMS confidence order,
    so an earlier detection wins over a later one with higher IoU). Kept pairs are correct at ``IoU >= iouv[t]``.

    Args:
        detections: (n, 6) x1, y1, x2, y2, conf, cls.
        labels: (m, 5) cls, x1, y1, x2, y2.
        iouv: (t,) IoU thresholds, e.g. ``torch.linspace(0.5, 0.95, 10)``.

    Returns:
        (n, t) bool tensor on ``iouv.device``.
    """
    correct = torch.zeros(detections.shape[0], iouv.shape[0], dtype=torch.bool, device=iouv.device)
    iou = box_iou(labels[:, 1:], detections[:, :4])
    x = torch.where((iou >= iouv[0]) & (labels[:, 0:1] == detections[:, 5]))
    if x[0].shape[0]:
        matches = torch.cat((torch.stack(x, 1).to(iou.dtype), iou[x[0], x[1]][:, None]), 1).cpu().numpy()
        if x[0].shape[0] > 1:
            matches = _dedup(_by_iou_desc(matches), 1)  # one label per detection: the highest IoU
            matches = _dedup(matches, 0)  # one detection per label: the first in detection order
        m = torch.from_numpy(matches).to(iouv.device)
        correct[m[:, 1].long()] = m[:, 2:3] >= iouv
    return correct


class ConfusionMatrix:
    """Detection confusion matrix: rows = predicted class, columns = true class, index nc = background.

    Args:
        nc: number of classes.
        conf: detections with confidence <= conf are ignored.
        iou_thres: a detection and a label match when their IoU is strictly greater (class-agnostic).
    """

    def __init__(self, nc: int, conf: float = 0.25, iou_thres: float = 0.45):
        self.matrix = np.zeros((nc + 1, nc + 1))
        self.nc = nc
        self.conf = conf
        self.iou_thres = iou_thres

    def process_batch(self, detections: torch.Tensor, labels: torch.Tensor) -> None:
        """Add one image.

        Args:
            detections: (n, 6) x1, y1, x2, y2, conf, cls.
            labels: (m, 5) cls, x1, y1, x2, y2.
        """
        detections = detections[detections[:, 4] > self.conf]
        gt_classes = labels[:, 0].int().tolist()
        detection_classes = detections[:, 5].int().tolist()
        iou = box_iou(labels[:, 1:], detections[:, :4])
        x = torch.where(iou > self.iou_thres)
        if x[0].shape[0]:
            matches = torch.cat((torch.stack(x, 1).to(iou.dtype), iou[x[0], x[1]][:, None]), 1).cpu().numpy()
            if x[0].shape[0] > 1:
                matches = _dedup(_by_iou_desc(matches), 1)
                matches = _dedup(_by_iou_desc(matches), 0)
        else:
            matches = np.zeros((0, 3))
        n = matches.shape[0] > 0
        m0, m1 = matches[:, 0].astype(int), matches[:, 1].astype(int)
        for i, gc in enumerate(gt_classes):
            j = m0 == i
            if n and j.sum() == 1:
                self.matrix[detection_classes[int(m1[j][0])], gc] += 1  # correct or wrong class
            else:
                self.matrix[self.nc, gc] += 1  # background FN (missed label)
        if n:  # v6.1: unmatched detections count only when the image has at least one match
            for i, dc in enumerate(detection_classes):
                if not (m1 == i).any():
                    self.matrix[dc, self.nc] += 1  # background FP

    def plot(self, normalize: bool = True, save_dir: str | Path = "", names: Sequence[str] = ()) -> None:
        """Save ``confusion_matrix.png`` (column-normalised heatmap) into ``save_dir``; failures only warn."""
        try:
            plot_confusion_matrix(self.matrix, self.nc, Path(save_dir) / "confusion_matrix.png", normalize,
                                  list(names))
        except Exception as e:  # plotting must never stop a validation run
            LOGGER.warning(f"WARNING: ConfusionMatrix plot failure: {e}")

    def print(self) -> None:
        """Log the matrix, one space-separated row per predicted class."""
        for i in range(self.nc + 1):
            LOGGER.info(" ".join(map(str, self.matrix[i])))


# ------------------------------------------------------------------------------------------------ class weights
def labels_to_class_weights(labels: Sequence[np.ndarray], nc: int = 80) -> torch.Tensor:
    """Inverse-frequency class weights from per-image (n, 5) label arrays.

    Counts over all labels (classes never seen count 1), weights = 1/count normalised to sum 1; an empty tensor when
    ``labels[0] is None``.
    """
    if labels[0] is None:
        return torch.Tensor()
    classes = np.concatenate(labels, 0)[:, 0].astype(int)
    weights = np.bincount(classes, minlength=nc).astype(float)
    weights[weights == 0] = 1
    weights = 1 / weights
    weights /= weights.sum()
    return torch.from_numpy(weights)  # float64, as v6.1 stores it in model.class_weights


def labels_to_image_weights(labels: Sequence[np.ndarray], nc: int = 80,
                            class_weights: np.ndarray = np.ones(80)) -> np.ndarray:
    """Per-image weight = Σ over classes of class weight × number of that class's labels in the image → (n_img,)."""
    class_counts = np.array([np.bincount(x[:, 0].astype(int), minlength=nc) for x in labels])
    return (np.asarray(class_weights).reshape(1, nc) * class_counts).sum(1)
