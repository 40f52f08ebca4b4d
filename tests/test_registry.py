"""The registry: a module defined here builds from a yaml line with no change anywhere else; argument rules."""

from __future__ import annotations

import torch
import torch.nn as nn
import yaml

from models import registry
from models.attention import Attention
from models.yolo import Model
from tests.conftest import ROOT


def test_new_attention_module_registered_in_a_test_builds_from_yaml(tmp_path):
    class GateForTest(Attention):  # subclassing registers it
        """Channel gate used only by this test."""

        def __init__(self, c1: int, scale: float = 1.0, bias: bool = True):
            super().__init__()
            self.c1, self.scale, self.bias_on = c1, scale, bias
            self.w = nn.Parameter(torch.zeros(c1))

        def forward(self, x):
            return x * torch.sigmoid(self.w.view(1, -1, 1, 1) * self.scale)

        def functional_flops(self, inputs, output):
            return 2 * output.numel()

    try:
        d = yaml.safe_load((ROOT / "models" / "yolov5n.yaml").read_text())
        d["head"].insert(14, [-1, 1, "GateForTest", [1024, 0.5, {"bias": False}]])  # after layer 23
        d["head"][-1][0] = [17, 20, 24]
        f = tmp_path / "gate.yaml"
        f.write_text(yaml.safe_dump(d, sort_keys=False))
        m = Model(f)
        gate = m.model[24]
        assert isinstance(gate, GateForTest) and gate.c1 == 256 and gate.scale == 0.5 and gate.bias_on is False
        assert m.model[25].f == [17, 20, 24]
        assert sum(p.numel() for p in m.parameters()) == 1872157 + 256
        assert m.model[-1].m[2].in_channels == 256
        y = m(torch.zeros(1, 3, 64, 64))
        assert [t.shape[2] for t in y] == [8, 4, 2]
    finally:
        registry.unregister("GateForTest")


def _ctx(args, c_in=(64,), gw=0.25):
    return registry.LayerContext(list(c_in), list(args), 1, gw, 255, "X", 3)


def test_attention_rule_arguments():
    la = registry.attention(_ctx([256, 0.1]))  # nominal 256*0.25 = 64 matches, then an option
    assert la.args == [64, 0.1] and la.c2 == 64 and la.kwargs == {}
    la = registry.attention(_ctx([]))
    assert la.args == [64]
    la = registry.attention(_ctx([0.1]))  # a float never lands in the channel slot
    assert la.args == [64, 0.1]
    la = registry.attention(_ctx([{"e_lambda": 0.1}]))
    assert la.args == [64] and la.kwargs == {"e_lambda": 0.1}


def test_conv_rules_scale_and_keep_detect_channel_count():
    assert registry.conv(_ctx([1024, 3, 2])).args == [64, 256, 3, 2]
    assert registry.conv(_ctx([255, 1])).args == [64, 255, 1]  # equal to na*(nc+5): left unscaled
    la = registry.conv_repeat(registry.LayerContext([64], [512, False], 3, 0.5, 255, "C3", 4))
    assert la.args == [64, 256, 3, False] and la.n == 1


def test_names_resolve_and_suggest():
    assert registry.resolve("simam_module").cls is registry.resolve("SimAM").cls
    assert registry.resolve("nn.Upsample").cls is nn.Upsample
    assert "SimAM" in registry.closest("simam")
    assert {"NAMAttention", "SimAM", "CoTAttention", "CotLayer"} <= {c.__name__ for c in registry.classes("attention")}


def test_common_reexports_for_old_pickles():
    import models.common as common

    for name in ("NAMAttention", "Channel_Att", "simam_module", "SimAM", "CoTAttention"):
        assert hasattr(common, name)
