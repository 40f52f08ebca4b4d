"""Metrics against hand-computed numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from utils.metrics import (ConfusionMatrix, ap_per_class, bbox_ioa, bbox_iou, box_iou, coco80_to_coco91_class,
                           compute_ap, fitness, labels_to_class_weights, labels_to_image_weights, process_batch,
                           wh_iou)


def trapezoid_101(f) -> float:
    """Hand 101-point trapezoid: 0.01 · (Σ f(x_i) − (f(0) + f(1)) / 2) over x_i = i/100."""
    ys = [f(i / 100) for i in range(101)]
    return 0.01 * (sum(ys) - (ys[0] + ys[-1]) / 2)


# ---------------------------------------------------------------------------------------------------------- IoU
def test_box_iou_wh_iou_ioa_fitness():
    a = torch.tensor([[0.0, 0, 10, 10]])
    b = torch.tensor([[5.0, 0, 15, 10], [0, 0, 10, 10], [20, 20, 30, 30]])
    assert torch.allclose(box_iou(a, b), torch.tensor([[50 / 150, 1.0, 0.0]]))
    assert torch.allclose(wh_iou(torch.tensor([[2.0, 2]]), torch.tensor([[4.0, 1], [2, 2]])),
                          torch.tensor([[2 / 6, 1.0]]))
    ioa = bbox_ioa(np.array([0.0, 0, 10, 10]), np.array([[5.0, 5, 15, 15], [20, 20, 30, 30]]))
    assert np.allclose(ioa, [25 / 100, 0.0])
    assert np.allclose(fitness(np.array([[0.5, 0.6, 0.7, 0.8, 9.0]])), [0.1 * 0.7 + 0.9 * 0.8])


def test_bbox_iou_identical_disjoint_giou():
    box = torch.tensor([[0.0, 0, 2, 2]])
    assert torch.allclose(bbox_iou(box[0], box), torch.tensor([1.0]), atol=1e-6)
    assert torch.allclose(bbox_iou(box[0], box, CIoU=True), torch.tensor([1.0]), atol=1e-6)
    a, b = torch.tensor([0.0, 0, 1, 1]), torch.tensor([[2.0, 0, 3, 1]])
    assert bbox_iou(a, b).item() == 0.0
    # GIoU: union 2, enclosing box 3 x 1 -> 0 - (3 - 2) / 3
    assert bbox_iou(a, b, GIoU=True).item() == pytest.approx(-1 / 3, abs=1e-6)
    assert bbox_iou(a, b, GIoU=True).item() < 0


def test_bbox_iou_diou_ciou_by_hand():
    a = torch.tensor([0.0, 0, 2, 2])  # 2 x 2 at centre (1, 1)
    b = torch.tensor([[0.0, 0, 4, 2]])  # 4 x 2 at centre (2, 1)
    iou = 4 / 8
    rho2, c2 = 1.0, 4 ** 2 + 2 ** 2  # centre distance², enclosing diagonal² (4 x 2 box)
    v = 4 / math.pi ** 2 * (math.atan(4 / 2) - math.atan(2 / 2)) ** 2
    alpha = v / (v - iou + 1)
    assert bbox_iou(a, b).item() == pytest.approx(iou, abs=1e-6)
    assert bbox_iou(a, b, DIoU=True).item() == pytest.approx(iou - rho2 / c2, abs=1e-6)
    assert bbox_iou(a, b, CIoU=True).item() == pytest.approx(iou - (rho2 / c2 + v * alpha), abs=1e-6)
    # same boxes as centre/size, several at once with box1 transposed (4, n) as the loss passes it
    b1 = torch.tensor([[1.0, 1, 2, 2], [1.0, 1, 2, 2]]).T
    b2 = torch.tensor([[2.0, 1, 4, 2], [1.0, 1, 2, 2]])
    out = bbox_iou(b1, b2, x1y1x2y2=False, CIoU=True)
    assert out.shape == (2,)
    assert out[0].item() == pytest.approx(iou - (rho2 / c2 + v * alpha), abs=1e-6)
    assert out[1].item() == pytest.approx(1.0, abs=1e-6)


def test_bbox_iou_keeps_v61_signature_and_delegates_to_utils_iou():
    from utils import iou as family
    g = torch.Generator().manual_seed(0)
    b1 = torch.rand(50, 4, generator=g) * 3 + torch.tensor([0.0, 0, 1, 1])  # centre, size
    b2 = torch.rand(50, 4, generator=g) * 3 + torch.tensor([0.0, 0, 1, 1])
    for flags, fn in (({}, family.iou), ({"GIoU": True}, family.giou), ({"DIoU": True}, family.diou),
                      ({"CIoU": True}, family.ciou), ({"CIoU": True, "GIoU": True}, family.ciou)):
        assert torch.equal(bbox_iou(b1.T, b2, x1y1x2y2=False, **flags), fn(b1, b2)), flags  # (4, n) box1
        assert torch.equal(bbox_iou(b1[0], b2, False, **flags), fn(b1[0], b2)), flags  # one (4,) box vs n
    xyxy = torch.cat((b1[:, :2], b1[:, :2] + b1[:, 2:]), 1)
    assert torch.equal(bbox_iou(xyxy.T, b2, DIoU=True, eps=1e-9), family.diou(xyxy, b2, xywh=False, eps=1e-9))


# ----------------------------------------------------------------------------------------------------------- AP
def test_compute_ap_step_curves():
    # one perfect point: envelope 1 up to recall 1, but the sentinel (recall 1, precision 0) makes the 101st sample 0
    assert compute_ap([1.0], [1.0])[0] == pytest.approx(trapezoid_101(lambda x: 1.0 if x < 1 else 0.0))
    assert compute_ap([1.0], [1.0])[0] == pytest.approx(0.995)
    # recall 0.5 at precision 1, then the ramp to (1, 0): exact area 0.5 + 0.25
    assert compute_ap([0.5], [1.0])[0] == pytest.approx(0.75)
    # T F T F T with 3 labels: envelope 1 | 2/3 | 0.6 on [0, 1/3) | (1/3, 2/3) | (2/3, 1), 0 at recall 1
    rec, prec = [1 / 3, 1 / 3, 2 / 3, 2 / 3, 1], [1, 1 / 2, 2 / 3, 2 / 4, 3 / 5]
    hand = 0.01 * (34 * 1 + 33 * (2 / 3) + 33 * 0.6 + 0 - (1 + 0) / 2)  # = 0.753
    assert compute_ap(rec, prec)[0] == pytest.approx(hand)
    assert hand == pytest.approx(0.753)
    ap, mpre, mrec = compute_ap(rec, prec)
    assert np.allclose(mpre, [1, 1, 2 / 3, 2 / 3, 0.6, 0.6, 0]) and np.allclose(mrec, [0] + rec + [1])
    # 'continuous': Σ Δrecall · envelope where recall changes
    assert compute_ap(rec, prec, method="continuous")[0] == pytest.approx((1 + 2 / 3 + 0.6) / 3)


def _tp(rows: str, cols: int = 10) -> np.ndarray:
    return np.array([[c == "T"] * cols for c in rows])


def test_ap_per_class_perfect():
    tp = _tp("TTT")
    conf, pred_cls, target_cls = np.array([0.9, 0.8, 0.7]), np.array([0, 0, 1]), np.array([0, 0, 1])
    tp_, fp, p, r, f1, ap, classes = ap_per_class(tp, conf, pred_cls, target_cls)
    assert classes.dtype == np.int32 and classes.tolist() == [0, 1]
    assert np.allclose(ap, 0.995)  # v6.1's 101-point interpolation tops out at 0.995 (see compute_ap)
    assert np.allclose(p, 1) and np.allclose(r, 1) and np.allclose(f1, 1)
    assert tp_.tolist() == [2, 1] and fp.tolist() == [0, 0]


def test_ap_per_class_hand_curve_sorted_by_conf():
    # 3 labels of class 0; predictions by confidence: T F T F T at IoU .50-.70, T F F F F at .75-.95
    order = [2, 4, 0, 3, 1]  # the arrays are handed over shuffled; ap_per_class sorts by conf
    conf = np.array([0.9, 0.8, 0.7, 0.6, 0.5])[order]
    tp = np.concatenate((_tp("TFTFT", 5), _tp("TFFFF", 5)), 1)[order]
    _, _, _, _, _, ap, classes = ap_per_class(tp, conf, np.zeros(5), np.zeros(3))
    hand_lo = 0.01 * (34 * 1 + 33 * (2 / 3) + 33 * 0.6 - 0.5)
    # T F F F F: envelope 1 up to recall 1/3, then the ramp from (1/3, 0.2) to (1, 0) = 0.3 · (1 − x)
    hand_hi = 0.01 * (34 * 1 + sum(0.3 * (1 - i / 100) for i in range(34, 101)) - 0.5)
    assert classes.tolist() == [0]
    assert np.allclose(ap[0, :5], hand_lo) and np.allclose(ap[0, 5:], hand_hi)
    assert hand_hi == pytest.approx(0.40133)


def test_ap_per_class_no_predictions_and_wrong_class():
    tp_, fp, p, r, f1, ap, classes = ap_per_class(np.zeros((0, 10), bool), np.zeros(0), np.zeros(0), np.array([0, 1]))
    assert ap.shape == (2, 10) and not ap.any() and not p.any() and not r.any() and classes.tolist() == [0, 1]
    # predictions only of class 0 (unlabelled): class 1 (labelled) scores 0, class 0 is not reported
    _, _, p, r, _, ap, classes = ap_per_class(_tp("F"), np.array([0.9]), np.array([0]), np.array([1]))
    assert classes.tolist() == [1] and not ap.any() and p.tolist() == [0] and r.tolist() == [0]


def test_ap_per_class_f1_operating_point():
    # 2 labels; F (0.9), T (0.8), T (0.7): below conf 0.7 P = 2/3, R = 1 and F1 = 0.8 is the maximum
    tp_, fp, p, r, f1, _, _ = ap_per_class(_tp("FTT"), np.array([0.9, 0.8, 0.7]), np.zeros(3), np.zeros(2))
    assert p[0] == pytest.approx(2 / 3) and r[0] == pytest.approx(1) and f1[0] == pytest.approx(0.8)
    assert tp_.tolist() == [2] and fp.tolist() == [1]  # round(r·nt), round(tp/p − tp)

    # 2 labels; T F F F T at conf 0.9 … 0.3: best F1 just below conf 0.9, on the 1000-sample confidence grid
    confs, precs, recs = [0.9, 0.6, 0.5, 0.4, 0.3], [1, 1 / 2, 1 / 3, 1 / 4, 2 / 5], [0.5, 0.5, 0.5, 0.5, 1.0]
    tp_, fp, p, r, f1, _, _ = ap_per_class(_tp("TFFFT"), np.array(confs), np.zeros(5), np.zeros(2))
    best, best_pr = -1.0, None
    for k in range(1000):  # hand scan: P, R linear in confidence between predictions; R 0 / P 1 above 0.9
        c = k / 999
        if c > confs[0]:
            pk, rk = 1.0, 0.0
        elif c <= confs[-1]:
            pk, rk = precs[-1], recs[-1]
        else:
            n = next(n for n in range(4) if confs[n] >= c >= confs[n + 1])
            s = (confs[n] - c) / (confs[n] - confs[n + 1])
            pk, rk = precs[n] + s * (precs[n + 1] - precs[n]), recs[n] + s * (recs[n + 1] - recs[n])
        fk = 2 * pk * rk / (pk + rk)
        if fk > best:
            best, best_pr = fk, (pk, rk)
    assert p[0] == pytest.approx(best_pr[0], abs=1e-9) and r[0] == pytest.approx(best_pr[1], abs=1e-9)
    assert f1[0] == pytest.approx(best, abs=1e-9)
    assert 0.666 < f1[0] < 2 / 3 and r[0] == pytest.approx(0.5)  # at conf 899/999, not at the end (F1 4/7)
    assert tp_.tolist() == [1] and fp.tolist() == [0]


def test_ap_per_class_plots(tmp_path):
    ap_per_class(_tp("TFT"), np.array([0.9, 0.6, 0.3]), np.array([0, 1, 0]), np.array([0, 0, 1]), plot=True,
                 save_dir=tmp_path, names={0: "cat", 1: "dog"})
    for f in "PR_curve.png", "F1_curve.png", "P_curve.png", "R_curve.png":
        assert (tmp_path / f).stat().st_size > 0


# ----------------------------------------------------------------------------------------------------- matching
LABEL = torch.tensor([[0.0, 0, 0, 10, 10]])  # class 0, 10 x 10 box


def det(x2: float, y2: float, conf: float = 0.9, cls: float = 0.0, x1: float = 0.0) -> list[float]:
    return [x1, 0.0, x2, y2, conf, cls]


def test_process_batch_thresholds_exact():
    iouv = torch.tensor([0.5, 0.75, 0.9])
    dets = torch.tensor([det(10, 5), det(10, 7.5), det(10, 9.5), det(10, 4.9)])  # IoU .5, .75, .95, .49
    correct = process_batch(dets, LABEL.repeat(1, 1), iouv)
    assert correct.dtype == torch.bool and correct.shape == (4, 3)
    # only one label: the first detection in order takes it, the others stay unmatched
    assert correct.tolist() == [[True, False, False], [False] * 3, [False] * 3, [False] * 3]
    for d, want in ((det(10, 5), [1, 0, 0]), (det(10, 7.5), [1, 1, 0]), (det(10, 9.5), [1, 1, 1]),
                    (det(10, 4.9), [0, 0, 0])):
        assert process_batch(torch.tensor([d]), LABEL, iouv)[0].tolist() == [bool(w) for w in want]
    # the default 10 thresholds: IoU exactly 0.5 passes the first only
    iouv10 = torch.linspace(0.5, 0.95, 10)
    assert process_batch(torch.tensor([det(10, 5)]), LABEL, iouv10).tolist() == [[True] + [False] * 9]
    assert process_batch(torch.zeros(0, 6), LABEL, iouv10).shape == (0, 10)


def test_process_batch_class_mismatch_and_two_detections():
    iouv = torch.tensor([0.5, 0.75, 0.9])
    assert not process_batch(torch.tensor([det(10, 10, cls=1)]), LABEL, iouv).any()
    # one label, two detections: det 0 (earlier = higher conf, IoU .6) wins over det 1 (IoU .95) in v6.1
    dets = torch.tensor([det(10, 6, conf=0.9), det(10, 9.5, conf=0.8)])
    assert process_batch(dets, LABEL, iouv).tolist() == [[True, False, False], [False, False, False]]
    # one detection overlapping two labels keeps the higher-IoU label; the other label stays unmatched
    labels = torch.tensor([[0.0, 0, 0, 10, 10], [0.0, 0, 0, 10, 6]])  # IoU with det(10, 6): .6 and 1.0
    assert process_batch(torch.tensor([det(10, 6)]), labels, iouv).tolist() == [[True, True, True]]
    # two labels, two detections each on its own label -> both correct
    labels = torch.tensor([[0.0, 0, 0, 10, 10], [1.0, 20, 0, 30, 10]])
    dets = torch.tensor([det(30, 10, cls=1, x1=20), det(10, 10)])
    assert process_batch(dets, labels, iouv).all()


def test_confusion_matrix_hand_case(yolo_log):
    cm = ConfusionMatrix(nc=2)
    labels = torch.tensor([[0.0, 0, 0, 10, 10], [1.0, 20, 0, 30, 10], [1.0, 40, 0, 50, 10]])
    dets = torch.tensor([
        det(10, 10, conf=0.9, cls=0),  # on label 0, right class -> [0, 0]
        det(30, 10, conf=0.8, cls=0, x1=20),  # on label 1 (class 1) but predicted 0 -> [0, 1]
        det(90, 10, conf=0.7, cls=1, x1=80),  # on nothing -> background FP [1, 2]
        det(50, 10, conf=0.25, cls=1, x1=40),  # conf <= 0.25 is dropped -> label 2 is a background FN [2, 1]
    ])
    cm.process_batch(dets, labels)
    want = np.zeros((3, 3))
    want[0, 0] = want[0, 1] = want[1, 2] = want[2, 1] = 1
    assert np.array_equal(cm.matrix, want)
    cm.print()
    assert yolo_log[-3:] == ["1.0 1.0 0.0", "0.0 0.0 1.0", "0.0 1.0 0.0"]


def test_confusion_matrix_iou_strictly_greater():
    cm = ConfusionMatrix(nc=2)
    label = torch.tensor([[1.0, 0, 0, 20, 10]])  # area 200
    cm.process_batch(torch.tensor([det(9, 10, cls=1)]), label)  # IoU 90 / 200 = 0.45: no match
    want = np.zeros((3, 3))
    want[2, 1] = 1  # missed label; with no match at all the detection is not counted as background FP (v6.1)
    assert np.array_equal(cm.matrix, want)
    cm.process_batch(torch.tensor([det(9.2, 10, cls=1)]), label)  # IoU 0.46 > 0.45: matched
    want[1, 1] = 1
    assert np.array_equal(cm.matrix, want)


def test_confusion_matrix_plot(tmp_path):
    cm = ConfusionMatrix(nc=2)
    cm.process_batch(torch.tensor([det(10, 10)]), LABEL)
    cm.plot(save_dir=tmp_path, names=["a", "b"])
    assert (tmp_path / "confusion_matrix.png").stat().st_size > 0


# ------------------------------------------------------------------------------------------------------- misc
def test_class_and_image_weights():
    labels = [np.array([[0, 0.5, 0.5, 0.1, 0.1], [0, 0.2, 0.2, 0.1, 0.1]]), np.array([[2, 0.5, 0.5, 0.1, 0.1]])]
    w = labels_to_class_weights(labels, nc=3)  # counts [2, 0 -> 1, 1] -> 1/count = [.5, 1, 1] / 2.5
    assert torch.allclose(w, torch.tensor([0.2, 0.4, 0.4], dtype=w.dtype))
    assert labels_to_class_weights([None], nc=3).numel() == 0
    iw = labels_to_image_weights(labels, nc=3, class_weights=w.numpy())
    assert np.allclose(iw, [2 * 0.2, 0.4])
    assert np.allclose(labels_to_image_weights(labels, nc=80), [2, 1])  # default class weights: ones


def test_coco80_to_coco91():
    m = coco80_to_coco91_class()
    assert len(m) == 80 and m[:12] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13] and m[-1] == 90
