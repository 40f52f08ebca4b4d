"""Non-maximum suppression of decoded YOLOv5 outputs."""

from __future__ import annotations

import time
from typing import Sequence

import torch
import torchvision

from utils.boxes import xywh2xyxy
from utils.general import LOGGER
from utils.nms_variants import NMS_METHODS, check_nms_method, suppress

__all__ = ["MAX_NMS", "MAX_WH", "MIN_WH", "NMS_METHODS", "TIME_LIMIT", "check_nms_method", "non_max_suppression"]

MIN_WH, MAX_WH = 2, 7680  # (pixels) box width/height limits; MAX_WH is also the class offset of batched NMS
MAX_NMS = 30000  # most boxes handed to the suppression (torchvision.ops.nms or a variant)
TIME_LIMIT = 10.0  # seconds per call


def non_max_suppression(prediction: torch.Tensor, conf_thres: float = 0.25, iou_thres: float = 0.45,
                        classes: Sequence[int] | None = None, agnostic: bool = False, multi_label: bool = False,
                        labels: Sequence[torch.Tensor] = (), max_det: int = 300,
                        time_limit: float | None = TIME_LIMIT, method: str = "nms",
                        sigma: float = 0.5) -> list[torch.Tensor]:
    """Per-image NMS on a (bs, N, 5 + nc) batch of decoded boxes (v6.1 behaviour with the default ``method``).

    Candidates need objectness > conf_thres; boxes with a side < 2 or > 7680 px get objectness 0; conf = obj · cls.
    The input tensor is not modified.

    Args:
        prediction: (bs, N, 5 + nc) rows ``x, y, w, h, obj, cls...`` (pixels, sigmoid scores).
        conf_thres: confidence threshold (exclusive), in [0, 1].
        iou_thres: IoU above which a lower-scored box of the same class is suppressed, in [0, 1].
        classes: keep only these class ids.
        agnostic: suppress across classes.
        multi_label: one row per (box, class) pair with conf > conf_thres (only when nc > 1); else best class only.
        labels: per image (n, 5) ``cls, x, y, w, h`` (pixels) appended as a-priori boxes (obj 1, one-hot class).
        max_det: most detections kept per image.
        time_limit: seconds per call after which the remaining images get no detections (v6.1: 10 s);
            None for no limit. val.py passes None, so that mAP never depends on how busy the machine is.
        method: ``"nms"`` (hard NMS, torchvision), ``"diou"`` (DIoU-NMS), ``"soft-linear"`` or ``"soft-gaussian"``
            (Soft-NMS: decayed scores, rows dropped once their score is no longer above ``conf_thres``); see
            ``utils.nms_variants``. All suppress per class unless ``agnostic``.
        sigma: σ of ``"soft-gaussian"`` (decay ``exp(−IoU²/σ)``, ``iou_thres`` unused); ignored otherwise.

    Returns:
        bs tensors (n, 6) ``x1, y1, x2, y2, conf, cls`` sorted by descending conf.
    """
    assert 0 <= conf_thres <= 1, f"Invalid Confidence threshold {conf_thres}, valid values are between 0.0 and 1.0"
    assert 0 <= iou_thres <= 1, f"Invalid IoU {iou_thres}, valid values are between 0.0 and 1.0"
    check_nms_method(method, sigma)
    bs = prediction.shape[0]
    nc = prediction.shape[2] - 5
    xc = prediction[..., 4] > conf_thres  # candidates, decided before the size filter (v6.1 order)
    multi_label &= nc > 1
    class_filter = torch.tensor(classes, device=prediction.device) if classes is not None else None

    t = time.time()
    output = [torch.zeros((0, 6), device=prediction.device)] * bs
    for xi, x in enumerate(prediction):
        x = x[xc[xi]]  # boolean indexing copies: the caller's tensor stays untouched
        x[((x[:, 2:4] < MIN_WH) | (x[:, 2:4] > MAX_WH)).any(1), 4] = 0  # such boxes cannot pass the final conf test

        if labels and len(labels[xi]):  # a-priori labels (val --save-hybrid)
            lb = labels[xi]
            v = torch.zeros((len(lb), nc + 5), device=x.device, dtype=x.dtype)
            v[:, :4] = lb[:, 1:5]
            v[:, 4] = 1.0
            v[torch.arange(len(lb), device=x.device), lb[:, 0].long() + 5] = 1.0
            x = torch.cat((x, v), 0)
        if not x.shape[0]:
            continue

        x[:, 5:] *= x[:, 4:5]  # conf = obj * cls
        box = xywh2xyxy(x[:, :4])
        if multi_label:
            i, j = (x[:, 5:] > conf_thres).nonzero(as_tuple=False).T
            x = torch.cat((box[i], x[i, j + 5, None], j[:, None].to(x.dtype)), 1)
        else:
            conf, j = x[:, 5:].max(1, keepdim=True)
            x = torch.cat((box, conf, j.to(x.dtype)), 1)[conf.view(-1) > conf_thres]

        if class_filter is not None:
            x = x[(x[:, 5:6] == class_filter).any(1)]
        n = x.shape[0]
        if not n:
            continue
        if n > MAX_NMS:
            x = x[x[:, 4].argsort(descending=True)[:MAX_NMS]]

        if method != "nms":
            output[xi] = suppress(x, method, conf_thres, iou_thres, sigma, agnostic, max_det)
        else:
            if agnostic:
                i = torchvision.ops.nms(x[:, :4], x[:, 4], iou_thres)  # indices by descending score
            else:  # per class: the same boxes as v6.1's class-offset trick, without its O(n²) over all classes
                i = torchvision.ops.batched_nms(x[:, :4], x[:, 4], x[:, 5], iou_thres)
            output[xi] = x[i[:max_det]]
        if time_limit is not None and (time.time() - t) > time_limit:
            LOGGER.warning(f"WARNING: NMS time limit {time_limit}s exceeded")
            break
    return output
