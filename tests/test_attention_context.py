"""Tests of GCAttention, SKAttention, ShuffleAttention, TripletAttention and PolarizedSelfAttention.

The registry contract (shapes, gradients, fp16, ONNX, TorchScript) is covered by tests/test_attention.py; here:
hand-computed parameter and FLOP counts, each forward against an independent float64 reference written with
explicit loops/einsum, fp16 with non-trivial parameters, ONNX with non-trivial parameters, and a model build.
"""

from __future__ import annotations

import copy
import io
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml

import models.attention  # noqa: F401  (registers every module)
from models import registry
from models.attention.gc import GCAttention
from models.attention.psa import PolarizedSelfAttention
from models.attention.shuffle import ShuffleAttention, shuffle_groups
from models.attention.sk import SKAttention
from models.attention.triplet import TripletAttention
from utils.flops import count_macs

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["GCAttention", "SKAttention", "ShuffleAttention", "TripletAttention", "PolarizedSelfAttention"]


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def randomize(m: nn.Module, seed: int = 0) -> nn.Module:
    """Random values for every parameter (zero-initialised layers included) and BN running statistics.

    Conv weights get std 1/sqrt(fan-in) (activations keep their scale), every other parameter std 0.5.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        conv_weights = {id(mod.weight) for mod in m.modules() if isinstance(mod, nn.Conv2d)}
        for p in m.parameters():
            std = p[0].numel() ** -0.5 if id(p) in conv_weights else 0.5
            p.copy_(std * torch.randn(p.shape, generator=g))
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.copy_(0.2 * torch.randn(mod.running_mean.shape, generator=g))
                mod.running_var.copy_(0.5 + torch.rand(mod.running_var.shape, generator=g))
    return m


# ----------------------------------------------------------------------------------------- reference pieces
def softmax_ref(t: torch.Tensor, dim: int) -> torch.Tensor:
    e = torch.exp(t - t.amax(dim=dim, keepdim=True))
    return e / e.sum(dim=dim, keepdim=True)


def conv_ref(x: torch.Tensor, weight: torch.Tensor, groups: int = 1, dilation: int = 1) -> torch.Tensor:
    """'Same' grouped (dilated) convolution without bias as a sum over taps of shifted slices."""
    b, _, h, w = x.shape
    o, cg, k, _ = weight.shape
    pad = dilation * (k // 2)
    xp = F.pad(x, (pad, pad, pad, pad))
    og = o // groups
    out = x.new_zeros(b, o, h, w)
    for g in range(groups):
        xs = xp[:, g * cg:(g + 1) * cg]
        for i in range(k):
            for j in range(k):
                patch = xs[:, :, i * dilation:i * dilation + h, j * dilation:j * dilation + w]
                out[:, g * og:(g + 1) * og] += torch.einsum("oc,bchw->bohw", weight[g * og:(g + 1) * og, :, i, j].double(),
                                                            patch)
    return out


def bn_ref(t: torch.Tensor, bn: nn.BatchNorm2d, training: bool) -> torch.Tensor:
    """Batch norm: batch statistics in training mode unless there is one value per channel (FallbackBatchNorm2d)."""
    if training and t.numel() != t.shape[1]:
        mean, var = t.mean(dim=(0, 2, 3)), t.var(dim=(0, 2, 3), unbiased=False)
    else:
        mean, var = bn.running_mean.double(), bn.running_var.double()
    v = lambda a: a.view(1, -1, 1, 1)  # noqa: E731
    return (t - v(mean)) / torch.sqrt(v(var) + bn.eps) * v(bn.weight.detach().double()) + v(bn.bias.detach().double())


def w2(conv: nn.Conv2d) -> torch.Tensor:
    """A 1×1 conv's weight as a (out, in) float64 matrix."""
    return conv.weight.detach().double()[:, :, 0, 0]


# ----------------------------------------------------------------------------------------- references
def gc_reference(m: GCAttention, x: torch.Tensor) -> torch.Tensor:
    x = x.double()
    b, c, h, w = x.shape
    xf = x.reshape(b, c, h * w)
    if m.pooling == "att":
        logits = torch.einsum("c,bcn->bn", w2(m.conv_mask)[0], xf) + m.conv_mask.bias.detach().double()
        ctx = torch.einsum("bn,bcn->bc", softmax_ref(logits, 1), xf)
    else:
        ctx = xf.mean(-1)

    def transform(seq: nn.Sequential) -> torch.Tensor:
        conv1, ln, _, conv2 = seq
        t = torch.einsum("pc,bc->bp", w2(conv1), ctx) + conv1.bias.detach().double()
        mu = t.mean(1, keepdim=True)
        var = ((t - mu) ** 2).mean(1, keepdim=True)
        t = (t - mu) / torch.sqrt(var + ln.eps) * ln.weight.detach().double().view(-1) + ln.bias.detach().double().view(-1)
        t = t.clamp(min=0)
        return torch.einsum("cp,bp->bc", w2(conv2), t) + conv2.bias.detach().double()

    out = x
    if m.channel_mul_conv is not None:
        out = out * torch.sigmoid(transform(m.channel_mul_conv))[:, :, None, None]
    if m.channel_add_conv is not None:
        out = out + transform(m.channel_add_conv)[:, :, None, None]
    return out


def sk_reference(m: SKAttention, x: torch.Tensor, training: bool) -> torch.Tensor:
    x = x.double()
    feats = []
    for seq in m.convs:
        conv, bn = seq[0], seq[1]
        feats.append(bn_ref(conv_ref(x, conv.weight.detach(), conv.groups, conv.dilation[0]), bn, training).clamp(min=0))
    s = sum(feats).mean(dim=(2, 3))  # (B, C)
    z = torch.einsum("dc,bc->bd", w2(m.fc[0]), s)[:, :, None, None]
    z = bn_ref(z, m.fc[1], training)[:, :, 0, 0].clamp(min=0)  # (B, d)
    logits = torch.stack([torch.einsum("cd,bd->bc", w2(fc), z) for fc in m.fcs], dim=1)  # (B, M, C)
    a = softmax_ref(logits, 1)
    return sum(a[:, i, :, None, None] * f for i, f in enumerate(feats))


def shuffle_reference(m: ShuffleAttention, x: torch.Tensor) -> torch.Tensor:
    x = x.double()
    b, c1, h, w = x.shape
    g_, c = m.groups, c1 // (2 * m.groups)
    p = {k: v.detach().double().view(-1) for k, v in m.named_parameters()}
    y = torch.empty_like(x)  # before the shuffle
    for bi in range(b):
        for g in range(g_):
            x0 = x[bi, g * 2 * c:g * 2 * c + c]
            x1 = x[bi, g * 2 * c + c:(g + 1) * 2 * c]
            s = x0.mean(dim=(1, 2))
            y[bi, g * 2 * c:g * 2 * c + c] = x0 * torch.sigmoid(p["cweight"] * s + p["cbias"])[:, None, None]
            mu, var = x1.mean(dim=(1, 2)), x1.var(dim=(1, 2), unbiased=False)
            gn = (x1 - mu[:, None, None]) / torch.sqrt(var[:, None, None] + m.gn.eps)
            gn = gn * p["gn.weight"][:, None, None] + p["gn.bias"][:, None, None]
            y[bi, g * 2 * c + c:(g + 1) * 2 * c] = x1 * torch.sigmoid(p["sweight"][:, None, None] * gn
                                                                      + p["sbias"][:, None, None])
    out = torch.empty_like(x)
    for k in range(c1):  # channel shuffle with 2 groups: output k = 2·i + j comes from input j·C/2 + i
        i, j = divmod(k, 2)
        out[:, k] = y[:, j * (c1 // 2) + i]
    return out


def triplet_reference(m: TripletAttention, x: torch.Tensor, training: bool = False) -> torch.Tensor:
    x = x.double()

    def gate(z: torch.Tensor, g: nn.Module) -> torch.Tensor:  # z (B, 2, P, Q) -> sigmoid gate (B, 1, P, Q)
        return torch.sigmoid(bn_ref(conv_ref(z, g.conv.conv.weight.detach()), g.conv.bn, training))

    g_cw = gate(torch.stack([x.amax(2), x.mean(2)], 1), m.cw)[:, 0]  # pool over H: plane (C, W)
    y_cw = x * g_cw[:, :, None, :]
    z_hc = torch.stack([x.amax(3).transpose(1, 2), x.mean(3).transpose(1, 2)], 1)  # pool over W: plane (H, C)
    y_hc = x * gate(z_hc, m.hc)[:, 0].transpose(1, 2)[:, :, :, None]
    if m.hw is None:
        return (y_cw + y_hc) / 2
    y_hw = x * gate(torch.stack([x.amax(1), x.mean(1)], 1), m.hw)
    return (y_hw + y_cw + y_hc) / 3


def psa_reference(m: PolarizedSelfAttention, x: torch.Tensor) -> torch.Tensor:
    x = x.double()
    b, c, h, w = x.shape
    xf = x.reshape(b, c, h * w)
    v = torch.einsum("dc,bcn->bdn", w2(m.ch_wv), xf)
    q = softmax_ref(torch.einsum("c,bcn->bn", w2(m.ch_wq)[0], xf), 1)
    z = torch.einsum("cd,bd->bc", w2(m.ch_wz), torch.einsum("bdn,bn->bd", v, q))
    mu, var = z.mean(1, keepdim=True), z.var(1, unbiased=False, keepdim=True)
    a_ch = torch.sigmoid((z - mu) / torch.sqrt(var + m.ln.eps) * m.ln.weight.detach().double()
                         + m.ln.bias.detach().double())  # (B, C)
    sv = torch.einsum("dc,bcn->bdn", w2(m.sp_wv), xf)
    sq = softmax_ref(torch.einsum("dc,bcn->bdn", w2(m.sp_wq), xf).mean(-1), 1)  # (B, C')
    a_sp = torch.sigmoid(torch.einsum("bd,bdn->bn", sq, sv))  # (B, H*W)
    return (xf * a_ch[:, :, None] + xf * a_sp[:, None, :]).reshape(b, c, h, w)


# ----------------------------------------------------------------------------------------- registry
def test_registered_names_and_aliases():
    for name in NAMES:
        spec = registry.resolve(name)
        assert spec.kind == "attention" and spec.cls.__name__ == name
    for alias in ("GlobalContext", "ContextBlock"):
        assert registry.resolve(alias).cls is GCAttention
    assert registry.resolve("PSA").cls is PolarizedSelfAttention


# ----------------------------------------------------------------------------------------- parameters
def test_param_counts():
    # GC: conv_mask C+1; bottleneck C·P+P, LayerNorm 2P, P·C+C; P = max(int(C/16), 8)
    assert GCAttention(32).planes == 8 and n_params(GCAttention(32)) == 601
    assert n_params(GCAttention(1024)) == 133_313  # P = 64
    assert n_params(GCAttention(32, pooling="avg")) == 568
    assert n_params(GCAttention(32, fusion="both")) == 601 + 568
    assert GCAttention(64, 0.25).planes == 16
    # SK at C=32: groups 32, d 32; 2 × (3×3 depthwise 288 + BN 64), fc 1024 + BN 64, fcs 2 × 1024
    assert n_params(SKAttention(32)) == 3840
    assert n_params(SKAttention(1024)) == 790_656
    m = SKAttention(48)  # groups gcd(48, 32) = 16: 2 × (48·3·9 + 96), 48·32 + 64, 2·32·48
    assert m.groups == 16 and m.d == 32 and n_params(m) == 7456
    # Shuffle: 6 per channel of a half-group (cweight, cbias, sweight, sbias, gn weight and bias)
    assert n_params(ShuffleAttention(32)) == 6 and ShuffleAttention(32).groups == 16
    assert n_params(ShuffleAttention(512)) == 24 and ShuffleAttention(512).groups == 64
    # Triplet: 3 × (2·7·7 + 2), whatever C
    assert n_params(TripletAttention(32)) == n_params(TripletAttention(1024)) == 300
    assert n_params(TripletAttention(32, 7, True)) == 200 and n_params(TripletAttention(8, 3)) == 60
    # PSA: 4 × C·C/2 + C (W_q^ch) + 2C (LayerNorm)
    assert n_params(PolarizedSelfAttention(32)) == 2144
    assert n_params(PolarizedSelfAttention(512)) == 525_824


def test_shuffle_groups():
    assert [shuffle_groups(c, 64) for c in (2, 16, 32, 48, 96, 200, 384, 512, 1024)] == [1, 8, 16, 24, 48, 50, 64,
                                                                                          64, 64]
    assert shuffle_groups(512, 8) == 8
    with pytest.raises(ValueError, match="even"):
        ShuffleAttention(33)


def test_option_validation():
    with pytest.raises(ValueError, match="pooling"):
        GCAttention(32, pooling="max")
    with pytest.raises(ValueError, match="fusion"):
        GCAttention(32, fusion="concat")
    with pytest.raises(ValueError, match="odd"):
        SKAttention(32, kernels=(3, 4))
    with pytest.raises(ValueError, match="two kernels"):
        SKAttention(32, kernels=(3,))
    with pytest.raises(ValueError, match="odd"):
        TripletAttention(32, kernel_size=4)
    m = SKAttention(32)  # the 5×5 path is a 3×3 conv with dilation 2 (the paper's choice)
    assert m.convs[1][0].kernel_size == (3, 3) and m.convs[1][0].dilation == (2, 2)
    m = SKAttention(32, kernels=(3, 5, 7), dilated=False)
    assert [s[0].kernel_size[0] for s in m.convs] == [3, 5, 7]


def test_gc_starts_as_identity():
    m = GCAttention(32)
    x = torch.randn(2, 32, 5, 6)
    torch.testing.assert_close(m(x), x, rtol=0, atol=0)


# ----------------------------------------------------------------------------------------- references
@pytest.mark.parametrize("pooling,fusion", [("att", "add"), ("avg", "add"), ("att", "mul"), ("att", "both")])
@pytest.mark.parametrize("hw", [(1, 1), (5, 7)], ids=str)
def test_gc_matches_reference(pooling, fusion, hw):
    m = randomize(GCAttention(16, pooling=pooling, fusion=fusion)).eval()
    x = torch.randn(2, 16, *hw) * 2
    with torch.no_grad():
        torch.testing.assert_close(m(x).double(), gc_reference(m, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("cfg", [{}, {"kernels": (3, 5, 7), "groups": 4, "dilated": False}], ids=["default", "3branch"])
def test_sk_matches_reference(cfg, training):
    m = randomize(SKAttention(8, **cfg)).train(training)
    x = torch.randn(2, 8, 5, 6)
    ref = sk_reference(m, x, training)
    with torch.no_grad():
        torch.testing.assert_close(m(x).double(), ref, rtol=1e-5, atol=1e-5)


def test_sk_batch1_training_uses_running_stats_for_the_descriptor():
    m = randomize(SKAttention(8)).train()
    before = m.fc[1].running_mean.clone()
    x = torch.randn(1, 8, 5, 6)
    ref = sk_reference(m, x, training=True)  # branch BNs: batch statistics; descriptor BN: running statistics
    y = m(x)
    y.sum().backward()
    torch.testing.assert_close(y.detach().double(), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(m.fc[1].running_mean, before)


@pytest.mark.parametrize("c,groups", [(32, 64), (24, 3), (16, 2)])
def test_shuffle_matches_reference(c, groups):
    m = randomize(ShuffleAttention(c, groups))
    x = torch.randn(2, c, 4, 5) * 3 + 1
    with torch.no_grad():
        torch.testing.assert_close(m(x).double(), shuffle_reference(m, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("no_spatial", [False, True], ids=["triplet", "no_spatial"])
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_triplet_matches_reference(no_spatial, training):
    m = randomize(TripletAttention(6, 7, no_spatial)).train(training)
    x = torch.randn(2, 6, 5, 4)  # C, H, W all different: a wrong permute changes the shape or the result
    ref = triplet_reference(m, x, training)
    with torch.no_grad():
        torch.testing.assert_close(m(x).double(), ref, rtol=1e-5, atol=1e-5)


def test_triplet_batch1_1x1_training():
    m = randomize(TripletAttention(4)).train()
    x = torch.randn(1, 4, 1, 1)
    y = m(x)  # the (H, W) branch's BN sees one value: running statistics
    torch.testing.assert_close(y.detach().double(), triplet_reference(m, x, training=True), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("hw", [(1, 1), (6, 5)], ids=str)
def test_psa_matches_reference(hw):
    m = randomize(PolarizedSelfAttention(16))
    x = torch.randn(2, 16, *hw) * 2
    with torch.no_grad():
        torch.testing.assert_close(m(x).double(), psa_reference(m, x), rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------- FLOPs
def test_flops_counted_by_hand():
    """functional_flops and the thop total (MACs) at x = (2, C, 4, 5), each number worked out by hand."""
    torch.manual_seed(0)
    x32, x8 = torch.randn(2, 32, 4, 5), torch.randn(2, 8, 4, 5)
    cases = [
        # module, input, functional FLOPs, thop's MACs of the child modules
        (GCAttention(32), x32, 120 + 2560 + 1280, 1280 + 512 + 64 + 512),  # softmax, Σαx, +; mask, conv, LN, conv
        (SKAttention(8), x8, 320 + 336 + 128 + 96 + 960, 5760 + 2560 + 512 + 1024),  # convs, branch BNs, fc, fcs
        (ShuffleAttention(32), x32, 13 * 640 + 7 * 32, 0),  # nothing for thop: the GroupNorm is functional
        (TripletAttention(8), x8, 9 * 320 + 4 * (80 + 64 + 40) + 3 * 320, (80 + 64 + 40) * 98),
        (PolarizedSelfAttention(32), x32, 2744 + 3368 + 1280, 3 * 20480 + 1280 + 1024 + 256),
    ]
    for m, x, flops, thop_macs in cases:
        m.eval()
        with torch.no_grad():
            y = m(x)
        assert m.functional_flops((x,), y) == flops, type(m).__name__
        assert count_macs(m, (x,)) == thop_macs + flops / 2, type(m).__name__


# ----------------------------------------------------------------------------------------- fp16 / ONNX
def _build(name: str, c: int) -> nn.Module:
    cls = registry.resolve(name).cls
    kw = {"fusion": "both"} if cls is GCAttention else {}
    return randomize(cls(c, **kw), seed=3).eval()


@pytest.mark.parametrize("std", [1.0, 300.0])
@pytest.mark.parametrize("name", NAMES)
def test_half_matches_float_with_random_parameters(name, std):
    """fp16 close to fp32 on a 40×40 map, with every parameter non-trivial (the zero inits are replaced)."""
    m = _build(name, 16)
    x = torch.randn(2, 16, 40, 40) * std
    with torch.no_grad():
        ref = m(x)
        yh = copy.deepcopy(m).half()(x.half())
    assert yh.dtype == torch.float16 and bool(torch.isfinite(yh).all())
    assert (yh.float() - ref).abs().max() <= 2e-2 * ref.abs().max()


def _onnx_dynamic(m: nn.Module, x: torch.Tensor) -> bytes:
    buf = io.BytesIO()
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (x,), buf, opset_version=12, input_names=["images"], output_names=["output"],
                          dynamic_axes={"images": axes, "output": axes}, dynamo=False)
    return buf.getvalue()


@pytest.mark.parametrize("name", NAMES)
def test_onnx_dynamic_with_random_parameters(name):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not importable: ONNX parity not checked")
    m = _build(name, 16)
    sess = ort.InferenceSession(_onnx_dynamic(m, torch.randn(1, 16, 8, 8)), providers=["CPUExecutionProvider"])
    for shape in [(2, 16, 7, 11), (1, 16, 1, 1)]:
        x = torch.randn(*shape) * 2
        with torch.no_grad():
            ref = m(x)
        out = torch.from_numpy(sess.run(None, {"images": x.numpy()})[0])
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------------------- model build
@pytest.mark.parametrize("name", NAMES)
def test_model_build_with_attention_before_detect(name):
    from models.yolo import Model

    cfg = yaml.safe_load((ROOT / "models" / "yolov5n.yaml").read_text())
    assert cfg["head"][-1][0] == [17, 20, 23]
    cfg["head"].insert(len(cfg["head"]) - 1, [-1, 1, name, []])
    cfg["head"][-1][0] = [17, 20, 24]
    torch.manual_seed(0)
    model = Model(cfg).eval()
    assert type(model.model[24]) is registry.resolve(name).cls
    assert model.model[-1].f == [17, 20, 24]
    with torch.no_grad():
        y, feats = model(torch.randn(1, 3, 64, 64))
    assert y.shape == (1, 3 * (8 * 8 + 4 * 4 + 2 * 2), 85) and bool(torch.isfinite(y).all())
    assert feats[2].shape == (1, 3, 2, 2, 85)
