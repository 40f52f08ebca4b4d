"""AutoAnchor: BPR check, k-means + evolution, anchors written back in grid units."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from models.yolo import Model
from tests.conftest import ROOT
from utils.autoanchor import check_anchors, kmean_anchors

ANCHORS_PX = np.array([[10, 13], [16, 30], [33, 23], [30, 61], [62, 45], [59, 119], [116, 90], [156, 198], [373, 326]],
                      dtype=float)


class FakeDataset:
    """What AutoAnchor reads from LoadImagesAndLabels: ``shapes`` (N, 2) w, h and ``labels`` [(n, 5) cls xywh]."""

    def __init__(self, wh_px: np.ndarray, per_image: int = 10, shape: tuple[int, int] = (640, 480)):
        self.labels, shapes = [], []
        scale = 640 / max(shape)
        for i in range(0, len(wh_px), per_image):
            wh = wh_px[i:i + per_image] / scale / np.array(shape)  # normalised to the image
            lb = np.zeros((len(wh), 5))
            lb[:, 1:3] = 0.5
            lb[:, 3:5] = wh
            self.labels.append(lb)
            shapes.append(shape)
        self.shapes = np.array(shapes, dtype=float)


def bpr(anchors_px: np.ndarray, wh: np.ndarray, thr: float = 4.0) -> float:
    r = wh[:, None] / anchors_px[None]
    x = np.minimum(r, 1 / r).min(2)
    return float((x.max(1) > 1 / thr).mean())


def seed(s: int = 0) -> None:
    random.seed(s)
    np.random.seed(s)


@pytest.fixture(scope="module")
def built_model() -> Model:
    return Model(ROOT / "models" / "yolov5n.yaml", nc=3)


@pytest.fixture
def model(built_model):
    """The module's yolov5n with its original anchors restored after the test."""
    anchors = built_model.model[-1].anchors.clone()
    yield built_model
    built_model.model[-1].anchors[:] = anchors


def elongated(n: int = 120) -> np.ndarray:
    """Boxes about 20:1 / 1:35 that no default anchor covers within a factor 4 (even after ×0.9…1.1 jitter)."""
    rng = np.random.default_rng(1)
    a = np.stack((rng.uniform(380, 420, n // 2), rng.uniform(18, 21, n // 2)), 1)
    b = np.stack((rng.uniform(15, 17, n // 2), rng.uniform(540, 580, n // 2)), 1)
    return np.concatenate((a, b))


def test_good_fit_keeps_anchors(model, yolo_log):
    before = model.model[-1].anchors.clone()
    seed()
    check_anchors(FakeDataset(np.repeat(ANCHORS_PX, 10, 0)), model, thr=4.0, imgsz=640)
    assert torch.equal(model.model[-1].anchors, before)
    line = next(x for x in yolo_log if "Best Possible Recall" in x)
    assert "1.000 Best Possible Recall (BPR)" in line and "Current anchors are a good fit to dataset" in line


def test_poor_fit_evolves_anchors_in_grid_units(model, yolo_log):
    m = model.model[-1]
    wh = np.concatenate((ANCHORS_PX, elongated()))
    ds = FakeDataset(wh)
    old = bpr(ANCHORS_PX, wh)
    assert old < 0.1

    seed()
    check_anchors(ds, model, thr=4.0, imgsz=640)
    assert any("Anchors are a poor fit to dataset" in x for x in yolo_log)
    assert any("New anchors saved to model" in x for x in yolo_log)
    new_px = (m.anchors * m.stride.view(-1, 1, 1)).view(-1, 2).numpy()
    assert bpr(new_px, wh) > old and bpr(new_px, wh) > 0.9

    # the same RNG stream replayed: check_anchors draws the per-image jitter, then runs kmean_anchors(gen=1000)
    seed()
    np.random.uniform(0.9, 1.1, size=(len(ds.shapes), 1))
    k = kmean_anchors(ds, n=9, img_size=640, thr=4.0, gen=1000, verbose=False)
    assert np.allclose(m.anchors.view(-1, 2).numpy(), (k.reshape(3, 3, 2) / np.array([8, 16, 32])[:, None, None])
                       .reshape(-1, 2), rtol=1e-6)  # stored divided by the level strides


def test_kmean_anchors_deterministic_sorted(yolo_log):
    ds = FakeDataset(np.concatenate((ANCHORS_PX, elongated(40))), per_image=7)
    seed(3)
    k1 = kmean_anchors(ds, n=6, img_size=640, thr=4.0, gen=200, verbose=False)
    seed(3)
    k2 = kmean_anchors(ds, n=6, img_size=640, thr=4.0, gen=200, verbose=True)
    assert k1.shape == (6, 2) and np.array_equal(k1, k2)
    assert np.all(np.diff(k1.prod(1)) >= 0)  # sorted small -> large by area
    assert any("Running kmeans for 6 anchors on 49 points..." in x for x in yolo_log)
    assert any("best possible recall" in x for x in yolo_log) and any("n=6, img_size=640" in x for x in yolo_log)


def test_kmean_anchors_few_points_and_tiny_objects(yolo_log):
    ds = FakeDataset(np.array([[50.0, 60], [100, 80], [2.5, 1.0], [1.0, 1.0]]))
    seed()
    k = kmean_anchors(ds, n=9, img_size=640, thr=4.0, gen=50, verbose=False)
    assert k.shape == (9, 2) and np.all(np.diff(k.prod(1)) >= 0)
    assert any("WARNING: Extremely small objects found. 2 of 4 labels are < 3 pixels in size." in x for x in yolo_log)
    assert any("Running kmeans for 9 anchors on 3 points..." in x for x in yolo_log)  # the 1 x 1 box is dropped
    assert any("WARNING" in x and "random init" in x for x in yolo_log)


def test_kmean_anchors_from_dataset_yaml(tmp_path, yolo_log):
    f = tmp_path / "tiny.yaml"
    f.write_text("path: tiny\ntrain: images/train\nval: images/val\nnc: 2\nnames: ['circle', 'square']\n"
                 "synthetic: {seed: 0, train: 6, val: 2, img_size: 96, size_jitter: 16, max_objects: 3, "
                 "empty_fraction: 0.0}\n")
    seed()
    k = kmean_anchors(str(f), n=3, img_size=96, thr=4.0, gen=20, verbose=False)
    assert k.shape == (3, 2) and np.all(np.diff(k.prod(1)) >= 0)
    assert any("Running kmeans for 3 anchors on" in x for x in yolo_log)
