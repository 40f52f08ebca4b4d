"""Box and segment coordinate conversions. Work on numpy arrays and torch tensors alike."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

Array = np.ndarray | torch.Tensor


def _clone(x: Array) -> Array:
    return x.clone() if isinstance(x, torch.Tensor) else np.copy(x)


def xyxy2xywh(x: Array) -> Array:
    """(n, 4) corners x1, y1, x2, y2 -> centre x, centre y, width, height."""
    y = _clone(x)
    y[:, 0] = (x[:, 0] + x[:, 2]) / 2
    y[:, 1] = (x[:, 1] + x[:, 3]) / 2
    y[:, 2] = x[:, 2] - x[:, 0]
    y[:, 3] = x[:, 3] - x[:, 1]
    return y


def xywh2xyxy(x: Array) -> Array:
    """(n, 4) centre x, centre y, width, height -> corners x1, y1, x2, y2."""
    y = _clone(x)
    y[:, 0] = x[:, 0] - x[:, 2] / 2
    y[:, 1] = x[:, 1] - x[:, 3] / 2
    y[:, 2] = x[:, 0] + x[:, 2] / 2
    y[:, 3] = x[:, 1] + x[:, 3] / 2
    return y


def xywhn2xyxy(x: Array, w: float = 640, h: float = 640, padw: float = 0, padh: float = 0) -> Array:
    """Normalised (n, 4) xywh -> pixel xyxy in an image of size (w, h), shifted by the padding."""
    y = _clone(x)
    y[:, 0] = w * (x[:, 0] - x[:, 2] / 2) + padw
    y[:, 1] = h * (x[:, 1] - x[:, 3] / 2) + padh
    y[:, 2] = w * (x[:, 0] + x[:, 2] / 2) + padw
    y[:, 3] = h * (x[:, 1] + x[:, 3] / 2) + padh
    return y


def xyxy2xywhn(x: Array, w: float = 640, h: float = 640, clip: bool = False, eps: float = 0.0) -> Array:
    """Pixel (n, 4) xyxy -> normalised xywh; ``clip`` first clamps to ``(h - eps, w - eps)`` in place."""
    if clip:
        clip_coords(x, (h - eps, w - eps))
    y = _clone(x)
    y[:, 0] = ((x[:, 0] + x[:, 2]) / 2) / w
    y[:, 1] = ((x[:, 1] + x[:, 3]) / 2) / h
    y[:, 2] = (x[:, 2] - x[:, 0]) / w
    y[:, 3] = (x[:, 3] - x[:, 1]) / h
    return y


def xyn2xy(x: Array, w: float = 640, h: float = 640, padw: float = 0, padh: float = 0) -> Array:
    """Normalised (n, 2) segment points -> pixels."""
    y = _clone(x)
    y[:, 0] = w * x[:, 0] + padw
    y[:, 1] = h * x[:, 1] + padh
    return y


def clip_coords(boxes: Array, shape: tuple) -> None:
    """Clamp (n, 4) xyxy boxes in place to an image of ``shape = (h, w)``."""
    if isinstance(boxes, torch.Tensor):
        boxes[:, 0].clamp_(0, shape[1])
        boxes[:, 1].clamp_(0, shape[0])
        boxes[:, 2].clamp_(0, shape[1])
        boxes[:, 3].clamp_(0, shape[0])
    else:
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, shape[1])
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, shape[0])


@dataclass(frozen=True)
class LetterboxGeometry:
    """Where the original image lies inside a letterboxed image (see :func:`letterbox_geometry`).

    Attributes:
        gain: original pixels -> letterboxed pixels.
        pad: ``(padw, padh)``, the float offset of the original image's origin in the letterboxed image, as
            ``scale_coords`` subtracts it.
        inner: ``(top, left, h, w)``, the integer rows / columns that the resized image fills, rounded as
            ``letterbox`` rounds them (its size ``round(h0 · gain)``, at least 1 pixel, centred).
    """

    gain: float
    pad: tuple[float, float]
    inner: tuple[int, int, int, int]


def letterbox_geometry(img1_shape: Sequence[int], img0_shape: Sequence[int],
                       ratio_pad: tuple | None = None) -> LetterboxGeometry:
    """Gain and padding of an image of ``img0_shape`` (h0, w0[, 3]) letterboxed into ``img1_shape`` (h, w).

    Args:
        img1_shape: the letterboxed (network input) shape (h, w).
        img0_shape: the original image's shape (h0, w0, ...).
        ratio_pad: ``((gain, gain), (padw, padh))`` as the dataset stores it; overrides the computed gain and pad.
    """
    h, w = img1_shape[0], img1_shape[1]
    h0, w0 = img0_shape[0], img0_shape[1]
    if ratio_pad is None:
        gain = min(h / h0, w / w0)
        pad = (w - w0 * gain) / 2, (h - h0 * gain) / 2
    else:
        gain, pad = ratio_pad[0][0], ratio_pad[1]
    uw, uh = max(int(round(w0 * gain)), 1), max(int(round(h0 * gain)), 1)  # resized image inside the padding
    top, left = int(round((h - uh) / 2 - 0.1)), int(round((w - uw) / 2 - 0.1))  # as letterbox() rounds
    return LetterboxGeometry(gain, (pad[0], pad[1]), (top, left, uh, uw))


def scale_coords(img1_shape: tuple, coords: Array, img0_shape: tuple, ratio_pad: tuple | None = None) -> Array:
    """Map xyxy boxes from a letterboxed image of ``img1_shape`` (h, w) back to the original ``img0_shape``.

    ``ratio_pad = ((gain, gain), (padw, padh))`` as stored by the dataset overrides the computed ones
    (:func:`letterbox_geometry`). In place.
    """
    g = letterbox_geometry(img1_shape, img0_shape, ratio_pad)
    coords[:, [0, 2]] -= g.pad[0]
    coords[:, [1, 3]] -= g.pad[1]
    coords[:, :4] /= g.gain
    clip_coords(coords, img0_shape)
    return coords


def segment2box(segment: np.ndarray, width: int = 640, height: int = 640) -> np.ndarray:
    """Box (x1, y1, x2, y2) of the points of one (n, 2) segment that lie inside the image (zeros if none)."""
    x, y = segment.T
    inside = (x >= 0) & (y >= 0) & (x <= width) & (y <= height)
    x, y = x[inside], y[inside]
    return np.array([x.min(), y.min(), x.max(), y.max()]) if x.size else np.zeros(4)


def segments2boxes(segments: list[np.ndarray]) -> np.ndarray:
    """(n, 4) xywh boxes of a list of (k, 2) segments (min/max of the points)."""
    boxes = [[s[:, 0].min(), s[:, 1].min(), s[:, 0].max(), s[:, 1].max()] for s in segments]
    return xyxy2xywh(np.array(boxes))


def resample_segments(segments: list[np.ndarray], n: int = 1000) -> list[np.ndarray]:
    """Resample each closed (k, 2) segment to ``n`` points by linear interpolation along its outline."""
    out = []
    for s in segments:
        s = np.concatenate((s, s[0:1, :]), axis=0)  # close the polygon
        x = np.linspace(0, len(s) - 1, n)
        xp = np.arange(len(s))
        out.append(np.concatenate([np.interp(x, xp, s[:, i]) for i in range(2)]).reshape(2, -1).T)
    return out


def bbox_ioa(box1: np.ndarray, box2: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """Intersection of one xyxy box with each of ``box2`` (n, 4), divided by the area of the ``box2`` box → (n,)."""
    b1_x1, b1_y1, b1_x2, b1_y2 = box1
    b2_x1, b2_y1, b2_x2, b2_y2 = box2.T
    inter = (np.minimum(b1_x2, b2_x2) - np.maximum(b1_x1, b2_x1)).clip(0) * \
            (np.minimum(b1_y2, b2_y2) - np.maximum(b1_y1, b2_y1)).clip(0)
    return inter / ((b2_x2 - b2_x1) * (b2_y2 - b2_y1) + eps)
