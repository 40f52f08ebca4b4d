"""ComputeLoss and its BCE variants against hand-computed values on a real yolov5n (nc=3)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import yaml

from models.yolo import Model
from tests.conftest import ROOT
from utils.iou import IOU_TYPES, ciou, eiou, giou, iou, siou
from utils.loss import BCEBlurWithLogitsLoss, BoxLoss, ComputeLoss, FocalLoss, QFocalLoss, put_last, smooth_BCE
from utils.metrics import bbox_iou

HYP = {"box": 0.05, "obj": 1.0, "cls": 0.5, "cls_pw": 1.0, "obj_pw": 1.0, "fl_gamma": 0.0, "anchor_t": 4.0,
       "label_smoothing": 0.0}
IMG = 64  # grids 8 x 8 (stride 8), 4 x 4, 2 x 2


@pytest.fixture(scope="module")
def model() -> Model:
    torch.manual_seed(0)
    m = Model(ROOT / "models" / "yolov5n.yaml", nc=3)
    m.hyp = dict(HYP)
    return m


def loss_for(model: Model, **hyp) -> ComputeLoss:
    model.hyp = {**HYP, **hyp}
    return ComputeLoss(model)


def zero_outputs(bs: int = 2, no: int = 8) -> list[torch.Tensor]:
    return [torch.zeros(bs, 3, IMG // s, IMG // s, no) for s in (8, 16, 32)]


def target(img: int, cls: int, gx: float, gy: float, gw: float = 0.4, gh: float = 0.5) -> list[float]:
    """A target row from P3 grid coordinates (8 x 8 grid); default size fits anchor 0 of P3 only."""
    return [img, cls, gx / 8, gy / 8, gw / 8, gh / 8]


# -------------------------------------------------------------------------------------------------- BCE pieces
def test_smooth_bce_and_focal_formulas():
    assert smooth_BCE(0.1) == pytest.approx((0.95, 0.05)) and smooth_BCE(0.0) == (1.0, 0.0)
    x = torch.tensor([0.5])
    p = 1 / (1 + math.exp(-0.5))
    fl = FocalLoss(nn.BCEWithLogitsLoss(), gamma=1.5, alpha=0.25)
    assert fl(x, torch.tensor([1.0])).item() == pytest.approx(-math.log(p) * 0.25 * (1 - p) ** 1.5, rel=1e-5)
    assert fl(x, torch.tensor([0.0])).item() == pytest.approx(-math.log(1 - p) * 0.75 * p ** 1.5, rel=1e-5)
    t = 0.3
    bce = -(t * math.log(p) + (1 - t) * math.log(1 - p))
    qfl = QFocalLoss(nn.BCEWithLogitsLoss(), gamma=1.5, alpha=0.25)
    assert qfl(x, torch.tensor([t])).item() == pytest.approx(bce * (t * 0.25 + 0.7 * 0.75) * abs(t - p) ** 1.5,
                                                             rel=1e-5)
    blur = BCEBlurWithLogitsLoss(alpha=0.05)
    assert blur(x, torch.tensor([t])).item() == pytest.approx(bce * (1 - math.exp((p - t - 1) / 0.0501)), rel=1e-5)
    # mean reduction of the wrapped criterion is kept
    xs, ts = torch.tensor([0.5, -1.0]), torch.tensor([1.0, 0.0])
    per = FocalLoss(nn.BCEWithLogitsLoss(reduction="none"))(xs, ts)
    assert fl(xs, ts).item() == pytest.approx(per.mean().item(), rel=1e-6)


def test_construction(model):
    cl = loss_for(model, fl_gamma=1.5, label_smoothing=0.1)
    assert isinstance(cl.BCEcls, FocalLoss) and isinstance(cl.BCEobj, FocalLoss)
    assert (cl.cp, cl.cn) == pytest.approx((0.95, 0.05))
    assert cl.balance == [4.0, 1.0, 0.4] and cl.ssi == 0 and cl.gr == 1.0 and cl.sort_obj_iou is False
    assert (cl.na, cl.nc, cl.nl) == (3, 3, 3)
    assert torch.allclose(cl.anchors[0], torch.tensor([[10, 13], [16, 30], [33, 23]]) / 8)  # grid units
    model.hyp = dict(HYP)
    assert ComputeLoss(model, autobalance=True).ssi == 1  # the stride-16 level


def test_explicit_hyp_wins_and_model_hyp_is_the_fallback(model):
    model.hyp = {**HYP, "obj": 0.7}
    explicit = ComputeLoss(model, hyp={**HYP, "obj": 0.3, "label_smoothing": 0.1})
    assert explicit.hyp["obj"] == 0.3 and (explicit.cp, explicit.cn) == pytest.approx((0.95, 0.05))
    assert ComputeLoss(model).hyp["obj"] == 0.7  # v6.1: the gains travel on the model
    assert ComputeLoss(nn.DataParallel(model)).hyp["obj"] == 0.7  # read through a DP wrapper
    items = explicit(zero_outputs(), torch.zeros(0, 6))[1]
    assert items[1].item() == pytest.approx(0.3 * (4.0 + 1.0 + 0.4) * math.log(2), rel=1e-6)
    bare = Model(ROOT / "models" / "yolov5n.yaml", nc=3)  # no .hyp and none given
    with pytest.raises(ValueError, match="hyp"):
        ComputeLoss(bare)
    assert ComputeLoss(bare, hyp=HYP, autobalance=True).ssi == 1
    model.hyp = dict(HYP)


# ----------------------------------------------------------------------------------------------- build_targets
def test_build_targets_own_and_nearer_neighbours(model):
    cl = loss_for(model)
    tcls, tbox, indices, anch = cl.build_targets(zero_outputs(), torch.tensor([target(1, 2, 2.4, 5.2)]))
    b, a, gj, gi = indices[0]
    # own cell (2, 5), left neighbour (frac x .4 < .5), upper neighbour (frac y .2 < .5); anchor 0 only
    assert gi.tolist() == [2, 1, 2] and gj.tolist() == [5, 5, 4]
    assert b.tolist() == [1, 1, 1] and a.tolist() == [0, 0, 0] and tcls[0].tolist() == [2, 2, 2]
    assert torch.allclose(tbox[0], torch.tensor([[0.4, 0.2, 0.4, 0.5], [1.4, 0.2, 0.4, 0.5], [0.4, 1.2, 0.4, 0.5]]),
                          atol=1e-5)
    assert torch.allclose(anch[0], torch.tensor([[1.25, 1.625]] * 3))
    assert all(len(x) == 0 for x in indices[1] + indices[2])  # ratio >= 4 to every P4/P5 anchor

    # right (frac x .6) and lower (frac y .7) neighbours
    _, tbox, indices, _ = cl.build_targets(zero_outputs(), torch.tensor([target(0, 0, 5.6, 3.7)]))
    b, a, gj, gi = indices[0]
    assert gi.tolist() == [5, 6, 5] and gj.tolist() == [3, 3, 4]
    assert torch.allclose(tbox[0][:, :2], torch.tensor([[0.6, 0.7], [-0.4, 0.7], [0.6, -0.3]]), atol=1e-5)


def test_build_targets_centre_at_half_and_edges(model):
    cl = loss_for(model)
    _, tbox, indices, _ = cl.build_targets(zero_outputs(), torch.tensor([target(0, 0, 4.5, 4.5)]))
    assert [x.tolist() for x in indices[0][2:]] == [[4], [4]]  # exactly .5: no neighbour on either axis
    # next to the image border: no neighbour outside (gx .4 and gy 7.6 -> only the own cell (0, 7))
    _, _, indices, _ = cl.build_targets(zero_outputs(), torch.tensor([target(0, 0, 0.4, 7.6)]))
    assert indices[0][3].tolist() == [0] and indices[0][2].tolist() == [7]
    # gx 1.3: left neighbour (cell 0); gx 0.4 would need cell -1 and has none; gx 0.9 is nearer its right neighbour
    ts = torch.tensor([target(0, 0, 1.3, 4.5), target(0, 0, 0.4, 4.5), target(0, 0, 0.9, 4.5)])
    gi = cl.build_targets(zero_outputs(), ts)[2][0][3]
    assert gi.tolist() == [1, 0, 0] + [0] + [1]  # own cells, then the j (left) row, then the l (right) row
    assert all(0 <= int(g) < 8 for x in cl.build_targets(zero_outputs(), ts)[2][0][2:] for g in x)


def test_build_targets_anchor_filter_and_order(model):
    t = torch.tensor([target(0, 1, 2.4, 5.2)])  # worst side ratio to P3 anchor 0 = 1.625 / 0.5 = 3.25
    assert len(loss_for(model, anchor_t=3.3).build_targets(zero_outputs(), t)[2][0][0]) == 3
    assert all(len(x[0]) == 0 for x in loss_for(model, anchor_t=3.2).build_targets(zero_outputs(), t)[2])
    # a 2 x 2.5 box fits all three P3 anchors; two targets: rows are offset-major, then anchor-major, then target
    ts = torch.tensor([target(0, 0, 4.5, 4.5, 2, 2.5), target(1, 1, 4.5, 4.5, 2, 2.5)])
    tcls, _, indices, anch = loss_for(model).build_targets(zero_outputs(), ts)
    b, a, _, _ = indices[0]
    assert a.tolist() == [0, 0, 1, 1, 2, 2] and b.tolist() == [0, 1] * 3 and tcls[0].tolist() == [0, 1] * 3
    assert torch.allclose(anch[0], torch.tensor([[1.25, 1.625]] * 2 + [[2, 3.75]] * 2 + [[4.125, 2.875]] * 2))


# --------------------------------------------------------------------------------------------------------- loss
def perfect_outputs(cl: ComputeLoss, targets: torch.Tensor, cls_logit: float = 0.0) -> list[torch.Tensor]:
    """Raw outputs whose boxes decode exactly to the matched targets (inverse of the box decoding)."""
    p = zero_outputs()
    _, tbox, indices, anch = cl.build_targets(p, targets)
    for i, (b, a, gj, gi) in enumerate(indices):
        sxy = (tbox[i][:, :2] + 0.5) / 2  # 2σ − 0.5 = xy
        swh = (tbox[i][:, 2:] / anch[i]).sqrt() / 2  # (2σ)² · anchor = wh
        p[i][b, a, gj, gi, :4] = torch.logit(torch.cat((sxy, swh), 1))
        p[i][b, a, gj, gi, 5:] = cls_logit
    return p


def test_perfect_boxes_give_zero_box_loss(model):
    cl = loss_for(model)
    targets = torch.tensor([target(0, 0, 2.4, 5.2), target(1, 2, 5.6, 3.7, 2, 2.5)])
    loss, items = cl(perfect_outputs(cl, targets), targets)
    assert items.shape == (3,) and loss.shape == (1,)
    assert items[0].item() < 1e-6  # lbox = box · mean(1 − CIoU)
    assert loss.item() == pytest.approx(items.sum().item() * 2, rel=1e-6)  # (lbox + lobj + lcls) · bs


def test_no_targets_objectness_balance(model):
    # zero logits, no targets: each level's BCE(0, 0) = ln 2, weighted 4.0, 1.0, 0.4; no box / class loss
    cl = loss_for(model, obj=0.7)
    loss, items = cl(zero_outputs(), torch.zeros(0, 6))
    assert items.tolist() == pytest.approx([0.0, 0.7 * (4.0 + 1.0 + 0.4) * math.log(2), 0.0], rel=1e-6)
    assert loss.item() == pytest.approx(2 * items[1].item(), rel=1e-6)


def test_class_targets_with_label_smoothing(model):
    cl = loss_for(model, label_smoothing=0.1, cls=0.5)
    targets = torch.tensor([target(0, 1, 4.5, 4.5)])  # one match (own cell only), class 1 of 3
    _, items = cl(perfect_outputs(cl, targets, cls_logit=2.0), targets)
    sp, sn = math.log(1 / (1 + math.exp(-2))), math.log(1 / (1 + math.exp(2)))  # log σ(2), log(1 − σ(2))
    pos = -(0.95 * sp + 0.05 * sn)  # smoothed positive target 0.95
    neg = -(0.05 * sp + 0.95 * sn)  # smoothed negative target 0.05
    assert items[2].item() == pytest.approx(0.5 * (pos + 2 * neg) / 3, rel=1e-5)
    cl.nc = 1  # single class: no classification term
    assert cl(perfect_outputs(cl, targets, cls_logit=2.0), targets)[1][2].item() == 0.0


def test_objectness_target_is_iou(model):
    # a perfect box has IoU 1 → objectness target 1 at its cell: BCE(0, 1) = ln 2 there, ln 2 elsewhere too
    cl = loss_for(model)
    targets = torch.tensor([target(0, 0, 4.5, 4.5)])
    p = perfect_outputs(cl, targets)
    b, a, gj, gi = cl.build_targets(p, targets)[2][0]
    p[0][b, a, gj, gi, 4] = 10.0  # confident objectness at the matched cell
    n0 = p[0][..., 4].numel()
    want = ((n0 - 1) * math.log(2) + math.log(1 + math.exp(-10))) / n0 * 4.0 + math.log(2) * (1.0 + 0.4)
    assert cl(p, targets)[1][1].item() == pytest.approx(want, rel=1e-5)


def test_gradients_flow_and_autobalance(model):
    model.train()
    model.hyp = dict(HYP)
    cl = ComputeLoss(model, autobalance=True)
    targets = torch.tensor([target(0, 0, 2.4, 5.2), target(1, 2, 5.6, 3.7, 2, 2.5)])
    model.zero_grad()
    loss, items = cl(model(torch.rand(2, 3, IMG, IMG)), targets)
    loss.backward()
    assert torch.isfinite(loss).all() and (items > 0).all()
    assert model.model[-1].m[0].weight.grad.abs().sum() > 0 and model.model[0].conv.weight.grad.abs().sum() > 0
    assert cl.balance[cl.ssi] == pytest.approx(1.0) and cl.balance != [4.0, 1.0, 0.4]
    model.zero_grad()


def test_objectness_targets_do_not_race_on_repeated_cells(model):
    """Tens of thousands of (image, anchor, cell) rows with repeats on 2 threads: every call gives the same loss.

    A plain ``tobj[b, a, gj, gi] = iou`` let parallel CPU threads race over which repeat wins, so identical
    same-seed runs gave different obj losses (then different weights and mAP).
    """
    g = torch.Generator().manual_seed(0)
    bs, nt = 64, 4000
    targets = torch.cat((torch.randint(0, bs, (nt, 1), generator=g).float(),
                         torch.randint(0, 3, (nt, 1), generator=g).float(),
                         0.05 + 0.9 * torch.rand(nt, 2, generator=g), 0.05 + 0.1 * torch.rand(nt, 2, generator=g)), 1)
    p = [torch.randn(bs, 3, IMG // s, IMG // s, 8, generator=g) for s in (8, 16, 32)]
    cl = loss_for(model)
    assert max(len(x[0]) for x in cl.build_targets(p, targets)[2]) > 15_000  # enough rows to run in parallel
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        first = cl(p, targets)[1]
        assert all(torch.equal(cl(p, targets)[1], first) for _ in range(30))
    finally:
        torch.set_num_threads(n)


def test_put_last_is_a_serial_index_put():
    g = torch.Generator().manual_seed(0)
    shape = (16, 3, 20, 20)
    for n in (0, 1, 50, 6000):
        idx = tuple(torch.randint(0, d, (n,), generator=g) for d in shape)
        v = torch.rand(n, generator=g)
        t = torch.zeros(shape)
        put_last(t, idx, v)
        ref = torch.zeros(shape)
        for k in range(n):  # the last write wins
            ref[idx[0][k], idx[1][k], idx[2][k], idx[3][k]] = v[k]
        assert torch.equal(t, ref)


# ---------------------------------------------------------------------------------------------- box loss variants
def boxes(n: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 4) xywh predictions and targets in grid units, overlapping or not."""
    g = torch.Generator().manual_seed(seed)
    p = torch.cat((torch.rand(n, 2, generator=g) * 2 - 0.5, torch.rand(n, 2, generator=g) * 4 + 0.1), 1)
    t = torch.cat((torch.rand(n, 2, generator=g) * 2 - 0.5, torch.rand(n, 2, generator=g) * 4 + 0.1), 1)
    return p, t


def test_default_box_loss_is_v61_ciou_bit_for_bit(model):
    """No iou_type, or iou_type CIoU: loss and gradients equal v6.1's ``1 − bbox_iou(pbox.T, tbox, CIoU=True)``."""
    p, t = boxes()
    p1, p2 = p.clone().requires_grad_(), p.clone().requires_grad_()
    v61 = bbox_iou(p1.T, t, x1y1x2y2=False, CIoU=True)
    loss, score = BoxLoss({})(p2, t)
    assert torch.equal(loss, 1.0 - v61) and torch.equal(score, v61)
    (1.0 - v61).mean().backward()
    loss.mean().backward()
    assert torch.equal(p1.grad, p2.grad)
    targets = torch.tensor([target(0, 0, 2.4, 5.2), target(1, 2, 5.6, 3.7, 2, 2.5)])
    out = [torch.randn(2, 3, IMG // s, IMG // s, 8, generator=torch.Generator().manual_seed(s)) for s in (8, 16, 32)]
    a, b = loss_for(model)(out, targets), loss_for(model, iou_type="CIoU")(out, targets)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    model.hyp = dict(HYP)


def test_objectness_target_of_each_type():
    """CIoU, GIoU, DIoU, SIoU, EIoU: the variant's own value; AlphaIoU: the CIoU value; WIoU: the plain IoU."""
    p, t = boxes()
    want = {"CIoU": ciou, "GIoU": giou, "DIoU": lambda a, b: bbox_iou(a.T, b, x1y1x2y2=False, DIoU=True),
            "SIoU": siou, "EIoU": eiou, "AlphaIoU": ciou, "WIoU": iou}
    assert set(want) == set(IOU_TYPES)
    for name, fn in want.items():
        assert torch.allclose(BoxLoss({"iou_type": name})(p, t)[1], fn(p, t), atol=1e-6), name


def test_focal_eiou_weights_by_iou_power():
    p, t = boxes()
    loss = BoxLoss({"iou_type": "EIoU", "iou_gamma": 0.5})(p, t)[0]
    assert torch.allclose(loss, iou(p, t).clamp(0) ** 0.5 * (1 - eiou(p, t)), atol=1e-6)
    assert torch.allclose(BoxLoss({"iou_type": "eiou"})(p, t)[0], 1 - eiou(p, t))  # γ = 0: plain EIoU


@pytest.mark.parametrize("iou_type", IOU_TYPES)
def test_every_type_trains(model, iou_type):
    """Perfect boxes give no box loss; a real forward gives a finite loss and gradients to the first layer."""
    cl = loss_for(model, iou_type=iou_type)
    targets = torch.tensor([target(0, 0, 2.4, 5.2), target(1, 2, 5.6, 3.7, 2, 2.5)])
    assert cl(perfect_outputs(cl, targets), targets)[1][0].item() < 1e-6
    model.train()
    model.zero_grad()
    loss, items = cl(model(torch.rand(2, 3, IMG, IMG)), targets)
    loss.backward()
    assert torch.isfinite(loss).all() and (items > 0).all()
    assert torch.isfinite(model.model[0].conv.weight.grad).all() and model.model[0].conv.weight.grad.abs().sum() > 0
    model.zero_grad()
    model.hyp = dict(HYP)


def test_unknown_iou_type_is_an_error(model):
    with pytest.raises(ValueError, match="valid names are GIoU, DIoU, CIoU, SIoU, EIoU, AlphaIoU, WIoU"):
        loss_for(model, iou_type="FooIoU")
    model.hyp = dict(HYP)


def test_wiou_running_mean_momentum_and_state():
    p, t = boxes()
    assert BoxLoss({"iou_type": "WIoU"}, nb=20).momentum == pytest.approx(1 - 0.05 ** (1 / 20))  # 5% after nb
    assert BoxLoss({"iou_type": "WIoU"}).momentum == 0.01
    bl = BoxLoss({"iou_type": "WIoU", "wiou_momentum": 0.1}, nb=20)
    assert bl.momentum == 0.1 and bl.state_dict() == {"iou_type": "WIoU", "wiou_mean": 1.0}
    l_iou = 1 - iou(p, t)
    with torch.no_grad():  # validation: no update
        bl(p, t)
    bl.step()
    assert float(bl.mean) == 1.0
    loss = bl(p[:40], t[:40])[0]  # one batch over two levels: the mean of all its boxes
    bl(p[40:], t[40:])
    beta = l_iou[:40] / 1.0  # β with the mean before this batch
    wiou_r = torch.exp(((p[:40, :2] - t[:40, :2]) ** 2).sum(1) / (  # R = exp(ρ² / (Cw² + Ch²))
        (torch.max(p[:40, :2] + p[:40, 2:] / 2, t[:40, :2] + t[:40, 2:] / 2) -
         torch.min(p[:40, :2] - p[:40, 2:] / 2, t[:40, :2] - t[:40, 2:] / 2)) ** 2).sum(1))
    assert torch.allclose(loss, beta / (3 * 1.9 ** (beta - 3)) * wiou_r * l_iou[:40], rtol=1e-5)
    bl.step()
    assert float(bl.mean) == pytest.approx(0.9 * 1.0 + 0.1 * l_iou.mean().item(), rel=1e-6)
    state = bl.state_dict()
    fresh = BoxLoss({"iou_type": "WIoU"})
    fresh.load_state_dict(None)  # a v6.1 checkpoint: nothing to restore
    fresh.load_state_dict({"iou_type": "WIoU"})
    assert float(fresh.mean) == 1.0
    fresh.load_state_dict(state)
    assert float(fresh.mean) == pytest.approx(state["wiou_mean"])
    other = BoxLoss({"iou_type": "SIoU"})
    other.load_state_dict(state)  # another type's state is ignored
    assert other.state_dict() == {"iou_type": "SIoU"}


def test_wiou_mean_is_saved_and_restored_on_resume(tiny_data, tmp_path, monkeypatch):
    """train.py writes the running mean into last.pt ("loss_state") and --resume gives it back to the loss."""
    import train
    from models.experimental import safe_classes
    from utils.callbacks import Callbacks
    from utils.checkpoint import load_checkpoint

    hyp = yaml.safe_load((ROOT / "data/hyps/hyp.scratch-low.yaml").read_text())
    (tmp_path / "hyp.yaml").write_text(yaml.safe_dump({**hyp, "iou_type": "wiou"}))
    opt = train.parse_opt(True)
    for k, v in dict(weights="", cfg=str(ROOT / "models/yolov5n.yaml"), data=str(tiny_data), imgsz=64, batch_size=16,
                     epochs=2, workers=0, device="cpu", project=str(tmp_path), name="w",
                     hyp=str(tmp_path / "hyp.yaml")).items():
        setattr(opt, k, v)
    cb = Callbacks()  # stop after epoch 0's checkpoint: last.pt stays resumable
    cb.register_action("on_model_save", "stop", lambda *a: setattr(cb, "stop_training", True))
    train.main(opt, cb)
    last = tmp_path / "w" / "weights" / "last.pt"
    saved = load_checkpoint(last, allowed=safe_classes())
    assert saved["epoch"] == 0 and saved["loss_state"]["iou_type"] == "WIoU"
    assert 0 < saved["loss_state"]["wiou_mean"] < 1  # it moved from its initial 1
    assert yaml.safe_load((tmp_path / "w" / "hyp.yaml").read_text())["iou_type"] == "WIoU"  # canonical name

    restored = []
    real = BoxLoss.load_state_dict
    monkeypatch.setattr(BoxLoss, "load_state_dict", lambda self, st: (real(self, st), restored.append(float(self.mean))))
    train.run(resume=str(last))
    assert restored == [pytest.approx(saved["loss_state"]["wiou_mean"])]
