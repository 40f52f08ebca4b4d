"""non_max_suppression against hand-checked boxes."""

from __future__ import annotations

import pytest
import torch

from utils.nms import non_max_suppression


def row(x: float, y: float, w: float, h: float, obj: float, *cls: float) -> list[float]:
    return [x, y, w, h, obj, *cls]


def pred(*rows: list[float]) -> torch.Tensor:
    return torch.tensor([rows], dtype=torch.float32)  # (1, n, 5 + nc)


# A at (40..60, 40..60); B shifted 2 px right: IoU 360/440 = 0.82; C shifted 15 px: IoU 100/700 = 0.14
A, B, C = (50, 50, 20, 20), (52, 50, 20, 20), (65, 50, 20, 20)


def test_same_class_suppressed_different_class_kept_agnostic_merges():
    p = pred(row(*A, 0.9, 1, 0), row(*B, 0.8, 1, 0), row(*C, 0.7, 1, 0))
    out = non_max_suppression(p)[0]
    assert out.shape == (2, 6)
    assert torch.allclose(out[:, :4], torch.tensor([[40.0, 40, 60, 60], [55, 40, 75, 60]]))  # xyxy
    assert torch.allclose(out[:, 4], torch.tensor([0.9, 0.7])) and out[:, 5].tolist() == [0, 0]

    p = pred(row(*A, 0.9, 1, 0), row(*B, 0.8, 0, 1))  # B is another class
    out = non_max_suppression(p)[0]
    assert out[:, 5].tolist() == [0, 1] and torch.allclose(out[:, 4], torch.tensor([0.9, 0.8]))
    out = non_max_suppression(p, agnostic=True)[0]
    assert out[:, 5].tolist() == [0] and out[0, 4].item() == pytest.approx(0.9)


def test_iou_threshold_is_exclusive():
    # inner box (0..10, 0..10) inside (0..20, 0..10): IoU exactly 0.5
    p = pred(row(10, 5, 20, 10, 0.9, 1, 0), row(5, 5, 10, 10, 0.8, 1, 0))
    assert len(non_max_suppression(p, iou_thres=0.5)[0]) == 2  # suppression needs IoU > thres
    assert len(non_max_suppression(p, iou_thres=0.49)[0]) == 1


def test_conf_is_obj_times_cls_and_candidates():
    p = pred(row(*A, 0.9, 0.5, 0.1),  # conf 0.45
             row(100, 100, 20, 20, 0.9, 0.2, 0.1),  # obj passes, but conf 0.18 < 0.25
             row(200, 200, 20, 20, 0.2, 1.0, 1.0))  # obj 0.2 < conf_thres: not a candidate
    out = non_max_suppression(p)[0]
    assert out.shape == (1, 6) and out[0, 4].item() == pytest.approx(0.45) and out[0, 5].item() == 0
    assert len(non_max_suppression(p, conf_thres=0.5)[0]) == 0  # 0.45 fails at 0.5


def test_multi_label_rows():
    p = pred(row(*A, 1.0, 0.8, 0.6, 0.1))
    out = non_max_suppression(p, multi_label=True)[0]
    assert out[:, 5].tolist() == [0, 1] and torch.allclose(out[:, 4], torch.tensor([0.8, 0.6]))
    assert torch.equal(out[0, :4], out[1, :4])  # same box, two classes, not suppressed against each other
    out = non_max_suppression(p, multi_label=False)[0]
    assert out[:, 5].tolist() == [0] and out[0, 4].item() == pytest.approx(0.8)
    # nc = 1: multi-label is switched off; the single class is kept once
    out = non_max_suppression(pred(row(*A, 0.9, 0.9)), multi_label=True)[0]
    assert out.shape == (1, 6) and out[0, 4].item() == pytest.approx(0.81)


def test_min_max_wh_filter():
    p = pred(row(10, 10, 1.9, 20, 0.9, 1),  # w < 2 px
             row(100, 100, 2, 2, 0.9, 1),  # 2 px is fine
             row(4000, 4000, 7681, 20, 0.9, 1),  # w > 7680 px
             row(300, 300, 20, 7680, 0.9, 1))  # 7680 is fine
    out = non_max_suppression(p)[0]
    assert sorted(out[:, 0].tolist()) == [99.0, 290.0]


def test_classes_filter_max_det_sorted():
    rows = [row(50 * k + 10, 10, 20, 20, 0.5 + 0.1 * k, float(k % 2 == 0), float(k % 2)) for k in range(5)]
    p = pred(*rows)  # 5 disjoint boxes, conf 0.5 … 0.9, classes 0 1 0 1 0
    out = non_max_suppression(p)[0]
    assert torch.allclose(out[:, 4], torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5]))  # descending conf
    out = non_max_suppression(p, classes=[1])[0]
    assert out[:, 5].tolist() == [1, 1] and torch.allclose(out[:, 4], torch.tensor([0.8, 0.6]))
    out = non_max_suppression(p, max_det=3)[0]
    assert torch.allclose(out[:, 4], torch.tensor([0.9, 0.8, 0.7]))


def test_apriori_labels_batch_and_input_untouched():
    p = torch.cat((pred(row(*A, 0.9, 1, 0), row(10, 10, 1, 1, 0.9, 1, 0)),  # image 0: A and a 1 x 1 box
                   pred(row(*A, 0.1, 1, 0), row(*A, 0.1, 1, 0))))  # image 1: no candidates
    before = p.clone()
    labels = [torch.zeros(0, 5), torch.tensor([[1.0, 100, 100, 10, 10]])]  # per image: cls, x, y, w, h (pixels)
    out = non_max_suppression(p, labels=labels)
    assert torch.equal(p, before)  # the caller's tensor is not modified
    assert len(out) == 2 and out[0].shape == (1, 6)
    assert out[1].tolist() == [[95.0, 95.0, 105.0, 105.0, 1.0, 1.0]]  # obj 1 · one-hot 1
    assert non_max_suppression(torch.zeros(2, 3, 7))[1].shape == (0, 6)  # empty image


def test_threshold_asserts():
    with pytest.raises(AssertionError, match="Invalid Confidence threshold"):
        non_max_suppression(pred(row(*A, 0.9, 1)), conf_thres=1.5)
    with pytest.raises(AssertionError, match="Invalid IoU"):
        non_max_suppression(pred(row(*A, 0.9, 1)), iou_thres=-0.1)
