"""SEAttention, CBAM, ECAAttention, CoordAtt and GAMAttention: parameter counts by hand, the forward against
independent float64 references (einsum and explicit loops over kernel taps), FLOPs, and a model build.

The shared contract (shapes, gradients, fp16/bf16, ONNX, TorchScript) is in tests/test_attention.py, which
loops over every registered attention class.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import yaml

import models.attention  # noqa: F401  (registers every module)
from models import registry
from models.attention.cbam import CBAM
from models.attention.coord_att import CoordAtt
from models.attention.eca import ECAAttention, eca_kernel_size
from models.attention.gam import GAMAttention
from models.attention.se import SEAttention
from tests.attention_refs import P, sig, check_against_reference, randomize_layers

ROOT = Path(__file__).resolve().parents[1]
CLASSES = {c.__name__: c for c in (SEAttention, CBAM, ECAAttention, CoordAtt, GAMAttention)}


def randomize(m: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial biases, BN affine parameters and running statistics; weights doubled (gates away from 0.5)."""
    randomize_layers(m, seed, norms=(nn.BatchNorm2d,), layers=(nn.Conv1d, nn.Conv2d, nn.Linear), gain=2.0)
    return m


# ----------------------------------------------------------------------------------------- references


def conv2d_ref(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Stride-1 'same' convolution (zero padding k // 2, no bias) as a sum over kernel taps of einsums."""
    b, c, h, wd = x.shape
    k = w.shape[-1]
    p = k // 2
    xp = torch.zeros(b, c, h + 2 * p, wd + 2 * p, dtype=x.dtype)
    xp[:, :, p:p + h, p:p + wd] = x
    out = torch.zeros(b, w.shape[0], h, wd, dtype=x.dtype)
    for i in range(k):
        for j in range(k):
            out += torch.einsum("oc,bchw->bohw", w[:, :, i, j], xp[:, :, i:i + h, j:j + wd])
    return out


def bn_ref(x: torch.Tensor, bn: nn.BatchNorm2d, training: bool) -> torch.Tensor:
    """BatchNorm over dim 1 of an N-d tensor: batch statistics (biased variance) or running statistics."""
    dims = [d for d in range(x.dim()) if d != 1]
    shape = [1, -1] + [1] * (x.dim() - 2)
    if training:
        mean, var = x.mean(dims), x.var(dims, unbiased=False)
    else:
        mean, var = P(bn.running_mean), P(bn.running_var)
    xn = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + bn.eps)
    return xn * P(bn.weight).view(shape) + P(bn.bias).view(shape)


def fc(v: torch.Tensor, conv: nn.Module) -> torch.Tensor:
    """A 1×1 conv / Linear applied to (B, C) vectors: W·v + b."""
    w = P(conv.weight).reshape(conv.weight.shape[0], -1)
    return torch.einsum("oc,bc->bo", w, v) + P(conv.bias)


def se_ref(m: SEAttention, x: torch.Tensor, training: bool) -> torch.Tensor:
    z = x.mean((2, 3))
    s = sig(fc(torch.relu(fc(z, m.fc1)), m.fc2))
    return x * s[:, :, None, None]


def cbam_ref(m: CBAM, x: torch.Tensor, training: bool) -> torch.Tensor:
    def mlp(v):
        return fc(torch.relu(fc(v, m.fc1)), m.fc2)

    mc = sig(mlp(x.mean((2, 3))) + mlp(x.flatten(2).max(-1).values))
    xc = x * mc[:, :, None, None]
    pooled = torch.stack([xc.mean(1), xc.max(1).values], 1)  # [avg; max]
    ms = sig(bn_ref(conv2d_ref(pooled, P(m.spatial_conv.weight)), m.spatial_bn, training))
    return xc * ms


def eca_ref(m: ECAAttention, x: torch.Tensor, training: bool) -> torch.Tensor:
    z = x.mean((2, 3))  # (B, C)
    w = P(m.conv.weight).view(-1)
    k, c = w.numel(), z.shape[1]
    p = (k - 1) // 2
    y = torch.zeros_like(z)
    for ch in range(c):  # y[c] = Σ_j w[j] · z[c + j − p], zero outside the channel range
        for j in range(k):
            if 0 <= ch + j - p < c:
                y[:, ch] += w[j] * z[:, ch + j - p]
    return x * sig(y)[:, :, None, None]


def coord_ref(m: CoordAtt, x: torch.Tensor, training: bool) -> torch.Tensor:
    h = x.shape[2]
    strip = torch.cat([x.mean(3), x.mean(2)], 2)  # (B, C, H+W)
    f = torch.einsum("mc,bcl->bml", P(m.conv1.weight)[:, :, 0, 0], strip) + P(m.conv1.bias)[None, :, None]
    f = bn_ref(f, m.bn1, training)
    f = f * torch.clamp(f + 3, 0, 6) / 6  # h_swish
    gh = sig(torch.einsum("cm,bml->bcl", P(m.conv_h.weight)[:, :, 0, 0], f[:, :, :h]) + P(m.conv_h.bias)[None, :, None])
    gw = sig(torch.einsum("cm,bml->bcl", P(m.conv_w.weight)[:, :, 0, 0], f[:, :, h:]) + P(m.conv_w.bias)[None, :, None])
    return x * gh[:, :, :, None] * gw[:, :, None, :]


def gam_ref(m: GAMAttention, x: torch.Tensor, training: bool) -> torch.Tensor:
    t = torch.einsum("kc,bcyx->bkyx", P(m.channel_fc1.weight), x) + P(m.channel_fc1.bias)[None, :, None, None]
    t = torch.einsum("ck,bkyx->bcyx", P(m.channel_fc2.weight), torch.relu(t))
    t = t + P(m.channel_fc2.bias)[None, :, None, None]
    xc = x * sig(t)
    s = torch.relu(bn_ref(conv2d_ref(xc, P(m.spatial_conv1.weight)), m.spatial_bn1, training))
    ms = sig(bn_ref(conv2d_ref(s, P(m.spatial_conv2.weight)), m.spatial_bn2, training))
    return xc * ms


REFERENCES = {"SEAttention": se_ref, "CBAM": cbam_ref, "ECAAttention": eca_ref, "CoordAtt": coord_ref,
              "GAMAttention": gam_ref}


# ----------------------------------------------------------------------------------------- registry, params
def test_names_and_aliases():
    for name, alias in [("SEAttention", "SE"), ("CBAM", "CBAMBlock"), ("ECAAttention", "ECA"), ("CoordAtt", "CA"),
                        ("GAMAttention", "GAM_Attention")]:
        assert registry.resolve(name).cls is CLASSES[name]
        assert registry.resolve(alias).cls is CLASSES[name]
        assert registry.resolve(alias).kind == "attention"


def nparams(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_param_counts_by_hand():
    # SE, C = 64, r = 16: hidden 4; fc1 64·4 + 4, fc2 4·64 + 64
    assert nparams(SEAttention(64)) == 260 + 320
    assert nparams(SEAttention(512)) == 2 * 512 * 32 + 32 + 512 == 33_312
    assert SEAttention(8).hidden == 1  # C < r: hidden width clamped to 1
    # CBAM, C = 64: the same MLP, + 7·7·2 conv weights (no bias) + BN(1) γ, β
    assert nparams(CBAM(64)) == 580 + 98 + 2
    assert nparams(CBAM(64, 8, 3)) == (64 * 8 + 8) + (8 * 64 + 64) + 18 + 2
    # ECA: k weights only
    assert nparams(ECAAttention(64)) == 3 and nparams(ECAAttention(512)) == 5
    assert nparams(ECAAttention(64, 5)) == 5
    # CoordAtt, C = 64: mip = max(8, 2) = 8; conv1 64·8 + 8, BN 2·8, conv_h and conv_w 8·64 + 64 each
    assert nparams(CoordAtt(64)) == 520 + 16 + 2 * 576
    assert CoordAtt(512).mip == 16 and nparams(CoordAtt(512)) == 25_648
    # GAM, C = 64, r = 4: hidden 16; Linear 64·16 + 16, 16·64 + 64; conv 49·64·16 twice; BN 2·16 + 2·64
    assert nparams(GAMAttention(64)) == 1040 + 1088 + 2 * 50_176 + 32 + 128 == 102_640


def test_eca_kernel_size_table():
    # t = int((log2 C + 1) / 2), rounded up to odd
    table = {1: 1, 4: 1, 8: 3, 16: 3, 32: 3, 64: 3, 128: 5, 256: 5, 512: 5, 1024: 5, 2048: 7}
    assert {c: eca_kernel_size(c) for c in table} == table
    assert ECAAttention(2048).conv.kernel_size == (7,) and ECAAttention(2048).conv.padding == (3,)
    assert eca_kernel_size(256, gamma=1, b=0) == 9  # log2(256) = 8 -> 9


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="odd"):
        ECAAttention(64, 4)
    with pytest.raises(ValueError, match="odd"):
        CBAM(64, 16, 6)
    with pytest.raises(ValueError, match="rate"):
        GAMAttention(256, 1024)  # a fork's [c1, c2] yaml: c2 would land in the rate
    with pytest.raises(ValueError, match="positive"):
        SEAttention(64, 0)
    with pytest.raises(ValueError, match="positive"):
        CoordAtt(64, 0)


# ----------------------------------------------------------------------------------------- forward vs reference
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("hw", [(5, 7), (1, 1)], ids=["5x7", "1x1"])
@pytest.mark.parametrize("name", sorted(CLASSES))
def test_forward_matches_reference(name, hw, training):
    c = 48
    torch.manual_seed(0)
    m = randomize(CLASSES[name](c)).train(training)
    x = torch.randn(3, c, *hw) * 2 + 0.3
    check_against_reference(m, x, REFERENCES[name](m, x.double(), training))


@pytest.mark.parametrize("name", ["CBAM", "GAMAttention"])
def test_batch1_training_on_1x1_uses_running_statistics(name):
    m = randomize(CLASSES[name](32))
    bns = [b for b in m.modules() if isinstance(b, nn.BatchNorm2d)]
    before = [b.running_mean.clone() for b in bns]
    x = torch.randn(1, 32, 1, 1)
    with torch.no_grad():
        y_train = m.train()(x)
        y_eval = m.eval()(x)
    torch.testing.assert_close(y_train, y_eval)  # the fallback normalises with the running statistics
    for b, r in zip(bns, before):
        torch.testing.assert_close(b.running_mean, r)


def test_coord_att_batch1_training_on_1x1():
    """The strip holds H + W = 2 equal values per channel: BN gives β exactly, and nothing fails."""
    m = randomize(CoordAtt(32)).train()
    x = torch.randn(1, 32, 1, 1)
    with torch.no_grad():
        y = m(x)
        beta = m.bn1.bias.view(1, -1, 1, 1)
        f = beta * torch.clamp(beta + 3, 0, 6) / 6
        expected = x * torch.sigmoid(m.conv_h(f)) * torch.sigmoid(m.conv_w(f))
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)


def test_fp16_large_activations_smoke():
    """Smoke test: a half model on activations with a large mean (an fp16 sum over 40·40 overflows) stays finite
    and close to fp32. It does not isolate the modules' fp32 casts: torch's CPU mean already accumulates in fp32, so
    those casts guard other backends and reductions that do not."""
    x = torch.randn(2, 32, 40, 40) + 60.0
    xh = x.half()
    assert not torch.isfinite(xh.sum((2, 3), dtype=torch.float16)).all()  # the naive fp16 sum overflows
    for name in sorted(CLASSES):
        m = randomize(CLASSES[name](32)).eval()
        with torch.no_grad():
            ref = m(xh.float())
            yh = copy.deepcopy(m).half()(xh)
        assert yh.dtype == torch.float16 and torch.isfinite(yh).all(), name
        assert (yh.float() - ref).abs().max() <= 2e-2 * ref.abs().max(), name


# ----------------------------------------------------------------------------------------- FLOPs
# x = (2, 32, 8, 8): n = B·C·H·W = 4096, B·C = 64, p = B·H·W = 128
FUNCTIONAL = {
    "SEAttention": 2 * 4096 + 2 * 64 + 2 * 2,  # hidden 2
    "CBAM": 6 * 4096 + 3 * 64 + 2 * 2 * 2 + 4 * 128,
    "ECAAttention": 2 * 4096 + 2 * 64,
    "CoordAtt": 4 * 4096 + 2 * 2 * 32 * 16 + 4 * 2 * 8 * 16,  # mip 8, H + W = 16
    "GAMAttention": 6 * 4096 + 4 * (2 * 8 * 64),  # hidden 8
}
THOP_MACS = {  # what thop counts by itself: convs, Linear (out.numel · fan-in), affine BatchNorm2d (4 per element)
    "SEAttention": 4 * 32 + 64 * 2,
    "CBAM": 2 * (4 * 32 + 64 * 2) + 128 * 98,  # the MLP runs twice; the fallback BN is not counted by thop
    "ECAAttention": 64 * 3,
    "CoordAtt": 256 * 32 + 4 * 256 + 2 * (512 * 8),
    "GAMAttention": 1024 * 32 + 4096 * 8 + 1024 * 32 * 49 + 4096 * 8 * 49,
}


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_flops_by_hand(name):
    thop = pytest.importorskip("thop")
    from utils.flops import count_macs

    m = CLASSES[name](32).eval()
    x = torch.randn(2, 32, 8, 8)
    with torch.no_grad():
        f = m.functional_flops((x,), m(x))
    assert f == FUNCTIONAL[name]
    thop_only, _ = thop.profile(copy.deepcopy(m), inputs=(x,), verbose=False)
    assert thop_only == THOP_MACS[name]
    assert count_macs(m, (x,)) == THOP_MACS[name] + FUNCTIONAL[name] / 2  # FLOPs -> MACs


# ----------------------------------------------------------------------------------------- model build
@pytest.mark.parametrize("name,args", [("SEAttention", [1024]), ("CBAM", []), ("ECAAttention", [1024, 3]),
                                       ("CA", []), ("GAMAttention", [{"rate": 8}])])
def test_model_build_with_the_module_before_detect(name, args):
    from models.yolo import Model

    cfg = yaml.safe_load((ROOT / "models" / "yolov5n.yaml").read_text())
    idx = len(cfg["backbone"]) + len(cfg["head"]) - 1  # the new layer's index: where Detect was
    cfg["head"].insert(len(cfg["head"]) - 1, [-1, 1, name, args])
    cfg["head"][-1][0] = [17, 20, idx]  # Detect takes P5 from the inserted layer
    model = Model(cfg).eval()
    layer = model.model[idx]
    assert isinstance(layer, registry.resolve(name).cls)
    assert layer.c1 == 256  # C3 [1024] × width 0.25
    torch.manual_seed(0)
    with torch.no_grad():
        pred, feats = model(torch.rand(1, 3, 64, 64))
    assert pred.shape == (1, 3 * (8 * 8 + 4 * 4 + 2 * 2), 85) and torch.isfinite(pred).all()
    assert feats[2].shape == (1, 3, 2, 2, 85)
    if name == "ECAAttention":
        assert layer.k_size == 3
    if name == "GAMAttention":
        assert layer.rate == 8 and layer.hidden == 32
