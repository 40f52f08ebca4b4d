"""The attention base class: subclassing registers a yaml layer; default methods; the L1 regulariser hook."""

from __future__ import annotations

from typing import Iterator

import pytest
import torch
import torch.nn as nn
import yaml

import models.attention
import models.common
from models import registry
from models.attention import Attention, AttentionMap
from models.yolo import Model
from tests.conftest import ROOT
from utils.attention_maps import CHANNEL_GAIN, SPATIAL_GAIN, gain_maps, layer_maps
from utils.flops import count_macs
from utils.regularizers import L1Regularizer

YOLOV5N_PARAMS = 1872157  # yolov5n.yaml at nc 80


@pytest.fixture
def my_att() -> Iterator[type]:
    """A brand-new attention module, defined by subclassing alone; unregistered afterwards."""

    class MyAtt(Attention):
        """Per-channel gate times a 1×1 spatial gate, with one parameter under the L1 penalty."""

        def __init__(self, c1: int, scale: float = 1.0) -> None:
            super().__init__()
            self.scale = scale
            self.gate = nn.Parameter(torch.linspace(-1.0, 1.0, c1))  # mixed signs, none zero for even c1
            self.spatial = nn.Conv2d(c1, 1, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            c = torch.sigmoid(self.gate * self.scale).view(1, -1, 1, 1)  # (C,) -> (1, C, 1, 1)
            return x * c * torch.sigmoid(self.spatial(x))

        def regularized_parameters(self) -> list[nn.Parameter]:
            return [self.gate]

    try:
        yield MyAtt
    finally:
        registry.unregister("MyAtt")


@pytest.fixture
def bare_att() -> Iterator[type]:
    """The smallest subclass: a constructor and a forward, every other method the default."""

    class BareAtt(Attention):
        def __init__(self, c1: int) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.full((c1,), 0.5))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.w.view(1, -1, 1, 1)  # (C,) -> (1, C, 1, 1)

    try:
        yield BareAtt
    finally:
        registry.unregister("BareAtt")


# ----------------------------------------------------------------------------------------- (a) registration
def test_subclass_alone_builds_from_a_yaml_row(my_att):
    spec = registry.resolve("MyAtt")
    assert spec.cls is my_att and spec.kind == "attention" and spec.rule is registry.attention
    d = yaml.safe_load((ROOT / "models" / "yolov5n.yaml").read_text())
    d["head"].insert(len(d["head"]) - 1, [-1, 1, "MyAtt", [1024, {"scale": 2.0}]])  # layer 24, before Detect
    d["head"][-1][0] = [17, 20, 24]  # Detect takes P5 from the new layer
    m = Model(d)
    att = m.model[24]
    assert isinstance(att, my_att) and isinstance(att, Attention) and att.scale == 2.0
    c = 256  # 1024 nominal × width 0.25
    assert att.gate.shape == (c,)
    assert sum(p.numel() for p in att.parameters()) == c + (c + 1)  # gate; 1×1 conv C -> 1 with bias
    assert sum(p.numel() for p in m.parameters()) == YOLOV5N_PARAMS + c + c + 1
    y = m(torch.zeros(1, 3, 64, 64))
    assert [t.shape[2] for t in y] == [8, 4, 2]


def test_aliases_keyword_and_redefinition():
    def define() -> type:
        class AliasedAtt(Attention, aliases=("AliasedAttShort",)):
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return x

        return AliasedAtt

    try:
        first = define()
        assert registry.resolve("AliasedAtt").cls is first and registry.resolve("AliasedAttShort").cls is first
        second = define()  # the same qualified name again (a module imported twice): replaces the entry
        assert second is not first
        assert registry.resolve("AliasedAtt").cls is second and registry.resolve("AliasedAttShort").cls is second
    finally:
        registry.unregister("AliasedAtt")
        registry.unregister("AliasedAttShort")


def test_a_taken_name_is_refused_at_class_creation():
    with pytest.raises(ValueError, match="'SimAM' is already registered"):
        class SimAM(Attention):  # another class under a registered name
            pass
    assert registry.resolve("SimAM").cls is models.attention.SimAM


# ----------------------------------------------------------------------------------------- (b) L1 penalty
def test_l1_regularizer_changes_exactly_the_regularized_gradients(my_att):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), my_att(8), nn.Conv2d(8, 4, 1))
    model(torch.randn(2, 3, 6, 6)).square().mean().backward()
    gate = model[1].gate
    assert model[1].regularized_parameters() == [gate]
    before = {name: p.grad.clone() for name, p in model.named_parameters()}
    strength = 1e-3
    reg = L1Regularizer(strength)
    reg(model, None)
    assert reg.touched == 1
    for name, p in model.named_parameters():
        if p is gate:
            assert torch.equal(p.grad, before[name].add(torch.sign(p.detach()), alpha=strength))
            torch.testing.assert_close(p.grad - before[name], strength * torch.sign(p.detach()), rtol=1e-6, atol=0)
            assert (p.grad != before[name]).all()  # no zero in the gate: every entry moved
        else:
            assert torch.equal(p.grad, before[name]), name  # bit-identical


# ----------------------------------------------------------------------------------------- (c) defaults
def test_defaults_of_a_minimal_subclass(bare_att):
    m = bare_att(4)
    x = torch.randn(2, 4, 3, 5)
    y = m(x)
    assert m.functional_flops((x,), y) == 0
    assert count_macs(m, (x,)) == 0  # thop knows no child and the module reports nothing
    state = {k: v.clone() for k, v in m.state_dict().items()}
    assert m.fuse_layers() is None
    assert m.state_dict().keys() == state.keys() and all(torch.equal(m.state_dict()[k], v) for k, v in state.items())
    torch.testing.assert_close(m(x), y)
    assert m.attention_map((x,), y) is None
    assert m.regularized_parameters() == []
    lm = layer_maps(7, m, (x,), y)  # None: both maps are the generic gain
    g = gain_maps(x, y)
    torch.testing.assert_close(lm.spatial, g["spatial"])
    torch.testing.assert_close(lm.channel, g["channel"])
    assert (lm.spatial_label, lm.channel_label) == (SPATIAL_GAIN, CHANNEL_GAIN)


def test_layer_maps_reads_the_attention_map_fields(bare_att):
    class Own(bare_att):
        def attention_map(self, inputs: tuple, output: torch.Tensor) -> AttentionMap:
            return AttentionMap(channel=self.w.detach(), drop_spatial=True)  # no label: a default one

    class Legacy(bare_att):
        def attention_map(self, inputs: tuple, output: torch.Tensor) -> dict:
            return {"channel": self.w}

    try:
        m, x = Own(4), torch.randn(1, 4, 2, 2)
        lm = layer_maps(0, m, (x,), m(x))
        assert lm.spatial is None and torch.equal(lm.channel, torch.full((4,), 0.5))
        assert lm.channel_label == "Own.attention_map() channel"
        with pytest.raises(TypeError, match="Legacy.attention_map.. must return an AttentionMap"):
            layer_maps(0, Legacy(4), (x,), x)
    finally:
        registry.unregister("Own")
        registry.unregister("Legacy")


def test_every_registered_attention_class_is_an_attention_and_a_package_attribute():
    classes = registry.classes("attention")
    assert len(classes) >= 14
    for cls in classes:
        assert issubclass(cls, Attention), cls
        assert getattr(models.attention, cls.__name__) is cls and cls.__name__ in models.attention.__all__
        module = __import__(cls.__module__, fromlist=[cls.__name__])
        assert getattr(module, cls.__name__) is cls  # defined where it always was
    assert models.common.NAMAttention is models.attention.nam.NAMAttention  # paths forks' checkpoints pickle
    assert models.common.Channel_Att is models.attention.nam.Channel_Att
    helpers = (models.attention.Channel_Att, models.attention.Spatial_Att, models.attention.FallbackBatchNorm2d)
    assert not any(s.cls in helpers for s in registry.specs())  # helper submodules are no yaml layers
