"""Honest GFLOPs: attention modules count their functional operations; failures are reported once."""

from __future__ import annotations

import pytest
import thop
import torch

import utils.flops as flops
from models.yolo import Model
from tests.conftest import ROOT

MODELS = ROOT / "models"


def _thop_only_gflops(model, img=640):
    """What thop alone reports (leaf-module hooks only), scaled like model_info."""
    macs, _ = thop.profile(__import__("copy").deepcopy(model), inputs=(torch.zeros(1, 3, 32, 32),), verbose=False)
    return macs / 1e9 * 2 * (img / 32) ** 2


def test_simam_counts_8_flops_per_element():
    base, simam = Model(MODELS / "yolov5s.yaml"), Model(MODELS / "yolov5s-SimAM.yaml")
    g_base, g_simam = flops.model_gflops(base), flops.model_gflops(simam)
    assert g_simam > g_base
    assert _thop_only_gflops(simam) == pytest.approx(g_base, rel=1e-9)  # thop alone: SimAM = 0
    # profiled at the stride-sized 32x32 input (SimAM sees (1, 512, 1, 1)) and scaled by (640/32)^2, as v6.1 does
    assert (g_simam - g_base) * 1e9 == pytest.approx((8 * 512 + 3 * 512) * 400, rel=1e-6)
    # the module itself: 8 FLOPs per element plus 3 per channel
    from models.attention import SimAM

    assert flops.count_macs(SimAM(512), (torch.rand(1, 512, 20, 20),)) * 2 == 8 * 512 * 400 + 3 * 512


def test_cota_counts_mean_softmax_product_and_sum():
    m = Model(MODELS / "yolov5s-CoTA.yaml")
    extra = (flops.model_gflops(m) - _thop_only_gflops(m)) * 1e9
    # two CoTAttention layers at 640: 256 ch at 40x40 (P4) and 512 ch at 20x20 (P5), k = 3
    n = 256 * 40 * 40 + 512 * 20 * 20
    mean, softmax, product, add = 9 * n, 3 * n, n, n  # k*k mean; exp+sum+div; k2 = softmax*v; k1 + k2
    assert extra == pytest.approx(mean + softmax + product + add, rel=1e-6)


def test_summary_reports_failure_once(monkeypatch, yolo_log):
    m = Model(MODELS / "yolov5n.yaml")

    def boom(*a, **k):
        raise RuntimeError("profiling exploded")

    monkeypatch.setattr(flops, "count_macs", boom)
    monkeypatch.setattr(flops, "_reported", set())
    yolo_log.clear()
    assert flops.model_gflops(m) is None
    assert flops.model_gflops(m) is None
    assert sum("profiling exploded" in line for line in yolo_log) == 1
    assert m.info().endswith("gradients")  # summary line without GFLOPs


def test_every_attention_config_counts_more_than_its_thop_leaves():
    for cfg in ("yolov5n-NAM.yaml", "yolov5n-SimAM.yaml", "yolov5n-CoTA.yaml", "yolov5n-CotLayer.yaml"):
        m = Model(MODELS / cfg)
        assert flops.model_gflops(m) > _thop_only_gflops(m), cfg


def test_nam_branches_report_their_own_flops_each_counted_once():
    """NAM's two branches are child modules that report their functional FLOPs themselves; NAMAttention adds
    none of its own, so the counter (which visits every module with ``functional_flops``) counts each once."""
    from models.attention import NAMAttention

    m = NAMAttention(32, no_spatial=False).eval()
    x = torch.randn(2, 32, 8, 8)
    n, p = x.numel(), 2 * 8 * 8  # elements, positions
    channel = 3 * n + 3 * 32  # ·w, sigmoid, ·x per element; |γ|, Σ, ÷ per channel
    spatial = 2 * n + 2 * p + 8 * p  # channel mean and ·x; the spatial BN; |λ|, mean, ÷, ·x̂, +β, ·w, σ
    with torch.no_grad():
        assert m.functional_flops((x,), m(x)) == 0
    assert flops.count_functional_flops(m, (x,)) == channel + spatial
    thop_only, _ = thop.profile(__import__("copy").deepcopy(m), inputs=(x,), verbose=False)
    assert thop_only > 0  # the channel BN and the λ conv
    assert flops.count_macs(m, (x,)) == thop_only + (channel + spatial) / 2
