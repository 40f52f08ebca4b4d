"""v6.1's optional second-stage classifier: keep only the detections a classifier agrees with."""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import torch
import torch.nn as nn

from utils.boxes import scale_coords, xywh2xyxy, xyxy2xywh

CLASSIFIER_SIZE = 224  # crops are resized to 224x224 for the classifier


def _crops(d: torch.Tensor, im0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RGB CHW float crops in [0, 1] (n, 3, 224, 224) of the xyxy boxes ``d[:, :4]`` from the BGR image ``im0``,
    and a bool mask of the boxes whose crop is not empty."""
    crops, ok = [], []
    for a in d:
        x1, y1, x2, y2 = (int(v) for v in a[:4])
        crop = im0[y1:y2, x1:x2]
        ok.append(crop.size > 0)
        im = cv2.resize(crop, (CLASSIFIER_SIZE, CLASSIFIER_SIZE)) if crop.size else \
            np.zeros((CLASSIFIER_SIZE, CLASSIFIER_SIZE, 3), np.uint8)
        crops.append(im[:, :, ::-1].transpose(2, 0, 1))  # BGR HWC -> RGB CHW
    return np.ascontiguousarray(np.stack(crops), dtype=np.float32) / 255.0, np.array(ok)


def apply_classifier(x: list[torch.Tensor], model: nn.Module, img: torch.Tensor,
                     im0: np.ndarray | Sequence[np.ndarray]) -> list[torch.Tensor]:
    """Filter detections with a second-stage classifier: keep a box only when the classifier predicts its class.

    Each box is made square (its longer side), enlarged to ``1.3 * side + 30`` px, mapped from the letterboxed
    ``img`` back to the original image, cropped, resized to 224x224 and classified; the detection is kept when
    ``argmax`` of the classifier output equals its class. A box whose crop lies entirely outside the image is
    dropped.

    Args:
        x: per-image detections (n, 6) ``[x1, y1, x2, y2, conf, cls]`` in ``img`` pixels (NMS output).
        model: classifier taking (n, 3, 224, 224) RGB in [0, 1] and returning (n, classes) scores.
        img: the letterboxed batch (b, 3, h, w) the detections refer to.
        im0: the original BGR image(s), one per entry of ``x`` (a single HWC array for a batch of one).

    Returns:
        ``x``, with each entry replaced by its kept rows.
    """
    ims = [im0] if isinstance(im0, np.ndarray) and im0.ndim == 3 else im0
    p = next(model.parameters(), None)
    dtype = p.dtype if p is not None and p.is_floating_point() else torch.float32
    for i, d in enumerate(x):
        if d is None or not len(d):
            continue
        d = d.clone()
        b = xyxy2xywh(d[:, :4])  # (n, 4) xywh
        b[:, 2:] = b[:, 2:].max(1, keepdim=True)[0] * 1.3 + 30  # square, padded
        d[:, :4] = xywh2xyxy(b).long().to(d.dtype)
        scale_coords(img.shape[2:], d[:, :4], ims[i].shape)
        crops, ok = _crops(d, ims[i])
        pred_cls2 = model(torch.from_numpy(crops).to(d.device, dtype)).argmax(1)
        keep = (d[:, 5].long() == pred_cls2) & torch.from_numpy(ok).to(d.device)
        x[i] = x[i][keep]
    return x
