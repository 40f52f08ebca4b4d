"""Model core against YOLOv5 v6.1: layer table, parameter counts, summary line, fusing, strides."""

from __future__ import annotations

import math

import pytest
import torch

from models.yolo import Detect, Model
from tests.conftest import ROOT

MODELS = ROOT / "models"

# YOLOv5 v6.1's numbers: (layers, params, fused layers, fused params) for yamls cheap enough to build in a test
TOTALS = {
    "yolov5n.yaml": (270, 1872157, 213, 1867405),
    "yolov5s.yaml": (270, 7235389, 213, 7225885),
    "hub/yolov5n6.yaml": (355, 3246940, 280, 3239884),
    "hub/yolov5-p34.yaml": (241, 5331518, 190, 5323806),
    "hub/yolov5s-ghost.yaml": (453, 3897605, 366, 3888789),
    "hub/yolov5s-transformer.yaml": (271, 7235645, 216, 7226653),
    "hub/yolov3-tiny.yaml": (59, 8852366, 48, 8849182),
}

# YOLOv5 v6.1's yolov5s layer table (index, from, n, params, module, arguments)
YOLOV5S_TABLE = """\
0 -1 1 3520 models.common.Conv [3, 32, 6, 2, 2]
1 -1 1 18560 models.common.Conv [32, 64, 3, 2]
2 -1 1 18816 models.common.C3 [64, 64, 1]
3 -1 1 73984 models.common.Conv [64, 128, 3, 2]
4 -1 2 115712 models.common.C3 [128, 128, 2]
5 -1 1 295424 models.common.Conv [128, 256, 3, 2]
6 -1 3 625152 models.common.C3 [256, 256, 3]
7 -1 1 1180672 models.common.Conv [256, 512, 3, 2]
8 -1 1 1182720 models.common.C3 [512, 512, 1]
9 -1 1 656896 models.common.SPPF [512, 512, 5]
10 -1 1 131584 models.common.Conv [512, 256, 1, 1]
11 -1 1 0 torch.nn.modules.upsampling.Upsample [None, 2, 'nearest']
12 [-1, 6] 1 0 models.common.Concat [1]
13 -1 1 361984 models.common.C3 [512, 256, 1, False]
14 -1 1 33024 models.common.Conv [256, 128, 1, 1]
15 -1 1 0 torch.nn.modules.upsampling.Upsample [None, 2, 'nearest']
16 [-1, 4] 1 0 models.common.Concat [1]
17 -1 1 90880 models.common.C3 [256, 128, 1, False]
18 -1 1 147712 models.common.Conv [128, 128, 3, 2]
19 [-1, 14] 1 0 models.common.Concat [1]
20 -1 1 296448 models.common.C3 [256, 256, 1, False]
21 -1 1 590336 models.common.Conv [256, 256, 3, 2]
22 [-1, 10] 1 0 models.common.Concat [1]
23 -1 1 1182720 models.common.C3 [512, 512, 1, False]
24 [17, 20, 23] 1 229245 models.yolo.Detect \
[80, [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]], [128, 256, 512]]"""


@pytest.fixture(scope="module")
def yolov5s():
    return Model(MODELS / "yolov5s.yaml")


def test_yolov5s_layer_table(yolo_log):
    Model(MODELS / "yolov5s.yaml")
    header = next(i for i, line in enumerate(yolo_log) if line.split() == ["from", "n", "params", "module", "arguments"])
    assert yolo_log[header] == f"{'':>3}{'from':>18}{'n':>3}{'params':>10}  {'module':<40}{'arguments':<30}"
    rows = [" ".join(line.split()) for line in yolo_log[header + 1: header + 26]]
    assert rows == YOLOV5S_TABLE.splitlines()
    # column layout: index 3 wide, from 18, n 3, params 10, two spaces, module 40
    assert yolo_log[header + 13] .startswith(" 12           [-1, 6]  1         0  models.common.Concat")


def test_yolov5s_summary_and_fused_summary(yolov5s):
    # GFLOPs as thop 0.1.1.post2209072238 counts them (the acceptance value)
    assert yolov5s.info() == "Model Summary: 270 layers, 7235389 parameters, 7235389 gradients, 16.6 GFLOPs"
    import copy

    fused = copy.deepcopy(yolov5s).fuse()
    # fused convs carry no gradients; the Detect convs (229245 parameters) still do
    assert fused.info().startswith("Model Summary: 213 layers, 7225885 parameters, 229245 gradients")


def test_yolov5s_save_list_strides_anchors(yolov5s):
    assert yolov5s.save == [4, 6, 10, 14, 17, 20, 23]
    assert yolov5s.stride.tolist() == [8.0, 16.0, 32.0]
    expected = torch.tensor([[[1.25, 1.625], [2, 3.75], [4.125, 2.875]],
                             [[1.875, 3.8125], [3.875, 2.8125], [3.6875, 7.4375]],
                             [[3.625, 2.8125], [4.875, 6.1875], [11.65625, 10.1875]]])
    assert torch.equal(yolov5s.model[-1].anchors, expected)  # v6.1's anchors, in grid units
    assert yolov5s.names == [str(i) for i in range(80)] and yolov5s.yaml["ch"] == 3 and yolov5s.yaml_file == "yolov5s.yaml"


def test_bias_init_priors(yolov5s):
    # v6.1's bias priors: + ln(8/(640/s)^2) on objectness, + ln(0.6/(nc-0.999999)) on classes, over a U(±1/sqrt(fan_in)) init
    det = yolov5s.model[-1]
    for conv, s, obj in zip(det.m, (8, 16, 32), (-6.6846, -5.2983, -3.9120)):
        b = conv.bias.detach().view(det.na, -1)
        bound = 1 / math.sqrt(conv.in_channels)
        assert (b[:, 4] - obj).abs().max() <= bound + 1e-3
        assert (b[:, 5:] + 4.8803).abs().max() <= bound + 1e-3


def test_bn_init_and_probe_side_effect(yolov5s):
    bn = yolov5s.model[0].bn
    assert bn.eps == 1e-3 and bn.momentum == 0.03
    assert int(bn.num_batches_tracked) == 1  # the stride probe ran once in training mode


def test_detect_eval_output_rows_and_decoding(yolov5s):
    m = yolov5s.eval()
    with torch.no_grad():
        y, raw = m(torch.zeros(1, 3, 320, 256))
    assert y.shape == (1, 3 * (40 * 32 + 20 * 16 + 10 * 8), 85)
    assert [tuple(r.shape) for r in raw] == [(1, 3, 40, 32, 85), (1, 3, 20, 16, 85), (1, 3, 10, 8, 85)]
    # decode a raw level by hand: xy = (2σ - 0.5 + grid)·stride, wh = (2σ)²·anchor_px, row order anchor,y,x
    p = raw[1].sigmoid()
    a, gy, gx = 2, 5, 7
    row = 3 * 40 * 32 + a * 20 * 16 + gy * 16 + gx
    exp_xy = (p[0, a, gy, gx, :2] * 2 - 0.5 + torch.tensor([gx, gy])) * 16
    exp_wh = (p[0, a, gy, gx, 2:4] * 2) ** 2 * torch.tensor([59.0, 119.0])
    torch.testing.assert_close(y[0, row, :2], exp_xy)
    torch.testing.assert_close(y[0, row, 2:4], exp_wh)
    torch.testing.assert_close(y[0, row, 4:], p[0, a, gy, gx, 4:])
    m.train()


def test_detect_inplace_false_matches_inplace(yolov5s):
    m = yolov5s.eval()
    x = torch.rand(1, 3, 128, 160)
    with torch.no_grad():
        a = m(x)[0]
        m.model[-1].inplace = False
        b = m(x)[0]
        m.model[-1].inplace = True
    torch.testing.assert_close(a, b)
    m.train()


def test_tta_output_shape(yolov5s):
    m = yolov5s.eval()
    with torch.no_grad():
        y, none = m(torch.rand(1, 3, 256, 256), augment=True)
    assert none is None and y.ndim == 3 and y.shape[-1] == 85
    # 3 scales minus the clipped levels: 256 -> 4032 rows, 0.83 -> 224 px (3087), 0.67 -> 192 px (2268)
    assert y.shape[1] == (4032 - 4032 // 21) + 3087 + (2268 - 2268 // 21 * 16)
    m.train()


@pytest.mark.parametrize("name", list(TOTALS))
def test_totals_and_fused_totals(name):
    layers, params, f_layers, f_params = TOTALS[name]
    m = Model(MODELS / name)
    assert len(list(m.modules())) == layers
    assert sum(p.numel() for p in m.parameters()) == params
    m.fuse()
    assert len(list(m.modules())) == f_layers
    assert sum(p.numel() for p in m.parameters()) == f_params


def test_fuse_keeps_outputs(yolov5s):
    import copy

    m = copy.deepcopy(yolov5s).eval()
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        a = m(x)[0]
        b = m.fuse()(x)[0]
    torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-4)


def test_integer_anchors_and_p2_strides():
    m = Model(MODELS / "hub" / "yolov5-p34.yaml")
    assert m.stride.tolist() == [8.0, 16.0]
    det = m.model[-1]
    assert det.na == 3 and det.nl == 2
    assert torch.equal(det.anchors[0] * 8, torch.tensor([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]))  # placeholders


def test_nc_and_anchor_override(yolo_log):
    m = Model(MODELS / "yolov5n.yaml", nc=3, anchors=2)
    assert m.yaml["nc"] == 3 and m.model[-1].no == 8 and m.model[-1].na == 2
    assert "Overriding model.yaml nc=80 with nc=3" in yolo_log


def test_contract_expand_layout():
    from models.common import Contract, Expand

    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float).view(2, 3, 4, 6)
    y = Contract(2)(x)
    assert y.shape == (2, 12, 2, 3)
    # channel = (row_phase*2 + col_phase)*c + c_in: row phase 1, col phase 0, input channel 2 -> channel 8
    assert torch.equal(y[:, 8], x[:, 2, 1::2, 0::2])
    assert torch.equal(Expand(2)(y), x)


def test_sppf_equals_spp():
    from models.common import SPP, SPPF

    torch.manual_seed(0)
    a, b = SPP(8, 8, (5, 9, 13)).eval(), SPPF(8, 8, 5).eval()
    b.load_state_dict(a.state_dict(), strict=False)  # same cv1/cv2 names and shapes
    b.cv2.load_state_dict(a.cv2.state_dict())
    x = torch.rand(1, 8, 20, 20)
    torch.testing.assert_close(a(x), b(x))


@pytest.mark.parametrize("cfg", ["yolov5n-NAM.yaml", "yolov5n-SimAM.yaml", "yolov5n-CoTA.yaml", "yolov5n-CotLayer.yaml",
                                 "yolov5s-CotLayer.yaml"])
def test_attention_configs_build_train_and_eval(cfg):
    m = Model(MODELS / cfg)  # includes the batch-1 training-mode stride probe
    assert m.stride.tolist() == [8.0, 16.0, 32.0]
    out = m(torch.rand(2, 3, 64, 96))
    assert [tuple(t.shape[2:4]) for t in out] == [(8, 12), (4, 6), (2, 3)]
    sum(t.sum() for t in out).backward()
    assert all(p.grad is not None for p in m.parameters())
    with torch.no_grad():
        y = m.eval()(torch.rand(1, 3, 64, 96))[0]
    assert y.shape == (1, 3 * (96 + 24 + 6), 85) and torch.isfinite(y).all()
