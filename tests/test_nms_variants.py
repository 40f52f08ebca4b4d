"""NMS variants (DIoU-NMS, linear and Gaussian Soft-NMS) of non_max_suppression, and the val.py / detect.py flags."""

from __future__ import annotations

import datetime
import math
import sys

import cv2
import numpy as np
import pytest
import torch
import torchvision

import detect
import utils.nms as nms
import val
from models.yolo import Model
from tests.conftest import ROOT
from utils.boxes import xywh2xyxy
from utils.nms import non_max_suppression
from utils.nms_variants import diou_nms, soft_nms

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one intra-op thread

VARIANTS = ("diou", "soft-linear", "soft-gaussian")
METHODS = ("nms", *VARIANTS)


def row(x: float, y: float, w: float, h: float, obj: float, *cls: float) -> list[float]:
    return [x, y, w, h, obj, *cls]


def pred(*rows: list[float]) -> torch.Tensor:
    return torch.tensor([rows], dtype=torch.float32)  # (1, n, 5 + nc)


# A at (40..60, 40..60); B shifted 2 px right: IoU 360/440 = 9/11; C shifted 15 px: IoU 100/700 = 1/7
A, B, C = (50, 50, 20, 20), (52, 50, 20, 20), (65, 50, 20, 20)
IOU_AB, IOU_AC = 9 / 11, 1 / 7


# ------------------------------------------------------------------------------------------ hand-built cases
def test_two_overlapping_boxes_hard_soft_linear_soft_gaussian():
    p = pred(row(*A, 0.9, 1, 0), row(*B, 0.8, 1, 0))
    out = non_max_suppression(p, 0.01, 0.45)[0]  # hard NMS drops B
    assert out[:, 4].tolist() == pytest.approx([0.9])
    for method in ("nms", "diou"):  # B's centre is 2 px away: DIoU 9/11 - 4/584 is still > 0.45
        assert len(non_max_suppression(p, 0.01, 0.45, method=method)[0]) == 1
    out = non_max_suppression(p, 0.01, 0.45, method="soft-linear")[0]
    assert out[:, 4].tolist() == pytest.approx([0.9, 0.8 * (1 - IOU_AB)], rel=1e-5)
    assert torch.equal(out[1, :4], torch.tensor([42.0, 40, 62, 60]))  # the box itself is untouched
    for sigma in (0.5, 0.2):
        out = non_max_suppression(p, 0.01, 0.45, method="soft-gaussian", sigma=sigma)[0]
        assert out[:, 4].tolist() == pytest.approx([0.9, 0.8 * math.exp(-IOU_AB ** 2 / sigma)], rel=1e-5)
    # a decayed score that is no longer above conf_thres drops the row (0.145 and 0.210 < 0.25)
    for method in ("soft-linear", "soft-gaussian"):
        assert non_max_suppression(p, 0.25, 0.45, method=method)[0][:, 4].tolist() == pytest.approx([0.9])


def test_soft_linear_threshold_gaussian_everywhere_and_reordering():
    p = pred(row(*A, 0.9, 1, 0), row(*C, 0.7, 1, 0))  # IoU 1/7 < 0.45
    assert non_max_suppression(p, 0.01, 0.45, method="soft-linear")[0][:, 4].tolist() == pytest.approx([0.9, 0.7])
    out = non_max_suppression(p, 0.01, 0.45, method="soft-gaussian")[0]  # the Gaussian has no threshold
    assert out[:, 4].tolist() == pytest.approx([0.9, 0.7 * math.exp(-IOU_AC ** 2 / 0.5)], rel=1e-5)
    # B (0.85) overlaps A and decays below a far-away box D (0.5): the output is sorted by decayed score
    p = pred(row(*A, 0.9, 1, 0), row(*B, 0.85, 1, 0), row(300, 300, 20, 20, 0.5, 1, 0))
    out = non_max_suppression(p, 0.01, 0.45, method="soft-linear")[0]
    assert out[:, 4].tolist() == pytest.approx([0.9, 0.5, 0.85 * (1 - IOU_AB)], rel=1e-5)
    assert out[:, 0].tolist() == [40.0, 290.0, 42.0]


def test_diou_keeps_an_overlapping_box_whose_centre_is_away():
    # A (0..30, 0..30); B = A shifted 6 px right: IoU 720/1080 = 2/3, centres 6 px apart, enclosing diagonal²
    # 36² + 30² = 2196, DIoU = 2/3 - 36/2196 = 0.650; C = A cut to rows 5..25: IoU 600/900 = 2/3, same centre
    p = pred(row(15, 15, 30, 30, 0.9, 1), row(21, 15, 30, 30, 0.8, 1), row(15, 15, 30, 20, 0.7, 1))
    out = non_max_suppression(p, 0.01, 0.66)[0]
    assert out[:, 4].tolist() == pytest.approx([0.9])  # hard NMS: both IoUs 0.667 > 0.66
    out = non_max_suppression(p, 0.01, 0.66, method="diou")[0]
    assert out[:, 4].tolist() == pytest.approx([0.9, 0.8])  # B kept (0.650), C suppressed (0.667)
    assert out[1, :4].tolist() == [6.0, 0.0, 36.0, 30.0]
    assert len(non_max_suppression(p, 0.01, 0.64, method="diou")[0]) == 1  # 0.650 > 0.64: B goes too


@pytest.mark.parametrize("method", METHODS)
def test_classes_kept_apart_agnostic_merges_multi_label(method):
    p = pred(row(*A, 0.9, 1, 0), row(*B, 0.8, 0, 1))  # B is another class: untouched
    out = non_max_suppression(p, 0.01, 0.45, method=method)[0]
    assert out[:, 5].tolist() == [0, 1] and out[:, 4].tolist() == pytest.approx([0.9, 0.8])
    out = non_max_suppression(p, 0.01, 0.45, agnostic=True, method=method)[0]
    expected = {"nms": [0.9], "diou": [0.9], "soft-linear": [0.9, 0.8 * (1 - IOU_AB)],
                "soft-gaussian": [0.9, 0.8 * math.exp(-IOU_AB ** 2 / 0.5)]}[method]
    assert out[:, 4].tolist() == pytest.approx(expected, rel=1e-5)
    out = non_max_suppression(pred(row(*A, 1.0, 0.8, 0.6, 0.1)), 0.25, 0.45, multi_label=True, method=method)[0]
    assert out[:, 5].tolist() == [0, 1] and out[:, 4].tolist() == pytest.approx([0.8, 0.6])  # same box, 2 classes
    out = non_max_suppression(p, 0.01, 0.45, classes=[1], method=method)[0]
    assert out[:, 5].tolist() == [1]


@pytest.mark.parametrize("method", METHODS)
def test_max_det_input_untouched_labels_and_empty(method):
    rows = [row(50 * k + 10, 10, 20, 20, 0.5 + 0.1 * k, 1.0) for k in range(5)]  # disjoint, conf 0.5 … 0.9
    out = non_max_suppression(pred(*rows), max_det=3, method=method)[0]
    assert out[:, 4].tolist() == pytest.approx([0.9, 0.8, 0.7])
    p = torch.cat((pred(row(*A, 0.9, 1, 0), row(*B, 0.8, 1, 0)), pred(row(*A, 0.005, 1, 0), row(*B, 0.005, 1, 0))))
    before = p.clone()
    labels = [torch.zeros(0, 5), torch.tensor([[1.0, 100, 100, 10, 10]])]
    out = non_max_suppression(p, 0.01, 0.45, labels=labels, method=method)
    assert torch.equal(p, before)  # the caller's tensor is not modified
    assert out[1].tolist() == [[95.0, 95.0, 105.0, 105.0, 1.0, 1.0]]  # the a-priori label
    assert non_max_suppression(torch.zeros(2, 3, 7), method=method)[1].shape == (0, 6)
    out = non_max_suppression(p.double(), 0.01, 0.45, method=method)[0]
    assert out.dtype == torch.float64  # scores come back in the input's dtype


def test_bad_method_or_sigma():
    p = pred(row(*A, 0.9, 1))
    with pytest.raises(ValueError, match="NMS method must be one of"):
        non_max_suppression(p, method="soft")
    with pytest.raises(ValueError, match="sigma must be positive"):
        non_max_suppression(p, method="soft-gaussian", sigma=0.0)
    assert len(non_max_suppression(p, method="soft-linear", sigma=0.0)[0]) == 1  # sigma unused there


def test_time_limit_applies_to_variants(monkeypatch):
    torch.manual_seed(0)
    p = torch.rand(3, 50, 8)
    p[..., :2] *= 200
    p[..., 2:4] = p[..., 2:4] * 40 + 5
    clock = iter(float(x) for x in range(0, 1000, 20))  # each time.time() call advances 20 s
    monkeypatch.setattr(nms.time, "time", lambda: next(clock))
    out = non_max_suppression(p, 0.01, 0.45, method="soft-gaussian")  # stops after the first image
    assert len(out[0]) > 0 and len(out[1]) == 0 and len(out[2]) == 0
    out = non_max_suppression(p, 0.01, 0.45, method="diou", time_limit=None)
    assert all(len(o) > 0 for o in out)


# --------------------------------------------------------------------------------- against references
def _v61_reference(p: torch.Tensor, conf: float, iou: float, multi_label: bool, agnostic: bool,
                   max_det: int) -> list[torch.Tensor]:
    """Today's hard NMS written out: candidates, conf = obj · cls, torchvision (batched) NMS, max_det."""
    out = []
    for x in p:
        x = x[x[:, 4] > conf].clone()
        x[((x[:, 2:4] < 2) | (x[:, 2:4] > 7680)).any(1), 4] = 0
        x[:, 5:] *= x[:, 4:5]
        box = xywh2xyxy(x[:, :4])
        if multi_label:
            i, j = (x[:, 5:] > conf).nonzero(as_tuple=False).T
            x = torch.cat((box[i], x[i, j + 5, None], j[:, None].float()), 1)
        else:
            c, j = x[:, 5:].max(1, keepdim=True)
            x = torch.cat((box, c, j.float()), 1)[c.view(-1) > conf]
        if agnostic:
            i = torchvision.ops.nms(x[:, :4], x[:, 4], iou)
        else:
            i = torchvision.ops.batched_nms(x[:, :4], x[:, 4], x[:, 5], iou)
        out.append(x[i[:max_det]])
    return out


def _random_pred(seed: int, bs: int = 2, n: int = 400, nc: int = 4) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(bs, n, 5 + nc, generator=g)
    p[..., :2] = p[..., :2] * 150
    p[..., 2:4] = p[..., 2:4] * 50 + 1  # some boxes under 2 px
    return p


@pytest.mark.parametrize("multi_label,agnostic", [(False, False), (True, False), (False, True)])
def test_default_is_todays_hard_nms_bit_for_bit(multi_label, agnostic):
    for seed in range(3):
        p = _random_pred(seed)
        ref = _v61_reference(p, 0.05, 0.5, multi_label, agnostic, 300)
        for out in (non_max_suppression(p, 0.05, 0.5, multi_label=multi_label, agnostic=agnostic),
                    non_max_suppression(p, 0.05, 0.5, multi_label=multi_label, agnostic=agnostic, method="nms",
                                        sigma=0.1)):
            assert all(torch.equal(a, b) for a, b in zip(out, ref))


def _iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


def _diou(a, b) -> float:
    rho2 = ((a[0] + a[2] - b[0] - b[2]) / 2) ** 2 + ((a[1] + a[3] - b[1] - b[3]) / 2) ** 2
    c2 = (max(a[2], b[2]) - min(a[0], b[0])) ** 2 + (max(a[3], b[3]) - min(a[1], b[1])) ** 2
    return _iou(a, b) - rho2 / c2


def _reference(boxes, scores, cls, method: str, iou_thres: float, conf_thres: float, sigma: float):
    """Plain-Python float64 greedy loop per class, straight from the rules; [(row, score)] by descending score."""
    picks = []
    for c in sorted(set(cls)):
        pool = {i: scores[i] for i in range(len(cls)) if cls[i] == c}
        while pool:
            k = max(pool, key=lambda i: (pool[i], -i))  # best score, earlier row on ties
            picks.append((k, pool.pop(k)))
            for i in list(pool):
                if method == "diou":
                    if _diou(boxes[k], boxes[i]) > iou_thres:
                        del pool[i]
                    continue
                o = _iou(boxes[k], boxes[i])
                pool[i] *= math.exp(-o * o / sigma) if method == "soft-gaussian" else (1 - o if o > iou_thres else 1)
                if pool[i] <= conf_thres:
                    del pool[i]
    return sorted(picks, key=lambda t: -t[1])


@pytest.mark.parametrize("method", VARIANTS)
@pytest.mark.parametrize("agnostic", [False, True])
def test_variants_match_a_float64_reference(method, agnostic):
    g = torch.Generator().manual_seed(1)
    n = 80
    xy, wh = torch.rand(n, 2, generator=g) * 100, torch.rand(n, 2, generator=g) * 40 + 10  # many overlaps
    boxes = torch.cat((xy, xy + wh), 1)
    scores = torch.rand(n, generator=g) * 0.9 + 0.05
    cls = torch.randint(0, 3, (n,), generator=g).float()
    c = torch.zeros_like(cls) if agnostic else cls
    ref = _reference(boxes.double().tolist(), scores.double().tolist(), c.tolist(), method, 0.4, 0.05, 0.3)
    if method == "diou":
        i = diou_nms(boxes, scores, c, 0.4, max_det=1000)
        assert i.tolist() == [k for k, _ in ref]
        assert i.tolist()[:7] == diou_nms(boxes, scores, c, 0.4, max_det=7).tolist()
        return
    i, s = soft_nms(boxes, scores, c, 0.4, 0.05, method == "soft-gaussian", 0.3, max_det=1000)
    assert i.tolist() == [k for k, _ in ref]
    torch.testing.assert_close(s.double(), torch.tensor([v for _, v in ref], dtype=torch.float64), rtol=1e-5,
                               atol=1e-6)
    i7, s7 = soft_nms(boxes, scores, c, 0.4, 0.05, method == "soft-gaussian", 0.3, max_det=7)
    assert i7.tolist() == i.tolist()[:7] and torch.equal(s7, s[:7])  # max_det picks are the best rows


# ----------------------------------------------------------------------------------------- val.py, detect.py
@pytest.fixture(scope="module")
def weights5(tmp_path_factory):
    """A yolov5n with 5 classes (the tiny data's), random weights, as a stripped v6.1 checkpoint."""
    torch.manual_seed(0)
    model = Model(ROOT / "models" / "yolov5n.yaml", nc=5)
    f = tmp_path_factory.mktemp("weights") / "n5.pt"
    torch.save({"epoch": -1, "best_fitness": None, "model": model.half(), "ema": None, "updates": None,
                "optimizer": None, "wandb_id": None, "date": datetime.datetime.now().isoformat()}, f)
    return f


def _spy(monkeypatch, module) -> list[dict]:
    calls, real = [], module.non_max_suppression

    def spy(*args, **kw):
        calls.append(kw)
        return real(*args, **kw)

    monkeypatch.setattr(module, "non_max_suppression", spy)
    return calls


def test_val_run_and_flags(weights5, tiny_data, tmp_path, monkeypatch):
    calls = _spy(monkeypatch, val)
    kw = dict(data=str(tiny_data), weights=str(weights5), imgsz=64, batch_size=16, workers=0, device="cpu",
              plots=False, project=tmp_path)
    (mp, mr, map50, map_, *losses), maps, t = val.run(**kw, name="soft", nms="soft-gaussian", soft_sigma=0.3)
    assert len(losses) == 3 and maps.shape == (5,) and len(t) == 3
    assert calls and all((c["method"], c["sigma"]) == ("soft-gaussian", 0.3) for c in calls)
    calls.clear()
    val.run(**kw, name="plain")
    assert calls and all((c["method"], c["sigma"]) == ("nms", 0.5) for c in calls)  # the default: v6.1's
    with pytest.raises(ValueError, match="NMS method must be one of"):
        val.run(**kw, name="bad", nms="greedy")
    assert not (tmp_path / "bad").exists()

    monkeypatch.setattr(sys, "argv", ["val.py", "--nms", "diou", "--soft-sigma", "0.3"])
    opt = val.parse_opt()
    assert (opt.nms, opt.soft_sigma) == ("diou", 0.3)
    monkeypatch.setattr(sys, "argv", ["val.py"])
    assert (val.parse_opt().nms, val.parse_opt().soft_sigma) == ("nms", 0.5)
    monkeypatch.setattr(sys, "argv", ["val.py", "--nms", "soft"])
    with pytest.raises(SystemExit):
        val.parse_opt()


def test_detect_run_and_flags(weights5, tmp_path, monkeypatch):
    calls = _spy(monkeypatch, detect)
    img = tmp_path / "tiny.jpg"
    cv2.imwrite(str(img), (np.random.default_rng(0).random((48, 72, 3)) * 255).astype(np.uint8))
    kw = dict(weights=weights5, source=img, imgsz=64, conf_thres=0.001, max_det=5, device="cpu", project=tmp_path,
              save_txt=True, save_conf=True)
    for method in VARIANTS:
        d = detect.run(**kw, name=method, nms=method, soft_sigma=0.3)
        assert (calls[-1]["method"], calls[-1]["sigma"]) == (method, 0.3)
        rows = (d / "labels" / "tiny.txt").read_text().splitlines()
        assert 0 < len(rows) <= 5 and all(len(r.split()) == 6 for r in rows)
    detect.run(**kw, name="plain")
    assert (calls[-1]["method"], calls[-1]["sigma"]) == ("nms", 0.5)
    with pytest.raises(ValueError, match="--nms must be one of"):
        detect.run(**kw, name="bad", nms="soft")
    with pytest.raises(ValueError, match="--soft-sigma must be positive"):
        detect.run(**kw, name="bad", nms="soft-gaussian", soft_sigma=-1)
    assert not (tmp_path / "bad").exists()

    monkeypatch.setattr(sys, "argv", ["detect.py", "--nms", "soft-linear", "--soft-sigma", "0.2"])
    opt = detect.parse_opt()
    assert (opt.nms, opt.soft_sigma) == ("soft-linear", 0.2)
