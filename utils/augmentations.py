"""Image augmentation for training: letterbox, HSV jitter, random perspective, MixUp,
copy-paste and the optional Albumentations pipeline; v6.1's unused extras hist_equalize, replicate and cutout.

All functions work on HWC BGR uint8 numpy images. Labels are ``(n, 5)`` arrays ``[cls, x1, y1, x2, y2]`` in
pixels unless said otherwise; segments are lists of ``(k, 2)`` pixel point arrays, one per label.
"""

from __future__ import annotations

import math
import random
from typing import Any

import cv2
import numpy as np

from utils.boxes import bbox_ioa, resample_segments, segment2box
from utils.general import LOGGER, colorstr

PAD_COLOR = (114, 114, 114)  # grey used for letterbox borders, mosaic canvas and warp borders


class Albumentations:
    """Optional extra pixel augmentations from the ``albumentations`` package.

    A no-op when ``albumentations>=1.0.3`` is not importable (it is optional and never installed automatically).
    """

    def __init__(self) -> None:
        self.transform = None
        try:
            import albumentations as A  # optional dependency
        except ImportError:
            return
        try:
            version = tuple(int(x) for x in A.__version__.split(".")[:3])
            if version < (1, 0, 3):
                LOGGER.info(colorstr("albumentations: ") + f"version {A.__version__} < 1.0.3, not used")
                return
            self.transform = A.Compose([
                A.Blur(p=0.01),
                A.MedianBlur(p=0.01),
                A.ToGray(p=0.01),
                A.CLAHE(p=0.01),
                A.RandomBrightnessContrast(p=0.0),
                A.RandomGamma(p=0.0),
                A.ImageCompression(quality_lower=75, p=0.0)],
                bbox_params=A.BboxParams(format="yolo", label_fields=["class_labels"]))
            LOGGER.info(colorstr("albumentations: ") + ", ".join(f"{x}" for x in self.transform.transforms if x.p))
        except Exception as e:  # an incompatible albumentations release must not stop training
            self.transform = None
            LOGGER.info(colorstr("albumentations: ") + f"not used: {e}")

    def __call__(self, im: np.ndarray, labels: np.ndarray, p: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """Apply the pipeline with probability ``p``; ``labels`` (n, 5) are ``[cls, x, y, w, h]`` normalised."""
        if self.transform is not None and random.random() < p:
            new = self.transform(image=im, bboxes=labels[:, 1:], class_labels=labels[:, 0])
            im = new["image"]
            labels = np.array([[c, *b] for c, b in zip(new["class_labels"], new["bboxes"])],
                              dtype=np.float32).reshape(-1, 5)
        return im, labels


def letterbox(im: np.ndarray, new_shape: int | tuple[int, int] = (640, 640), color: tuple = PAD_COLOR,
              auto: bool = True, scaleFill: bool = False, scaleup: bool = True,
              stride: int = 32) -> tuple[np.ndarray, tuple[float, float], tuple[float, float]]:
    """Resize keeping the aspect ratio, then pad to ``new_shape`` (h, w).

    No side is resized to less than 1 pixel, so extreme aspect ratios (e.g. 10x3000 to 64) do not fail.

    Args:
        im: (h, w, 3) image.
        new_shape: target (h, w), or one int for a square.
        color: border colour.
        auto: pad only to the next multiple of ``stride`` (minimum rectangle) instead of the full shape.
        scaleFill: stretch to ``new_shape`` without padding.
        scaleup: allow enlarging (False only shrinks).
        stride: stride for ``auto``.

    Returns:
        ``(image, (ratio_w, ratio_h), (dw, dh))`` with ``dw, dh`` the padding per side (floats).
    """
    shape = im.shape[:2]  # (h, w)
    if isinstance(new_shape, int):
        new_shape = (new_shape, new_shape)
    r = min(new_shape[0] / shape[0], new_shape[1] / shape[1])
    if not scaleup:
        r = min(r, 1.0)
    ratio = (r, r)
    new_unpad = (max(1, int(round(shape[1] * r))), max(1, int(round(shape[0] * r))))  # (w, h), no side 0 px
    dw, dh = new_shape[1] - new_unpad[0], new_shape[0] - new_unpad[1]
    if auto:
        dw, dh = np.mod(dw, stride), np.mod(dh, stride)
    elif scaleFill:
        dw, dh = 0.0, 0.0
        new_unpad = (new_shape[1], new_shape[0])
        ratio = (new_shape[1] / shape[1], new_shape[0] / shape[0])
    dw, dh = dw / 2, dh / 2  # split between the two sides
    if (shape[1], shape[0]) != new_unpad:
        im = cv2.resize(im, new_unpad, interpolation=cv2.INTER_LINEAR)
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    im = cv2.copyMakeBorder(im, top, bottom, left, right, cv2.BORDER_CONSTANT, value=color)
    return im, ratio, (float(dw), float(dh))


def augment_hsv(im: np.ndarray, hgain: float = 0.5, sgain: float = 0.5, vgain: float = 0.5) -> None:
    """Random hue/saturation/value gains applied in place through lookup tables."""
    if not (hgain or sgain or vgain):
        return
    r = np.random.uniform(-1, 1, 3) * [hgain, sgain, vgain] + 1  # gains
    hue, sat, val = cv2.split(cv2.cvtColor(im, cv2.COLOR_BGR2HSV))
    x = np.arange(0, 256, dtype=r.dtype)
    lut_hue = ((x * r[0]) % 180).astype(np.uint8)
    lut_sat = np.clip(x * r[1], 0, 255).astype(np.uint8)
    lut_val = np.clip(x * r[2], 0, 255).astype(np.uint8)
    im_hsv = cv2.merge((cv2.LUT(hue, lut_hue), cv2.LUT(sat, lut_sat), cv2.LUT(val, lut_val)))
    cv2.cvtColor(im_hsv, cv2.COLOR_HSV2BGR, dst=im)


def box_candidates(box1: np.ndarray, box2: np.ndarray, wh_thr: float = 2, ar_thr: float = 100,
                   area_thr: float = 0.1, eps: float = 1e-16) -> np.ndarray:
    """Which boxes survive an augmentation.

    Args:
        box1: (4, n) xyxy boxes before augmentation (already multiplied by the scale gain).
        box2: (4, n) xyxy boxes after augmentation.

    Returns:
        (n,) bool: wider and taller than ``wh_thr`` px, area ratio > ``area_thr``, aspect ratio < ``ar_thr``.
    """
    w1, h1 = box1[2] - box1[0], box1[3] - box1[1]
    w2, h2 = box2[2] - box2[0], box2[3] - box2[1]
    ar = np.maximum(w2 / (h2 + eps), h2 / (w2 + eps))
    return (w2 > wh_thr) & (h2 > wh_thr) & (w2 * h2 / (w1 * h1 + eps) > area_thr) & (ar < ar_thr)


def _warp_points(xy: np.ndarray, M: np.ndarray, perspective: bool) -> np.ndarray:
    """(k, 2) points through the 3x3 matrix ``M`` -> (k, 2)."""
    pts = np.ones((len(xy), 3))
    pts[:, :2] = xy
    pts = pts @ M.T
    return pts[:, :2] / pts[:, 2:3] if perspective else pts[:, :2]


def random_perspective(im: np.ndarray, targets: np.ndarray | tuple = (), segments: list | tuple = (),
                       degrees: float = 10, translate: float = 0.1, scale: float = 0.1, shear: float = 10,
                       perspective: float = 0.0, border: tuple[int, int] = (0, 0)) -> tuple[np.ndarray, np.ndarray]:
    """Random rotation, scale, shear, translation and perspective of an image and its boxes.

    Args:
        im: (h, w, 3) image.
        targets: (n, 5) ``[cls, x1, y1, x2, y2]`` pixel labels.
        segments: n (k, 2) pixel polygons (used for tighter boxes when given).
        border: (y, x) border added on each side; a negative border crops (mosaic: ``-img_size // 2``).

    Returns:
        ``(image (h + 2·border[0], w + 2·border[1], 3), surviving targets (m, 5))``.
    """
    height = im.shape[0] + border[0] * 2
    width = im.shape[1] + border[1] * 2

    C = np.eye(3)  # centre to origin
    C[0, 2] = -im.shape[1] / 2
    C[1, 2] = -im.shape[0] / 2
    P = np.eye(3)  # perspective
    P[2, 0] = random.uniform(-perspective, perspective)
    P[2, 1] = random.uniform(-perspective, perspective)
    R = np.eye(3)  # rotation and scale
    a = random.uniform(-degrees, degrees)
    s = random.uniform(1 - scale, 1 + scale)
    R[:2] = cv2.getRotationMatrix2D(center=(0, 0), angle=a, scale=s)
    S = np.eye(3)  # shear
    S[0, 1] = math.tan(random.uniform(-shear, shear) * math.pi / 180)
    S[1, 0] = math.tan(random.uniform(-shear, shear) * math.pi / 180)
    T = np.eye(3)  # translation
    T[0, 2] = random.uniform(0.5 - translate, 0.5 + translate) * width
    T[1, 2] = random.uniform(0.5 - translate, 0.5 + translate) * height
    M = T @ S @ R @ P @ C  # applied right to left

    if border[0] != 0 or border[1] != 0 or (M != np.eye(3)).any():
        if perspective:
            im = cv2.warpPerspective(im, M, dsize=(width, height), borderValue=PAD_COLOR)
        else:
            im = cv2.warpAffine(im, M[:2], dsize=(width, height), borderValue=PAD_COLOR)

    targets = np.asarray(targets, dtype=np.float64).reshape(-1, 5) if len(targets) else np.zeros((0, 5))
    n = len(targets)
    if n:
        use_segments = len(segments) == n and any(np.asarray(x).any() for x in segments)
        new = np.zeros((n, 4))
        if use_segments:
            for i, seg in enumerate(resample_segments([np.asarray(x, dtype=np.float64) for x in segments])):
                new[i] = segment2box(_warp_points(seg, M, bool(perspective)), width, height)
        else:
            corners = targets[:, [1, 2, 3, 4, 1, 4, 3, 2]].reshape(n * 4, 2)  # x1y1, x2y2, x1y2, x2y1
            xy = _warp_points(corners, M, bool(perspective)).reshape(n, 8)
            x, y = xy[:, [0, 2, 4, 6]], xy[:, [1, 3, 5, 7]]
            new = np.stack((x.min(1), y.min(1), x.max(1), y.max(1)), axis=1)
            new[:, [0, 2]] = new[:, [0, 2]].clip(0, width)
            new[:, [1, 3]] = new[:, [1, 3]].clip(0, height)
        keep = box_candidates(box1=targets[:, 1:5].T * s, box2=new.T, area_thr=0.01 if use_segments else 0.10)
        targets = targets[keep]
        targets[:, 1:5] = new[keep]
    return im, targets


def mixup(im: np.ndarray, labels: np.ndarray, im2: np.ndarray,
          labels2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MixUp of two same-size images with a Beta(32, 32) ratio; labels are concatenated."""
    r = np.random.beta(32.0, 32.0)
    im = (im * r + im2 * (1 - r)).astype(np.uint8)
    return im, np.concatenate((labels, labels2), 0)


def copy_paste(im: np.ndarray, labels: np.ndarray, segments: list,
               p: float = 0.5) -> tuple[np.ndarray, np.ndarray, list]:
    """Segment copy-paste: paste horizontally mirrored copies of ``round(p·n)`` random segments.

    A copy is only added where it overlaps every existing box by < 30 % of that box's area. Needs segments;
    a no-op otherwise. ``im`` is modified in place.
    """
    n = len(segments)
    if not (p and n):
        return im, labels, segments
    h, w = im.shape[:2]
    mask = np.zeros(im.shape, np.uint8)
    for j in random.sample(range(n), k=round(p * n)):
        cls, x1, y1, x2, y2 = labels[j]
        box = np.array([w - x2, y1, w - x1, y2])  # mirrored box
        if (bbox_ioa(box, labels[:, 1:5]) < 0.30).all():
            labels = np.concatenate((labels, [[cls, *box]]), 0)
            seg = segments[j]
            segments.append(np.concatenate((w - seg[:, 0:1], seg[:, 1:2]), 1))
            cv2.drawContours(mask, [seg.astype(np.int32)], -1, (255, 255, 255), cv2.FILLED)
    pasted = cv2.flip(cv2.bitwise_and(src1=im, src2=mask), 1)  # the selected objects, mirrored
    sel = pasted > 0
    im[sel] = pasted[sel]
    return im, labels, segments


def hist_equalize(im: np.ndarray, clahe: bool = True, bgr: bool = False) -> np.ndarray:
    """Equalize the luma (Y of YUV) of an RGB (or, with ``bgr``, BGR) uint8 image; colour is kept.

    ``clahe`` uses contrast-limited adaptive equalization (clip limit 2, 8x8 tiles), else global equalization.
    Returns a new image in the same channel order.
    """
    yuv = cv2.cvtColor(im, cv2.COLOR_BGR2YUV if bgr else cv2.COLOR_RGB2YUV)
    if clahe:
        yuv[:, :, 0] = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(yuv[:, :, 0])
    else:
        yuv[:, :, 0] = cv2.equalizeHist(yuv[:, :, 0])
    return cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR if bgr else cv2.COLOR_YUV2RGB)


def replicate(im: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Copy the smaller half of the boxes (by mean side, ``round(n / 2)`` of them) to random places in the image.

    Each copy keeps its size and class and is appended to ``labels`` (pixel ``[cls, x1, y1, x2, y2]``); ``im`` is
    modified in place. Returns ``(im, labels)``.
    """
    h, w = im.shape[:2]
    boxes = labels[:, 1:].astype(int)
    x1, y1, x2, y2 = boxes.T
    s = ((x2 - x1) + (y2 - y1)) / 2  # mean side length (pixels)
    for i in s.argsort()[:round(s.size * 0.5)]:  # smallest first
        x1b, y1b, x2b, y2b = boxes[i]
        bh, bw = y2b - y1b, x2b - x1b
        yc, xc = int(random.uniform(0, h - bh)), int(random.uniform(0, w - bw))  # new top-left corner
        x1a, y1a, x2a, y2a = xc, yc, xc + bw, yc + bh
        im[y1a:y2a, x1a:x2a] = im[y1b:y2b, x1b:x2b]
        labels = np.append(labels, [[labels[i, 0], x1a, y1a, x2a, y2a]], axis=0)
    return im, labels


CUTOUT_SCALES = [0.5] * 1 + [0.25] * 2 + [0.125] * 4 + [0.0625] * 8 + [0.03125] * 16  # mask size / image size


def cutout(im: np.ndarray, labels: np.ndarray, p: float = 0.5) -> np.ndarray:
    """Cutout: with probability ``p``, paint 31 random rectangles of random grey-ish colours into ``im`` (in place).

    Mask sizes are up to 1/2 (once), 1/4 (twice), 1/8 (4x), 1/16 (8x) and 1/32 (16x) of the image side. After each
    mask larger than 1/32, labels (pixel ``[cls, x1, y1, x2, y2]``) covered by it for 60 % or more of their area
    are dropped. Returns the remaining labels (the image is changed in place).
    """
    if random.random() < p:
        h, w = im.shape[:2]
        for s in CUTOUT_SCALES:
            mask_h = random.randint(1, max(int(h * s), 1))
            mask_w = random.randint(1, max(int(w * s), 1))
            xmin = max(0, random.randint(0, w) - mask_w // 2)
            ymin = max(0, random.randint(0, h) - mask_h // 2)
            xmax, ymax = min(w, xmin + mask_w), min(h, ymin + mask_h)
            im[ymin:ymax, xmin:xmax] = [random.randint(64, 191) for _ in range(3)]
            if len(labels) and s > 0.03:
                box = np.array([xmin, ymin, xmax, ymax], dtype=np.float32)
                labels = labels[bbox_ioa(box, labels[:, 1:5]) < 0.60]
    return labels


def hyp_value(hyp: dict[str, Any], key: str) -> float:
    """``hyp[key]`` with an error that names the missing hyperparameter."""
    try:
        return hyp[key]
    except KeyError:
        raise KeyError(f"hyperparameter '{key}' missing from the hyp dict (see data/hyps/*.yaml)") from None
