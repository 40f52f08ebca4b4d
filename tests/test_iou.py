"""The IoU family (utils/iou.py) against values worked out by hand, in float64, from each variant's formula.

Three box pairs (corners x1, y1, x2, y2), box1 = prediction, box2 = target:

- OVERLAP: (0, 0, 4, 2) and (1, 1, 4, 4). Sizes 4 x 2 and 3 x 3, centres (2, 1) and (2.5, 2.5).
  Intersection 3 (x: 1..4, y: 1..2), union 8 + 9 - 3 = 14, IoU = 3/14. Enclosing box 0..4 x 0..4: Cw = Ch = 4,
  area 16, c² = 32. Centre offsets dx = 0.5, dy = 1.5, ρ² = 0.25 + 2.25 = 2.5.
- APART: (0, 0, 1, 1) and (2, 3, 4, 4). Sizes 1 x 1 and 2 x 1, centres (0.5, 0.5) and (3, 3.5). Intersection 0,
  union 1 + 2 = 3, IoU = 0. Enclosing 0..4 x 0..4: Cw = Ch = 4, area 16, c² = 32. dx = 2.5, dy = 3,
  ρ² = 6.25 + 9 = 15.25.
- INSIDE: (0, 0, 6, 6) contains (1, 2, 3, 5). Sizes 6 x 6 and 2 x 3, centres (3, 3) and (2, 3.5). Intersection
  6, union 36, IoU = 1/6. The enclosing box is box1: Cw = Ch = 6, area 36, c² = 72. dx = -1, dy = 0.5,
  ρ² = 1 + 0.25 = 1.25.

``eps`` (1e-7) moves these values by less than 1e-6, the tolerance used.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from utils.iou import (IOU_TYPES, alpha_iou, canonical_iou_type, ciou, diou, eiou, giou, iou, siou, wiou_v1_loss,
                       wiou_v3_gain)

ROOT = Path(__file__).resolve().parents[1]

OVERLAP = ((0.0, 0, 4, 2), (1.0, 1, 4, 4))
APART = ((0.0, 0, 1, 1), (2.0, 3, 4, 4))
INSIDE = ((0.0, 0, 6, 6), (1.0, 2, 3, 5))
PAIRS = {"overlap": OVERLAP, "apart": APART, "inside": INSIDE}
TOL = 1e-6


def measure(fn, pair, **kw) -> float:
    b1, b2 = (torch.tensor(b, dtype=torch.float64) for b in pair)
    return fn(b1, b2, xywh=False, **kw).item()


def ciou_v(w1, h1, w2, h2, iou_):
    """CIoU's aspect term v = 4/π² (atan(w2/h2) − atan(w1/h1))² and its weight a = v / (v − IoU + 1)."""
    v = 4 / math.pi ** 2 * (math.atan(w2 / h2) - math.atan(w1 / h1)) ** 2
    return v, v / (v - iou_ + 1)


def siou_by_hand(iou_, dx, dy, cw, ch, w1, h1, w2, h2):
    """SIoU with the angle cost in its arcsin form: Λ = 1 − 2 sin²(arcsin(|dy| / σ) − π/4)."""
    angle = 1 - 2 * math.sin(math.asin(abs(dy) / math.hypot(dx, dy)) - math.pi / 4) ** 2
    gamma = 2 - angle
    distance = (1 - math.exp(-gamma * (dx / cw) ** 2)) + (1 - math.exp(-gamma * (dy / ch) ** 2))
    ww, wh = abs(w1 - w2) / max(w1, w2), abs(h1 - h2) / max(h1, h2)
    shape = (1 - math.exp(-ww)) ** 4 + (1 - math.exp(-wh)) ** 4
    return iou_ - (distance + shape) / 2


def test_overlapping_pair_by_hand():
    i = 3 / 14
    assert measure(iou, OVERLAP) == pytest.approx(i, abs=TOL)
    assert measure(giou, OVERLAP) == pytest.approx(i - (16 - 14) / 16, abs=TOL)  # 3/14 - 1/8 = 0.0892857
    assert measure(diou, OVERLAP) == pytest.approx(i - 2.5 / 32, abs=TOL)  # 0.2142857 - 0.078125 = 0.1361607
    v, a = ciou_v(4, 2, 3, 3, i)  # v = 4/π² (atan 1 − atan 2)² = 0.0415040
    assert measure(ciou, OVERLAP) == pytest.approx(i - (2.5 / 32 + a * v), abs=TOL)
    # Λ = 2·0.5·1.5 / 2.5 = 0.6 (arcsin form: sin²(asin(1.5/√2.5) − π/4) = 0.2); γ = 1.4;
    # Δ = 2 − exp(−1.4·(0.5/4)²) − exp(−1.4·(1.5/4)²); Ω = (1 − e^−0.25)⁴ + (1 − e^−1/3)⁴
    want = i - ((2 - math.exp(-1.4 * 0.015625) - math.exp(-1.4 * 0.140625))
                + (1 - math.exp(-0.25)) ** 4 + (1 - math.exp(-1 / 3)) ** 4) / 2
    assert want == pytest.approx(siou_by_hand(i, 0.5, 1.5, 4, 4, 4, 2, 3, 3), abs=1e-12)
    assert measure(siou, OVERLAP) == pytest.approx(want, abs=TOL)
    assert measure(eiou, OVERLAP) == pytest.approx(i - 2.5 / 32 - (4 - 3) ** 2 / 16 - (2 - 3) ** 2 / 16, abs=TOL)
    # α-CIoU, α = 3: IoU³ − (ρ²/c²)³ − (a·v)³
    assert measure(alpha_iou, OVERLAP) == pytest.approx(i ** 3 - (2.5 / 32) ** 3 - (a * v) ** 3, abs=TOL)
    assert measure(alpha_iou, OVERLAP, alpha=2, base="GIoU") == pytest.approx(i ** 2 - (2 / 16) ** 2, abs=TOL)
    b1, b2 = (torch.tensor(b, dtype=torch.float64) for b in OVERLAP)
    loss, plain = wiou_v1_loss(b1, b2, xywh=False)  # R = exp(2.5 / 32) = 1.0812
    assert loss.item() == pytest.approx(math.exp(2.5 / 32) * (1 - i), abs=TOL) and plain.item() == pytest.approx(i)


def test_non_overlapping_pair_by_hand():
    assert measure(iou, APART) == pytest.approx(0.0, abs=TOL)
    assert measure(giou, APART) == pytest.approx(-(16 - 3) / 16, abs=TOL)  # −0.8125
    assert measure(diou, APART) == pytest.approx(-15.25 / 32, abs=TOL)  # −0.4765625
    v, a = ciou_v(1, 1, 2, 1, 0.0)
    assert measure(ciou, APART) == pytest.approx(-(15.25 / 32 + a * v), abs=TOL)
    # Λ = 2·2.5·3 / 15.25 = 0.9836; ω_w = 1/2, ω_h = 0
    lam = 15 / 15.25
    want = -((2 - math.exp(-(2 - lam) * (2.5 / 4) ** 2) - math.exp(-(2 - lam) * (3 / 4) ** 2))
             + (1 - math.exp(-0.5)) ** 4) / 2
    assert want == pytest.approx(siou_by_hand(0.0, 2.5, 3, 4, 4, 1, 1, 2, 1), abs=1e-12)
    assert measure(siou, APART) == pytest.approx(want, abs=TOL)
    assert measure(eiou, APART) == pytest.approx(-15.25 / 32 - 1 / 16 - 0 / 16, abs=TOL)
    assert measure(alpha_iou, APART) == pytest.approx(-(15.25 / 32) ** 3 - (a * v) ** 3, abs=TOL)
    b1, b2 = (torch.tensor(b, dtype=torch.float64) for b in APART)
    assert wiou_v1_loss(b1, b2, xywh=False)[0].item() == pytest.approx(math.exp(15.25 / 32), abs=TOL)  # R · 1


def test_contained_pair_by_hand():
    i = 1 / 6
    assert measure(iou, INSIDE) == pytest.approx(i, abs=TOL)
    assert measure(giou, INSIDE) == pytest.approx(i, abs=TOL)  # the enclosing box is the union: no penalty
    assert measure(diou, INSIDE) == pytest.approx(i - 1.25 / 72, abs=TOL)
    v, a = ciou_v(6, 6, 2, 3, i)
    assert measure(ciou, INSIDE) == pytest.approx(i - (1.25 / 72 + a * v), abs=TOL)
    # Λ = 2·1·0.5 / 1.25 = 0.8, γ = 1.2; ω_w = 4/6, ω_h = 3/6
    want = i - ((2 - math.exp(-1.2 * (1 / 6) ** 2) - math.exp(-1.2 * (0.5 / 6) ** 2))
                + (1 - math.exp(-4 / 6)) ** 4 + (1 - math.exp(-0.5)) ** 4) / 2
    assert want == pytest.approx(siou_by_hand(i, -1, 0.5, 6, 6, 6, 6, 2, 3), abs=1e-12)
    assert measure(siou, INSIDE) == pytest.approx(want, abs=TOL)
    assert measure(eiou, INSIDE) == pytest.approx(i - 1.25 / 72 - 16 / 36 - 9 / 36, abs=TOL)
    assert measure(alpha_iou, INSIDE) == pytest.approx(i ** 3 - (1.25 / 72) ** 3 - (a * v) ** 3, abs=TOL)
    b1, b2 = (torch.tensor(b, dtype=torch.float64) for b in INSIDE)
    assert wiou_v1_loss(b1, b2, xywh=False)[0].item() == pytest.approx(math.exp(1.25 / 72) * 5 / 6, abs=TOL)


def test_centre_size_input_equals_corner_input():
    b1, b2 = torch.tensor([[2.0, 1, 4, 2]]), torch.tensor([[2.5, 2.5, 3, 3]])  # OVERLAP as centre, size
    c1, c2 = torch.tensor([OVERLAP[0]]), torch.tensor([OVERLAP[1]])
    for fn in (iou, giou, diou, ciou, siou, eiou, alpha_iou):
        assert torch.allclose(fn(b1, b2), fn(c1, c2, xywh=False), atol=1e-6), fn.__name__


ALL = {"GIoU": giou, "DIoU": diou, "CIoU": ciou, "SIoU": siou, "EIoU": eiou, "AlphaIoU": alpha_iou,
       "WIoU": lambda a, b, **k: 1 - wiou_v1_loss(a, b, **k)[0]}


@pytest.mark.parametrize("name", list(ALL))
def test_identical_boxes_give_one_and_zero_loss(name):
    boxes = torch.tensor([[0.0, 0, 2, 2], [1.0, 3, 1.5, 7], [5.0, 5, 9, 6]])
    assert torch.allclose(ALL[name](boxes, boxes, xywh=False), torch.ones(3), atol=1e-5)


@pytest.mark.parametrize("name", list(ALL))
def test_gradients_are_finite_everywhere(name):
    """Overlapping, apart, nested, identical and centre-aligned (dx = 0 or dy = 0) pairs, float32."""
    b1 = torch.tensor([OVERLAP[0], APART[0], INSIDE[0], (0.0, 0, 2, 2), (0.0, 0, 2, 2), (0, 0, 2, 2)])
    b2 = torch.tensor([OVERLAP[1], APART[1], INSIDE[1], (0.0, 0, 2, 2), (0.5, 0, 1.5, 2), (0, 0.5, 2, 1.5)])
    b1.requires_grad_(True)
    (1 - ALL[name](b1, b2, xywh=False)).sum().backward()
    assert torch.isfinite(b1.grad).all(), b1.grad
    assert b1.grad[:3].abs().sum() > 0  # the loss moves the predicted boxes


def test_alpha_one_is_the_base_variant():
    for base, fn in (("GIoU", giou), ("DIoU", diou), ("CIoU", ciou)):
        for pair in PAIRS.values():
            assert measure(alpha_iou, pair, alpha=1.0, base=base) == pytest.approx(measure(fn, pair), abs=1e-6)


def test_wiou_v3_gain_by_hand():
    # r = β / (δ · α^(β − δ)), α = 1.9, δ = 3: β = 3 → 1; β = 1 → 1.9² / 3 = 1.2033; β = 6 → 6 / (3 · 1.9³) = 0.2916
    l_iou = torch.tensor([0.3, 0.1, 0.6], dtype=torch.float64)
    r = wiou_v3_gain(l_iou, torch.tensor(0.1, dtype=torch.float64))
    assert r.tolist() == pytest.approx([1.0, 1.9 ** 2 / 3, 6 / (3 * 1.9 ** 3)], rel=1e-9)
    # the largest gain sits at β = 1 / ln α (d/dβ [β α^−β] = 0)
    beta = torch.linspace(0.01, 10, 10001, dtype=torch.float64)
    assert beta[wiou_v3_gain(beta, 1.0).argmax()].item() == pytest.approx(1 / math.log(1.9), abs=1e-3)


def test_canonical_names():
    assert [canonical_iou_type(n) for n in ("ciou", "CIOU", "alpha-iou", "Alpha_IoU", "wiou", "s iou")] == \
        ["CIoU", "CIoU", "AlphaIoU", "AlphaIoU", "WIoU", "SIoU"]
    assert all(canonical_iou_type(t) == t for t in IOU_TYPES)
    for bad in ("XIoU", "", None, 3):
        with pytest.raises(ValueError, match="GIoU, DIoU, CIoU, SIoU, EIoU, AlphaIoU, WIoU"):
            canonical_iou_type(bad)


# --------------------------------------------------------------------------------------------------- hyp files
def test_hyp_iou_type_is_checked_and_canonicalised_at_load_time(tmp_path, yolo_log):
    import yaml

    from tests.conftest import ROOT
    from utils.hyps import HypError, load_hyp

    base = yaml.safe_load((ROOT / "data/hyps/hyp.scratch-low.yaml").read_text())
    assert "iou_type" not in load_hyp(base)  # absent stays absent (CIoU, v6.1's hyp.yaml unchanged)
    assert load_hyp({**base, "iou_type": "alpha-iou", "iou_alpha": 2})["iou_type"] == "AlphaIoU"
    f = tmp_path / "hyp.yaml"
    f.write_text(yaml.safe_dump({**base, "iou_type": "DIOU"}))
    assert load_hyp(f)["iou_type"] == "DIoU"
    f.write_text(yaml.safe_dump({**base, "iou_type": "XIoU"}))
    with pytest.raises(HypError, match=r"hyp\.yaml: unknown iou_type 'XIoU': valid names are GIoU, DIoU, CIoU, "
                                       r"SIoU, EIoU, AlphaIoU, WIoU"):
        load_hyp(f)
    for bad in ({"iou_type": 3}, {"iou_alpha": "x"}, {"iou_type": "AlphaIoU", "iou_alpha": 0},
                {"iou_type": "WIoU", "wiou_momentum": 1.5}, {"iou_type": "EIoU", "iou_gamma": -1}):
        with pytest.raises(HypError):
            load_hyp({**base, **bad})
    load_hyp({**base, "iou_type": "SIoU", "wiou_delta": 2.0})  # another type's parameter: warned, ignored
    assert any("wiou_delta is read only with iou_type WIoU" in line for line in yolo_log)


def test_evolve_keeps_iou_type_and_other_fixed_keys(tmp_path):
    import argparse

    import yaml

    from utils.evolve import evolve

    hyp = yaml.safe_load((ROOT / "data/hyps/hyp.scratch-low.yaml").read_text())
    hyp.update(iou_type="SIoU", nam_l1=1e-4)
    (tmp_path / "hyp.yaml").write_text(yaml.safe_dump(hyp))
    seen = []

    def fake_train(h, opt, device, callbacks):
        seen.append(h)
        return (0.5, 0.5, 0.3, 0.2, 0.01, 0.01, 0.01)

    opt = argparse.Namespace(hyp=str(tmp_path / "hyp.yaml"), evolve=2, save_dir=str(tmp_path / "evo"))
    best = evolve(opt, None, None, fake_train)
    assert len(seen) == 2 and all(h["iou_type"] == "SIoU" and h["nam_l1"] == 1e-4 for h in seen)
    assert best["iou_type"] == "SIoU" and best["nam_l1"] == 1e-4  # hyp_evolve.yaml trains the same recipe
