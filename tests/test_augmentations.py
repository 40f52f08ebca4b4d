"""utils/augmentations.py: letterbox numbers, HSV, random perspective, box filter, MixUp, copy-paste."""

from __future__ import annotations

import random

import numpy as np

from utils.augmentations import (Albumentations, augment_hsv, box_candidates, copy_paste, letterbox, mixup,
                                 random_perspective)


def _image(h: int = 480, w: int = 640) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (h, w, 3), dtype=np.uint8)


def test_letterbox_fixed_shape():
    im, ratio, (dw, dh) = letterbox(_image(), 320, auto=False)  # 640x480 -> r = 0.5 -> 320x240 + 40 px top/bottom
    assert im.shape == (320, 320, 3)
    assert ratio == (0.5, 0.5) and (dw, dh) == (0.0, 40.0)
    assert (im[:40] == 114).all() and (im[-40:] == 114).all() and not (im[40:280] == 114).all()


def test_letterbox_auto_minimum_rectangle():
    im, ratio, (dw, dh) = letterbox(_image(), 320, auto=True, stride=32)  # dh = 80 mod 32 = 16 -> 8 per side
    assert im.shape == (256, 320, 3) and ratio == (0.5, 0.5) and (dw, dh) == (0.0, 8.0)


def test_letterbox_scaleup_scalefill_and_odd_padding():
    im, ratio, pad = letterbox(_image(100, 200), (320, 320), auto=False, scaleup=False)  # no enlarging
    assert ratio == (1.0, 1.0) and im.shape == (320, 320, 3) and pad == (60.0, 110.0)
    im, ratio, pad = letterbox(_image(100, 200), (320, 640), auto=False, scaleFill=True)
    assert im.shape == (320, 640, 3) and ratio == (3.2, 3.2) and pad == (0.0, 0.0)
    im, ratio, pad = letterbox(_image(480, 640), (321, 320), auto=False)  # 81 px: 40 top, 41 bottom
    assert im.shape == (321, 320, 3) and pad == (0.0, 40.5)
    assert (im[:40] == 114).all() and (im[-41:] == 114).all()


def test_augment_hsv_in_place_and_noop():
    im = _image(64, 64)
    before = im.copy()
    augment_hsv(im, 0, 0, 0)
    assert (im == before).all()
    np.random.seed(0)
    augment_hsv(im, 0.015, 0.7, 0.4)
    assert im.dtype == np.uint8 and im.shape == before.shape and not (im == before).all()


def test_random_perspective_identity_keeps_image_and_boxes():
    im = _image(64, 96)
    targets = np.array([[1, 10, 12, 40, 50], [0, 50, 5, 90, 30]], dtype=np.float64)
    out, t = random_perspective(im, targets.copy(), degrees=0, translate=0, scale=0, shear=0, perspective=0)
    assert (out == im).all()
    np.testing.assert_allclose(t, targets)


def test_random_perspective_border_and_bounds():
    random.seed(1)
    im = _image(128, 128)
    targets = np.array([[0, 10, 10, 60, 70], [2, 70, 80, 120, 125]], dtype=np.float64)
    out, t = random_perspective(im, targets, degrees=10, translate=0.1, scale=0.5, shear=2, border=(-32, -32))
    assert out.shape == (64, 64, 3)
    assert (t[:, 1:] >= 0).all() and (t[:, 1:] <= 64).all()


def test_random_perspective_with_segments():
    random.seed(0)
    im = _image(100, 100)
    seg = np.array([[20, 20], [60, 20], [60, 60], [20, 60]], dtype=np.float64)
    targets = np.array([[3, 20, 20, 60, 60]], dtype=np.float64)
    out, t = random_perspective(im, targets, [seg], degrees=0, translate=0, scale=0, shear=0)
    assert len(t) == 1 and np.allclose(t[0, 1:], [20, 20, 60, 60])


def test_box_candidates_rules():
    old = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 100, 100], [0, 0, 300, 3]], dtype=float).T
    new = np.array([[0, 0, 10, 10], [0, 0, 2, 10], [0, 0, 20, 20], [0, 0, 300, 3]], dtype=float).T
    assert box_candidates(old, new).tolist() == [True, False, False, False]  # w <= 2 px, area 4 %, ratio 100


def test_mixup_shapes():
    np.random.seed(0)
    a, b = np.zeros((8, 8, 3), np.uint8), np.full((8, 8, 3), 200, np.uint8)
    im, labels = mixup(a, np.zeros((2, 5)), b, np.ones((3, 5)))
    assert im.dtype == np.uint8 and 80 < im.mean() < 120 and labels.shape == (5, 5)


def test_copy_paste_adds_mirrored_object():
    random.seed(0)
    im = np.zeros((100, 100, 3), np.uint8)
    im[20:40, 10:30] = 255
    labels = np.array([[2, 10, 20, 30, 40]], dtype=float)
    seg = [np.array([[10, 20], [30, 20], [30, 40], [10, 40]], dtype=float)]
    im, labels, seg = copy_paste(im, labels, seg, p=1.0)
    assert labels.shape == (2, 5) and labels[1].tolist() == [2, 70, 20, 90, 40] and len(seg) == 2
    assert im[30, 80].tolist() == [255, 255, 255]


def test_albumentations_is_noop_without_package():
    alb = Albumentations()
    im, labels = _image(32, 32), np.array([[0, 0.5, 0.5, 0.2, 0.2]], dtype=np.float32)
    if alb.transform is None:  # albumentations not installed (the default here)
        out, lb = alb(im, labels)
        assert out is im and lb is labels
