"""Attention heatmaps and CAMs: utils/attention_maps.py, utils/cam.py, models/attention_vis.py, detect.py flags."""

from __future__ import annotations

import datetime
import math
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
import torch.nn as nn

import detect
from models.attention.nam import NAMAttention
from models.attention_vis import AttentionVisualizer, attention_layers, visualize
from models.yolo import Model
from tests.conftest import ROOT
from utils.attention_maps import gain_maps, layer_maps, record_maps, unletterbox
from utils.attention_plots import overlay_heatmap
from utils.augmentations import letterbox
from utils.boxes import letterbox_geometry, scale_coords
from utils.cam import eigen_cam, grad_cam, grad_cam_pp
from utils.recording import Recorder

# yaml -> {attention layer index: (class name, channels, stride)} for the n-size configs
ATTENTION = {
    "yolov5n-NAM.yaml": {24: ("NAMAttention", 256, 32)},
    "yolov5n-SimAM.yaml": {24: ("SimAM", 256, 32)},
    "yolov5n-CoTA.yaml": {21: ("CoTAttention", 128, 16), 25: ("CoTAttention", 256, 32)},
}


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one intra-op thread


@pytest.fixture(scope="module")
def models() -> dict[str, Model]:
    torch.manual_seed(0)
    return {f: Model(ROOT / "models" / f, nc=3).eval() for f in ATTENTION}


class Mul(nn.Module):
    """out = x · w with a fixed, known w."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.w


@pytest.mark.parametrize("cfg", sorted(ATTENTION))
def test_records_give_maps_of_the_right_shape(models, cfg):
    model = models[cfg]
    found = attention_layers(model)
    assert {i: type(m).__name__ for i, m in found} == {i: v[0] for i, v in ATTENTION[cfg].items()}
    h, w = 64, 96  # rectangular: H and W must not be swapped
    with model.record([i for i, _ in found]) as rec, torch.no_grad():
        model(torch.rand(1, 3, h, w))
        maps = {lm.index: lm for lm in record_maps(rec)}
    assert sorted(maps) == sorted(ATTENTION[cfg])
    for i, (name, c, s) in ATTENTION[cfg].items():
        lm = maps[i]
        assert lm.name == name
        assert lm.spatial.shape == (1, h // s, w // s)
        assert torch.isfinite(lm.spatial).all() and torch.isfinite(lm.channel).all()
        if name == "NAMAttention":  # learnt weights, image-independent
            assert lm.channel.shape == (c,) and lm.channel.sum().item() == pytest.approx(1, abs=1e-5)
            # channel-only NAM gates every element by a sigmoid: the gain is a weighted mean gate in (0, 1)
            assert (lm.spatial > 0).all() and (lm.spatial < 1).all()
        else:
            assert lm.channel.shape == (1, c)
        if name == "SimAM":  # out = x·sigmoid(y) with y >= 0.5: every gain lies in [sigmoid(0.5), 1)
            lo = 1 / (1 + math.exp(-0.5))
            assert (lm.spatial >= lo - 1e-5).all() and (lm.spatial < 1).all()
            assert (lm.channel >= lo - 1e-5).all() and (lm.channel < 1).all()
    assert not any(m._forward_hooks for _, m in found)  # closed: hooks removed


def test_generic_gain_recovers_multiplicative_weights():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 5, 7)  # signs mixed
    ws = torch.rand(1, 1, 5, 7) + 0.1  # spatial attention: one weight per position
    wc = torch.rand(1, 8, 1, 1) + 0.1  # channel attention: one weight per channel
    g = gain_maps(x, x * ws)
    assert g["spatial"].shape == (2, 5, 7)
    torch.testing.assert_close(g["spatial"], ws[:, 0].expand(2, 5, 7), rtol=1e-5, atol=1e-6)
    g = gain_maps(x, x * wc)
    assert g["channel"].shape == (2, 8)
    torch.testing.assert_close(g["channel"], wc.view(1, 8).expand(2, 8), rtol=1e-5, atol=1e-6)
    # separable weights and |x| constant: each gain is that axis's weight times the other axis's mean weight
    ones = torch.ones(1, 8, 5, 7)
    g = gain_maps(ones, ones * ws * wc)
    torch.testing.assert_close(g["spatial"][0], ws[0, 0] * wc.mean(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g["channel"][0], wc.view(8) * ws.mean(), rtol=1e-5, atol=1e-6)
    assert gain_maps(x, x[:, :4, :2]) == {}  # channels and size both changed: nothing to say


def test_recorded_layer_and_own_attention_map_override():
    torch.manual_seed(0)
    ws = torch.rand(1, 1, 4, 4) + 0.5
    net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), Mul(ws))
    with Recorder([(1, net[1])]) as rec:
        net(torch.randn(1, 3, 4, 4))
        net(torch.randn(1, 3, 4, 4) * 100)  # a second call: ignored until reset()
        lm = record_maps(rec)[0]
        first_in = rec[1].inputs[0].abs().max()
    assert first_in < 50 and lm.index == 1 and lm.name == "Mul"
    torch.testing.assert_close(lm.spatial[0], ws[0, 0], rtol=1e-5, atol=1e-6)

    from utils.attention_maps import AttentionMap

    class Own(Mul):
        def attention_map(self, inputs, output):
            return AttentionMap(spatial=self.w, spatial_label="w", drop_channel=True)  # no channel map at all

    m = Own(ws)
    lm = layer_maps(3, m, (torch.ones(1, 2, 4, 4),), m(torch.ones(1, 2, 4, 4)))
    assert lm.spatial.shape == (1, 4, 4) and lm.spatial_label == "w" and lm.channel is None


def test_nam_channel_weights_are_normalised_gamma_fused_or_not():
    torch.manual_seed(0)
    m = NAMAttention(16).eval()
    keys = set(m.state_dict())
    m.Channel_Att.bn2.weight.data = torch.randn(16)  # mixed signs
    m.Channel_Att.bn2.running_var.data = torch.rand(16) + 0.5
    gamma = m.Channel_Att.bn2.weight.detach().clone()
    x = torch.randn(2, 16, 6, 6)
    w = m.attention_map((x,), m(x)).channel
    assert w.sum().item() == pytest.approx(1, abs=1e-6)
    torch.testing.assert_close(w, gamma.abs() / gamma.abs().sum())
    m.fuse_layers()
    assert set(m.state_dict()) == keys - {f"Channel_Att.bn2.{k}" for k in
                                          ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")} \
        | {"Channel_Att.fused_scale", "Channel_Att.fused_shift"}  # the kept copy is not saved
    torch.testing.assert_close(m.attention_map((x,), m(x)).channel, gamma.abs() / gamma.abs().sum())


def test_nam_spatial_branch_reports_its_gate():
    torch.manual_seed(0)
    m = NAMAttention(8, no_spatial=False).eval()
    nn.init.normal_(m.Spatial_Att.scale.weight, std=0.5)
    x = torch.randn(1, 8, 5, 6)
    with torch.no_grad():
        out = m(x)
        lm = layer_maps(0, m, (x,), out)
        torch.testing.assert_close(out, lm.spatial[:, None] * m.Channel_Att(x))  # out = gate · channel branch
    assert lm.spatial_label == "spatial gate" and lm.spatial.std() > 1e-3


def test_eigen_cam_recovers_the_first_principal_component():
    c, h, w = 8, 6, 10
    u1 = torch.zeros(h, w)
    u1[1:4, 2:6] = torch.tensor([1.0, 2.0, 3.0, 4.0])  # a structured bump
    u2 = torch.zeros(h, w)
    u2[4:, 6:] = 1.0  # disjoint support: orthogonal to u1
    v1 = torch.ones(c) / c ** 0.5
    v2 = torch.tensor([1.0, -1.0] * (c // 2)) / c ** 0.5  # orthogonal to v1
    a = 3 * u1[None] * v1[:, None, None] + u2[None] * v2[:, None, None]  # (C, H, W), first PC = u1
    cam = eigen_cam(a)
    torch.testing.assert_close(cam, u1 / u1.max(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(eigen_cam(a[None]), cam)  # (1, C, H, W) too
    # sign: the map follows the mean activation, so a negated activation is an empty map, not the same bump
    assert eigen_cam(-a).abs().max() == 0
    with pytest.raises(ValueError, match="one image"):
        eigen_cam(torch.rand(2, c, h, w))


def test_grad_cam_weights_channels_by_mean_gradient():
    a = torch.zeros(2, 3, 3)
    a[0, 0, 0], a[1, 2, 2], a[1, 1, 1] = 2.0, 1.0, 4.0
    g = torch.stack([torch.full((3, 3), 0.5), torch.full((3, 3), -0.25)])  # alpha = (0.5, -0.25)
    cam = grad_cam(a, g)
    expected = torch.zeros(3, 3)
    expected[0, 0] = 1.0  # 0.5·2 = 1 is the maximum; (1,1) = -1 and (2,2) = -0.25 are cut by ReLU
    torch.testing.assert_close(cam, expected)


def _grad_cam_pp_reference(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ in float64, element by element from the closed form: α_ij^k = g_ij² / (2 g_ij² + Σ_ab A_ab^k g_ij³)
    (0 where the denominator is 0), w_k = Σ_ij α_ij^k ReLU(g_ij^k), map = ReLU(Σ_k w_k A^k) / max."""
    a, g = a.double(), g.double()
    c, h, w = a.shape
    weights = torch.zeros(c, dtype=torch.float64)
    for k in range(c):
        total = float(a[k].sum())
        for i in range(h):
            for j in range(w):
                x = float(g[k, i, j])
                den = 2 * x ** 2 + total * x ** 3
                alpha = x ** 2 / den if den != 0 else 0.0
                weights[k] += alpha * max(x, 0.0)
    m = (weights[:, None, None] * a).sum(0).clamp(min=0)
    return m / m.max() if m.max() > 0 else m


def test_grad_cam_pp_matches_the_formula_in_float64():
    torch.manual_seed(0)
    a = torch.rand(4, 5, 6) * 2  # non-negative, as after an activation
    a[1] -= 1  # one channel of mixed sign
    g = torch.randn(4, 5, 6) * 0.3
    g[2, :2] = 0  # zero gradients: α = 0 there
    cam = grad_cam_pp(a, g)
    assert cam.shape == (5, 6) and cam.dtype == torch.float32 and cam.min() >= 0 and cam.max() == 1
    torch.testing.assert_close(cam.double(), _grad_cam_pp_reference(a, g), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad_cam_pp(a[None], g[None]), cam)  # (1, C, H, W) too
    assert grad_cam_pp(a, torch.zeros_like(g)).abs().max() == 0  # no gradient: an empty map
    with pytest.raises(ValueError, match="differ"):
        grad_cam_pp(a, g[:2])


def test_grad_cam_pp_closed_form_is_exact_for_the_exponential_of_a_linear_score():
    # S = Σ W·A: ∂S/∂A = W. For Y = exp(S) the paper's general weights use the true higher derivatives,
    # α = ∂²Y / (2 ∂²Y + Σ_ab A_ab ∂³Y) (per element, each derivative taken twice / three times with respect to
    # the same A_ij) and w_k = Σ_ij α ReLU(∂Y): computed here by autograd, they give the closed-form map.
    torch.manual_seed(1)
    a = (torch.rand(2, 3, 3, dtype=torch.float64) * 0.5).requires_grad_(True)
    wt = torch.randn(2, 3, 3, dtype=torch.float64) * 0.5
    y = torch.exp((wt * a).sum())
    d1 = torch.autograd.grad(y, a, create_graph=True)[0]
    d2, d3 = torch.zeros_like(wt), torch.zeros_like(wt)
    for e in range(wt.numel()):
        idx = np.unravel_index(e, wt.shape)
        g2 = torch.autograd.grad(d1[idx], a, create_graph=True)[0][idx]
        d2[idx] = g2.detach()
        d3[idx] = torch.autograd.grad(g2, a, retain_graph=True)[0][idx]
    a = a.detach()
    alpha = d2 / (2 * d2 + a.sum((1, 2), keepdim=True) * d3)
    m = ((alpha * d1.detach().clamp(min=0)).sum((1, 2))[:, None, None] * a).sum(0).clamp(min=0)
    torch.testing.assert_close(grad_cam_pp(a, wt).double(), m / m.max(), rtol=1e-5, atol=1e-6)

    # a gradient that is one constant per channel (a linear score of the pooled activations, as in CAM):
    # α = 1 / (2 + g_k Σ A^k) everywhere, w_k = H·W·ReLU(g_k) / (2 + g_k Σ A^k)
    a = torch.rand(3, 4, 5, dtype=torch.float64)
    gk = torch.tensor([0.4, -0.3, 0.1], dtype=torch.float64)
    g = gk[:, None, None].expand(3, 4, 5)
    w = 20 * gk.clamp(min=0) / (2 + gk * a.sum((1, 2)))
    m = (w[:, None, None] * a).sum(0).clamp(min=0)
    torch.testing.assert_close(grad_cam_pp(a, g).double(), m / m.max(), rtol=1e-5, atol=1e-6)
    # ... and with channels whose activations sum to zero α = 1/2, so Grad-CAM++ is Grad-CAM (positive gradients)
    a = a - a.mean((1, 2), keepdim=True)
    g = g.abs()
    torch.testing.assert_close(grad_cam_pp(a, g), grad_cam(a, g), rtol=1e-5, atol=1e-6)


def test_unletterbox_aligns_map_with_original_image():
    h0, w0 = 50, 80
    yy, xx = np.mgrid[0:h0, 0:w0].astype(np.float32)
    im0 = np.stack([yy * 5, xx * 3, np.zeros_like(xx)], -1).astype(np.uint8)  # vertical / horizontal ramps
    im, _, (dw, dh) = letterbox(im0, 64, auto=False)
    assert dh > 0 and dw == 0  # padded top and bottom
    for ch, ramp in ((0, yy * 5), (1, xx * 3)):
        back = unletterbox(im[..., ch].astype(np.float32), im.shape[:2], (h0, w0))
        assert back.shape == (h0, w0)
        assert np.abs(back - ramp)[2:-2, 2:-2].mean() < 3  # no padding (114) and no shift leaks in


def test_letterbox_geometry_matches_letterbox_and_scale_coords():
    cases = ((50, 80, 64, False), (1080, 810, 160, True), (720, 1280, 160, True), (10, 3000, 64, False))
    for h0, w0, size, auto in cases:
        im, (r, _), (dw, dh) = letterbox(np.zeros((h0, w0, 3), np.uint8), size, auto=auto)
        g = letterbox_geometry(im.shape[:2], (h0, w0, 3))
        top, left, uh, uw = g.inner
        assert g.gain == pytest.approx(r) and (top, left) == (int(round(dh - 0.1)), int(round(dw - 0.1)))
        assert (uh, uw) == (im.shape[0] - 2 * dh, im.shape[1] - 2 * dw)  # the resized image, padding excluded
        box = torch.tensor([[left, top, left + uw, top + uh]], dtype=torch.float32)  # the image's own outline
        back = scale_coords(im.shape[:2], box, (h0, w0, 3))
        assert torch.allclose(back, torch.tensor([[0, 0, w0, h0]], dtype=torch.float32), atol=1 / r)
    g = letterbox_geometry((64, 64), (32, 64), ratio_pad=((1.0, 1.0), (0.0, 16.0)))
    assert (g.gain, g.pad) == (1.0, (0.0, 16.0))


def test_overlay_is_red_where_hot_blue_where_cold():
    im0 = np.full((10, 20, 3), 128, np.uint8)
    heat = np.zeros((10, 20), np.float32)
    heat[:, 10:] = 1
    out = overlay_heatmap(im0, heat)
    assert out.shape == im0.shape
    b, r = out[..., 0].astype(int), out[..., 2].astype(int)
    assert (r[:, 10:] > b[:, 10:] + 30).all() and (b[:, :10] > r[:, :10] + 30).all()


def test_visualize_writes_figures_and_grad_cam_restores_model(models, tmp_path):
    model = models["yolov5n-CoTA.yaml"]
    img = tmp_path / "scene.jpg"
    cv2.imwrite(str(img), (np.random.default_rng(0).random((48, 72, 3)) * 255).astype(np.uint8))
    grads = [p.requires_grad for p in model.parameters()]
    files = visualize(model, img, tmp_path / "out", cam_layer=17, cam_method="grad", imgsz=64)
    names = sorted(f.name for f in files)
    assert names == ["scene_layer17_C3_GradCAM.png", "scene_layer21_CoTAttention.png",
                     "scene_layer21_CoTAttention_channels.png", "scene_layer25_CoTAttention.png",
                     "scene_layer25_CoTAttention_channels.png"]
    assert all(cv2.imread(str(f)) is not None for f in files)
    assert [p.requires_grad for p in model.parameters()] == grads and all(p.grad is None for p in model.parameters())
    assert model.model[-1].inplace is True and not model.training
    # the CAM itself: a (H, W) map in [0, 1] at the layer's resolution, with some signal
    viz = AttentionVisualizer(model, tmp_path, layers=[], cam_layer=17, cam_method="grad")
    cam, note, box = viz.cam(0, torch.rand(1, 3, 64, 64))
    assert cam.shape == (8, 8) and 0 <= cam.min() and cam.max() == 1 and note.startswith("(top prediction: class ")
    assert box.shape == (4,) and box[2] > box[0] and box[3] > box[1]
    viz = AttentionVisualizer(model, tmp_path, layers=[], cam_layer=17, cam_method="gradpp")  # Grad-CAM++
    cam, note, box = viz.cam(0, torch.rand(1, 3, 64, 64))
    assert cam.shape == (8, 8) and 0 <= cam.min() and cam.max() == 1 and note.startswith("(top prediction: class ")
    files = visualize(model, img, tmp_path / "pp", layers=[], cam_layer=17, cam_method="gradpp", imgsz=64)
    assert [f.name for f in files] == ["scene_layer17_C3_GradCAMpp.png"] and cv2.imread(str(files[0])) is not None
    assert [p.requires_grad for p in model.parameters()] == grads and all(p.grad is None for p in model.parameters())


def test_bad_layers_and_non_pytorch_backends(models, tmp_path, yolo_log):
    model = models["yolov5n-NAM.yaml"]
    with pytest.raises(ValueError, match=r"choose 0\.\.24"):
        AttentionVisualizer(model, tmp_path, cam_layer=25)  # the Detect head
    with pytest.raises(ValueError, match="cam_method"):
        AttentionVisualizer(model, tmp_path, cam_method="score")
    assert AttentionVisualizer.from_backend(SimpleNamespace(pt=False, format="onnx"), tmp_path) is None
    assert any("need PyTorch .pt weights" in x and "onnx" in x for x in yolo_log)


def test_detect_attention_maps_and_cam_layer(tmp_path, yolo_log):
    torch.manual_seed(0)
    model = Model(ROOT / "models" / "yolov5n-NAM.yaml", nc=3)
    model.names = ["a", "b", "c"]
    w = tmp_path / "nam.pt"
    torch.save({"epoch": -1, "best_fitness": None, "model": model.half(), "ema": None, "updates": None,
                "optimizer": None, "wandb_id": None, "date": datetime.datetime.now().isoformat()}, w)
    img = tmp_path / "tiny.jpg"
    cv2.imwrite(str(img), (np.random.default_rng(1).random((40, 64, 3)) * 255).astype(np.uint8))
    d = detect.run(weights=w, source=img, imgsz=64, device="cpu", project=tmp_path, name="exp", max_det=5,
                   attention_maps=True, cam_layer=23)
    att = d / "attention"
    assert sorted(p.name for p in att.iterdir()) == ["tiny_layer23_C3_EigenCAM.png", "tiny_layer24_NAMAttention.png",
                                                      "tiny_layer24_NAMAttention_channels.png"]
    assert all(cv2.imread(str(p)) is not None for p in att.iterdir())
    assert (d / "tiny.jpg").is_file()  # detection output unchanged
    assert f"3 attention figure(s) saved to {att}" in yolo_log
    d2 = detect.run(weights=w, source=img, imgsz=64, device="cpu", project=tmp_path, name="exp", cam_layer=2)
    assert [p.name for p in (d2 / "attention").iterdir()] == ["tiny_layer2_C3_EigenCAM.png"]  # CAM only
    with pytest.raises(ValueError, match="Detect head"):
        detect.run(weights=w, source=img, imgsz=64, device="cpu", project=tmp_path, name="bad", cam_layer=99)
    assert not (Path(tmp_path) / "bad").exists()


def test_cota_attention_map_is_its_softmax_over_positions():
    from models.attention.cot import CoTAttention

    torch.manual_seed(0)
    m = CoTAttention(16).eval()
    with torch.no_grad():
        m.attention_embed[-1].weight.mul_(50)  # a non-uniform attention
        x = torch.randn(2, 16, 5, 7)
        maps = m.attention_map((x,), m(x))
        att = m._attention(x, m.key_embed(x))  # (B, C, H*W), rows sum to 1
    s = maps.spatial
    assert s.shape == (2, 5, 7)
    torch.testing.assert_close(s.mean(dim=(1, 2)), torch.ones(2))  # 1 = uniform on average
    torch.testing.assert_close(s, att.mean(1).view(2, 5, 7) * 35)
    assert s.std() > 0.05  # really spatial: the scaled attention is not flat
