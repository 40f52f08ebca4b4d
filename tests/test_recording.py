"""utils/recording.py (Recorder), Model.record, and the attention-layer finder the latency benchmark uses."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from models.attention.nam import NAMAttention
from models.attention.simam import SimAM
from models.attention_vis import attention_layers
from models.yolo import Model, _layer_input
from tests.conftest import ROOT, benchmark_script
from utils.recording import Recorder

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one intra-op thread

# a tiny model whose attention row repeats its module (n: 2 at depth 1.0 -> an nn.Sequential of two)
REPEATED = {"nc": 3, "depth_multiple": 1.0, "width_multiple": 0.25, "anchors": [[10, 13, 16, 30, 33, 23]],
            "backbone": [[-1, 1, "Conv", [64, 6, 2, 2]],  # 0
                         [-1, 1, "Conv", [128, 3, 2]],  # 1
                         [-1, 2, "NAMAttention", [128]],  # 2: two NAMAttention in a row
                         [-1, 1, "Conv", [256, 3, 2]]],  # 3
            "head": [[[3], 1, "Detect", ["nc", "anchors"]]]}


def latency_module():
    """benchmarks/latency.py as a module."""
    return benchmark_script("latency", "latency")


@pytest.fixture(scope="module")
def yolov5n() -> Model:
    torch.manual_seed(0)
    return Model(ROOT / "models" / "yolov5n-NAM.yaml", nc=3).eval()


def no_hooks(*modules: nn.Module) -> bool:
    return not any(m._forward_hooks or m._forward_pre_hooks for m in modules)


def test_records_equal_a_manual_forward(yolov5n):
    model, x = yolov5n, torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        with model.record() as rec:
            out = model(x)
        # the same forward by hand, keeping every layer's input (copied before the call) and output
        y, xi, manual = [], x, {}
        for m in model.model:
            xi = _layer_input(m, xi, y)
            inp = [t.clone() for t in xi] if isinstance(xi, list) else xi.clone()  # Detect rewrites its list
            xi = m(xi)
            manual[m.i] = (inp, xi)
            y.append(xi if m.i in model.save else None)
    assert len(rec) == len(model.model) and [r.index for r in rec] == list(range(len(model.model)))
    for i, (inp, o) in manual.items():
        r = rec[i]
        assert r.module is model.model[i] and len(r.inputs) == 1
        if isinstance(inp, list):  # Concat and Detect get a list; Detect's own list was rewritten in place
            assert len(r.inputs[0]) == len(inp) and all(torch.equal(a, b) for a, b in zip(r.inputs[0], inp))
        else:
            assert torch.equal(r.inputs[0], inp)
        if isinstance(o, tuple):  # Detect in eval mode: (decoded, per-level maps)
            assert torch.equal(r.output[0], o[0]) and all(torch.equal(a, b) for a, b in zip(r.output[1], o[1]))
        else:
            assert torch.equal(r.output, o)
    assert torch.equal(rec[len(model.model) - 1].output[0], out[0])
    assert no_hooks(*model.model)


def test_only_the_first_call_is_kept_until_reset():
    lin = nn.Linear(3, 2)
    a, b, c = torch.ones(1, 3), torch.full((1, 3), 2.0), torch.full((1, 3), 3.0)
    with Recorder([(5, lin)]) as rec:
        out_a = lin(a)
        lin(b)  # a second call (TTA): ignored
        assert torch.equal(rec[5].inputs[0], a) and torch.equal(rec[5].output, out_a.detach())
        rec.reset()
        lin(c)
        lin(a)
        assert torch.equal(rec[5].inputs[0], c)
    x = torch.ones(1, 3)
    with Recorder([(5, lin)]) as rec2:
        y = lin(x)
        x.mul_(7)  # in-place changes after the call do not reach the record
        y.data.zero_()
    assert torch.equal(rec2[5].inputs[0], torch.ones(1, 3)) and rec2[5].output.abs().sum() > 0
    with pytest.raises(KeyError, match="layer 4 is not recorded"):
        rec2[4]
    with Recorder([(0, nn.Identity()), (1, lin)]) as rec3:
        lin(x)
    with pytest.raises(KeyError, match="layer 0 did not run"):
        rec3[0]
    with pytest.raises(ValueError, match="each layer index once"):
        Recorder([(1, lin), (1, nn.Identity())])


def test_grad_equals_autograd_grad_and_keeps_the_graph():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.SiLU(), nn.Conv2d(4, 2, 1))
    x = torch.randn(2, 3, 5, 5)
    h = net[1](net[0](x))  # the manual forward
    loss = net[2](h).square().sum()
    g_h, g_w = torch.autograd.grad(loss, (h, net[0].weight))
    with Recorder([(1, net[1])], grad=True) as rec:
        loss2 = net(x).square().sum()
    assert rec[1].grad is None  # no backward yet
    loss2.backward()
    torch.testing.assert_close(rec[1].grad, g_h)
    torch.testing.assert_close(rec[1].output, h.detach())
    torch.testing.assert_close(net[0].weight.grad, g_w)  # upstream still in the graph: parameters get gradients

    for p in net.parameters():  # frozen parameters and an input without gradients: the output becomes the leaf
        p.requires_grad_(False)
        p.grad = None
    with Recorder([(1, net[1])], grad=True) as rec:
        net(x).square().sum().backward()
    torch.testing.assert_close(rec[1].grad, g_h)
    assert all(p.grad is None for p in net.parameters())

    with torch.no_grad(), Recorder([(1, net[1])], grad=True) as rec:
        net(x)  # autograd off: nothing to record, and nothing breaks
    assert rec[1].grad is None and rec[1].output.shape == (2, 4, 5, 5)


def test_hooks_removed_on_exit_and_on_exception():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    with Recorder(list(enumerate(net)), grad=True) as rec:
        assert not no_hooks(*net)
        net(torch.rand(1, 3, 5, 5))
    assert no_hooks(*net) and len(rec) == 2  # records outlive the block
    with pytest.raises(RuntimeError):
        with Recorder(list(enumerate(net))) as rec:
            net(torch.rand(1, 5, 5, 5))  # wrong channel count: the conv raises
    assert no_hooks(*net) and len(rec) == 0
    r = Recorder([(0, net[0])])
    with r:
        with pytest.raises(RuntimeError, match="already recording"):
            r.open()
    assert no_hooks(*net)


def test_model_record_on_a_yolov5n_style_model(yolov5n):
    model = yolov5n
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        with model.record([17, 20, 23]) as rec:
            model(x)
        with model.record([17, 23]) as tta:
            model(x, augment=True)  # three passes: the first (un-augmented) one is kept
    assert sorted(r.index for r in rec) == [17, 20, 23]
    assert rec[17].output.shape == (1, 64, 8, 8) and rec[23].output.shape == (1, 256, 2, 2)
    assert rec[17].inputs[0].shape[1] == 128 and rec[17].module is model.model[17]
    torch.testing.assert_close(tta[17].output, rec[17].output)
    torch.testing.assert_close(tta[23].output, rec[23].output)
    assert no_hooks(*model.model)
    assert "Example" in Model.record.__doc__


def test_latency_finder_counts_a_repeated_attention_row():
    torch.manual_seed(0)
    model = Model(REPEATED).eval()
    row = model.model[2]
    assert isinstance(row, nn.Sequential) and len(row) == 2 and all(isinstance(m, NAMAttention) for m in row)
    assert attention_layers(model) == [(2, row)]
    if hasattr(model, "graph"):
        assert [s.index for s in model.graph.sites("attention")] == [2]
    latency = latency_module()
    calls = []
    row.register_forward_pre_hook(lambda m, inp: calls.append(inp[0].shape))
    try:
        ms = latency.attention_ms(model, 64, runs=2)
    finally:
        row._forward_pre_hooks.clear()
    assert ms > 0 and calls and set(calls) == {torch.Size([1, 32, 16, 16])}  # timed at its real input shape
    # a module that is not a YOLOv5 Model: the generic finder, by registered class
    net = nn.Sequential(nn.Conv2d(3, 8, 1), nn.Sequential(SimAM(8), SimAM(8)), NAMAttention(8), nn.ReLU())
    assert [i for i, _ in attention_layers(net)] == [1, 2]
