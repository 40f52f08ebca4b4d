"""ELA, BAM, scSE, GCT, EPSA and MHSA: the forward against independent float64 references written from the papers'
equations (einsum and explicit loops over kernel taps, groups and interpolation samples), parameter counts by hand,
FLOPs by hand, and module-specific properties.

The shared contract (shapes, gradients, fp16/bf16, ONNX, TorchScript) is in tests/test_attention.py, which loops
over every registered attention class.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from models import registry
from models.attention.bam import BAM
from models.attention.ela import ELA
from models.attention.epsa import EPSA
from models.attention.gct import GCT
from models.attention.mhsa import MHSA, attend, axis_embedding
from models.attention.psa import PolarizedSelfAttention
from models.attention.scse import scSE
from tests.attention_refs import P, sig, check_against_reference, randomize_layers
from utils.flops import count_functional_flops


def randomize(m: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial norm affines, running statistics and biases; weights doubled (gates away from 0.5)."""
    g = randomize_layers(m, seed, norms=(nn.BatchNorm2d, nn.GroupNorm), gain=2.0)
    if isinstance(m, GCT):  # the paper's γ = β = 0 make the gate 1: move them
        with torch.no_grad():
            m.alpha.copy_(0.5 + torch.rand(m.alpha.shape, generator=g))
            m.gamma.copy_(torch.randn(m.gamma.shape, generator=g))
            m.beta.copy_(0.3 * torch.randn(m.beta.shape, generator=g))
    return m


# ----------------------------------------------------------------------------------------- reference pieces


def conv2d_ref(x, w, bias=None, dilation=1, groups=1):
    """Stride-1 'same' convolution (zero padding dilation·(k // 2)) as a sum over groups and kernel taps of einsums."""
    b, c, h, wd = x.shape
    k = w.shape[-1]
    p = dilation * (k // 2)
    xp = torch.zeros(b, c, h + 2 * p, wd + 2 * p, dtype=x.dtype)
    xp[:, :, p:p + h, p:p + wd] = x
    cin, cout = c // groups, w.shape[0] // groups
    out = torch.zeros(b, w.shape[0], h, wd, dtype=x.dtype)
    for g in range(groups):
        for i in range(k):
            for j in range(k):
                patch = xp[:, g * cin:(g + 1) * cin, i * dilation:i * dilation + h, j * dilation:j * dilation + wd]
                out[:, g * cout:(g + 1) * cout] += torch.einsum("oc,bchw->bohw", w[g * cout:(g + 1) * cout, :, i, j], patch)
    return out if bias is None else out + bias.view(1, -1, 1, 1)


def conv_mod(x, conv: nn.Module):
    """A Conv2d module applied through :func:`conv2d_ref`."""
    return conv2d_ref(x, P(conv.weight), None if conv.bias is None else P(conv.bias), conv.dilation[0], conv.groups)


def bn_ref(x, bn: nn.BatchNorm2d, training: bool):
    """BatchNorm over dim 1: batch statistics (biased variance) or running statistics."""
    dims = [d for d in range(x.dim()) if d != 1]
    shape = [1, -1] + [1] * (x.dim() - 2)
    mean, var = (x.mean(dims), x.var(dims, unbiased=False)) if training else (P(bn.running_mean), P(bn.running_var))
    return (x - mean.view(shape)) / torch.sqrt(var.view(shape) + bn.eps) * P(bn.weight).view(shape) + P(bn.bias).view(shape)


def gn_ref(x, groups: int, gn: nn.GroupNorm):
    """GroupNorm by hand: statistics over (channels of the group, all positions) per image."""
    b, c = x.shape[:2]
    xg = x.reshape(b, groups, -1)
    mean, var = xg.mean(-1, keepdim=True), xg.var(-1, unbiased=False, keepdim=True)
    xn = ((xg - mean) / torch.sqrt(var + gn.eps)).reshape(x.shape)
    shape = [1, -1] + [1] * (x.dim() - 2)
    return xn * P(gn.weight).view(shape) + P(gn.bias).view(shape)


def fc(v, conv: nn.Module):
    """A 1×1 conv applied to (B, C) vectors: W·v + b."""
    return torch.einsum("oc,bc->bo", P(conv.weight).reshape(conv.weight.shape[0], -1), v) + P(conv.bias)


# ----------------------------------------------------------------------------------------- references
def conv1d_ref(z, w, groups):
    """Stride-1 'same' 1-D convolution without bias: y[o, l] = Σ_t Σ_c w[o, c, t] · z[group(o)·C_in + c, l + t − k // 2]."""
    b, c, length = z.shape
    k = w.shape[-1]
    p = k // 2
    zp = torch.zeros(b, c, length + 2 * p, dtype=z.dtype)
    zp[:, :, p:p + length] = z
    cin, cout = c // groups, w.shape[0] // groups
    y = torch.zeros(b, w.shape[0], length, dtype=z.dtype)
    for g in range(groups):
        for t in range(k):
            y[:, g * cout:(g + 1) * cout] += torch.einsum("oc,bcl->bol", w[g * cout:(g + 1) * cout, :, t],
                                                          zp[:, g * cin:(g + 1) * cin, t:t + length])
    return y


def ela_ref(m: ELA, x, training):
    def gate(z):  # (B, C, L) strip -> sigmoid(GN(F(z)))
        return sig(gn_ref(conv1d_ref(z, P(m.conv.weight), m.conv_groups), m.gn_groups, m.gn))

    return x * gate(x.mean(3))[:, :, :, None] * gate(x.mean(2))[:, :, None, :]


def bam_ref(m: BAM, x, training):
    h = m.hidden
    z = x.mean((2, 3))
    ch, sp = list(m.channel), list(m.spatial)
    if m.official:
        t = torch.relu(bn_ref(fc(z, ch[0])[:, :, None, None], ch[1], training)[:, :, 0, 0])
        mc = fc(t, ch[3])
    else:
        mc = bn_ref(fc(torch.relu(fc(z, ch[0])), ch[2])[:, :, None, None], ch[3], training)[:, :, 0, 0]
    s = torch.relu(bn_ref(conv_mod(x, sp[0]), sp[1], training))
    for i in (3, 6):
        assert sp[i].dilation == (m.dilation, m.dilation) and sp[i].weight.shape == (h, h, 3, 3)
        s = torch.relu(bn_ref(conv_mod(s, sp[i]), sp[i + 1], training))
    ms = conv_mod(s, sp[9])
    if not m.official:
        ms = bn_ref(ms, sp[10], training)
    return x + x * sig(mc[:, :, None, None] + ms)


def scse_ref(m: scSE, x, training):
    s = sig(fc(torch.relu(fc(x.mean((2, 3)), m.fc1)), m.fc2))[:, :, None, None]
    q = sig(torch.einsum("c,bchw->bhw", P(m.sconv.weight).view(-1), x) + P(m.sconv.bias))[:, None]
    return torch.maximum(x * s, x * q) if m.mode == "max" else x * s + x * q


def gct_ref(m: GCT, x, training):
    b, c = x.shape[:2]
    alpha, gamma, beta = (P(t).view(-1) for t in (m.alpha, m.gamma, m.beta))
    out = torch.empty_like(x)
    for i in range(b):
        if m.mode == "l2":
            s = torch.stack([alpha[j] * math.sqrt(float((x[i, j] ** 2).sum()) + m.epsilon) for j in range(c)])
            s_hat = math.sqrt(c) * s / math.sqrt(float((s ** 2).sum()) + m.epsilon)
        else:
            s = torch.stack([alpha[j] * x[i, j].abs().sum() for j in range(c)])
            s_hat = s / (s.abs().mean() + m.epsilon)
        out[i] = x[i] * (1 + torch.tanh(gamma * s_hat + beta))[:, None, None]
    return out


def epsa_ref(m: EPSA, x, training):
    cs, s_ = m.c_split, m.scales
    feats = []
    for i, k in enumerate(m.kernels):
        xi = x[:, i * cs:(i + 1) * cs] if m.split else x
        w = P(m.convs[i].weight)
        assert w.shape[-1] == k
        feats.append(conv2d_ref(xi, w, groups=m.groups[i]))
    z = torch.stack([sig(fc(torch.relu(fc(f.mean((2, 3)), m.se_fc1)), m.se_fc2)) for f in feats], 1)  # (B, S, C')
    a = torch.exp(z) / torch.exp(z).sum(1, keepdim=True)
    return torch.cat([feats[i] * a[:, i, :, None, None] for i in range(s_)], 1)


def interp_ref(table, n: int):
    """Linear resampling at cell centres, written with floor and lerp: src = max((i + ½)·L/n − ½, 0)."""
    length = table.shape[1]
    out = torch.empty(table.shape[0], n, dtype=table.dtype)
    for i in range(n):
        src = max((i + 0.5) * length / n - 0.5, 0.0)
        i0 = min(int(math.floor(src)), length - 1)
        i1 = min(i0 + 1, length - 1)
        lam = src - i0 if i0 < length - 1 else 0.0
        out[:, i] = (1 - lam) * table[:, i0] + lam * table[:, i1]
    return out


def mhsa_ref(m: MHSA, x, training):
    b, c, h, w = x.shape
    nh, d = m.heads, m.dim_head
    xn = gn_ref(x, 1, m.norm) if m.prenorm else x

    def proj(conv):  # (B, n_h, N, d)
        t = torch.einsum("oc,bchw->bohw", P(conv.weight)[:, :, 0, 0], xn)
        return t.reshape(b, nh, d, h * w).transpose(2, 3)

    q, k, v = proj(m.query), proj(m.key), proj(m.value)
    rh, rw = interp_ref(P(m.pos_h), h), interp_ref(P(m.pos_w), w)
    r = torch.stack([rh[:, y] + rw[:, xx] for y in range(h) for xx in range(w)])  # (N, d), row-major positions
    logits = (torch.einsum("bnid,bnjd->bnij", q, k) + torch.einsum("bnid,jd->bnij", q, r)) / math.sqrt(d)
    a = torch.exp(logits - logits.amax(-1, keepdim=True))
    a = a / a.sum(-1, keepdim=True)
    out = torch.einsum("bnij,bnjd->bnid", a, v)  # (B, n_h, N, d)
    return out.transpose(2, 3).reshape(b, c, h, w)


CASES = {  # name -> (builder at C, reference, whether BN statistics make train differ from eval)
    "ELA": (lambda c: ELA(c), ela_ref, False),
    "ELA-S": (lambda c: ELA(c, "S"), ela_ref, False),
    "BAM": (lambda c: BAM(c, 8, 2), bam_ref, True),
    "BAM-official": (lambda c: BAM(c, 8, 2, official=True), bam_ref, True),
    "scSE": (lambda c: scSE(c), scse_ref, False),
    "scSE-max": (lambda c: scSE(c, 4, "max"), scse_ref, False),
    "GCT": (lambda c: GCT(c), gct_ref, False),
    "GCT-l1": (lambda c: GCT(c, 1e-5, "l1"), gct_ref, False),
    "EPSA": (lambda c: EPSA(c), epsa_ref, False),
    "EPSA-split": (lambda c: EPSA(c, split=True), epsa_ref, False),
    "MHSA": (lambda c: MHSA(c, 4, 3), mhsa_ref, False),
    "MHSA-bare": (lambda c: MHSA(c, 2, 4, prenorm=False), mhsa_ref, False),
}


# ----------------------------------------------------------------------------------------- forward vs reference
@pytest.mark.parametrize("hw", [(5, 7), (1, 1)], ids=["5x7", "1x1"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_forward_matches_reference(name, hw):
    build, ref_fn, has_bn = CASES[name]
    c = 16
    torch.manual_seed(0)
    m = randomize(build(c))
    x = torch.randn(2, c, *hw) * 2 + 0.3
    for training in ([False, True] if has_bn else [False]):
        m.train(training)
        check_against_reference(m, x, ref_fn(m, x.double(), training))


# ----------------------------------------------------------------------------------------- registry, parameters
def test_names_and_aliases():
    for name, alias, cls in [("ELA", "ELA", ELA), ("BAM", "BAMBlock", BAM), ("scSE", "SCSE", scSE), ("GCT", "GCT", GCT),
                             ("EPSA", "PSAModule", EPSA), ("EPSA", "PyramidSplitAttention", EPSA),
                             ("MHSA", "BoTAttention", MHSA)]:
        assert registry.resolve(name).cls is cls and registry.resolve(alias).cls is cls
        assert registry.resolve(alias).kind == "attention"
    assert registry.resolve("PSA").cls is PolarizedSelfAttention  # EPSA does not take the PSA name


def nparams(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_param_counts_by_hand():
    # ELA at C = 64: conv C·(C/g)·k, no bias, + GN 2·C
    assert nparams(ELA(64)) == 64 * 7 + 128  # B: depthwise, k = 7
    assert nparams(ELA(64, "T")) == 64 * 5 + 128
    assert nparams(ELA(64, "S")) == 64 * 8 * 5 + 128 and nparams(ELA(64, "L")) == 64 * 8 * 7 + 128  # C/8 groups
    assert nparams(ELA(256)) == 2_304
    # BAM at C = 64, r = 16: h = 4
    channel = (64 * 4 + 4) + (4 * 64 + 64)
    spatial = (64 * 4 + 4) + 2 * 4 + 2 * (9 * 16 + 4 + 2 * 4) + (4 + 1)
    assert nparams(BAM(64)) == channel + 2 * 64 + spatial + 2  # paper: BN(C) and BN(1) at the branch ends
    assert nparams(BAM(64, official=True)) == channel + 2 * 4 + spatial  # official: BN(h) in the MLP
    assert nparams(BAM(256)) == 17_843 and nparams(BAM(256, official=True)) == 17_361
    # scSE at C = 64, r = 2: h = 32
    assert nparams(scSE(64)) == (64 * 32 + 32) + (32 * 64 + 64) + (64 + 1)
    assert nparams(scSE(256)) == 66_177
    # GCT: α, γ, β
    assert nparams(GCT(64)) == 192 and nparams(GCT(256)) == 768
    # EPSA at C = 64: C' = 16, groups 1, 4, 8, 16; SE hidden max(16 // 16, 1) = 1
    se = (16 * 1 + 1) + (1 * 16 + 16)
    assert nparams(EPSA(64)) == 64 * 16 * 9 + 64 * 4 * 25 + 64 * 2 * 49 + 64 * 1 * 81 + se
    assert nparams(EPSA(64, split=True)) == 16 * 16 * 9 + 16 * 4 * 25 + 16 * 2 * 49 + 16 * 1 * 81 + se
    assert nparams(EPSA(256)) == 433_732 and nparams(EPSA(256, split=True)) == 108_868
    # MHSA at C = 64: 4 heads, d = 16, L = 14
    assert nparams(MHSA(64)) == 3 * 64 * 64 + 2 * 16 * 14 + 2 * 64
    assert nparams(MHSA(64, prenorm=False)) == 3 * 64 * 64 + 2 * 16 * 14
    assert nparams(MHSA(256)) == 198_912


def test_group_and_head_clamping():
    assert (ELA(16, "T").gn_groups, ELA(32, "T").gn_groups) == (16, 32)
    assert ELA(16, "S").conv_groups == 2
    assert EPSA(16).groups == (1, 4, 4, 4) and EPSA(32).groups == (1, 4, 8, 8)
    assert EPSA(16, split=True).convs[3].weight.shape == (4, 1, 9, 9)
    assert MHSA(16).heads == 4 and MHSA(24, heads=5).heads == 4 and MHSA(16, heads=3).dim_head == 8


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="phi"):
        ELA(32, "X")
    with pytest.raises(ValueError, match="odd"):
        ELA(32, "B", 4)
    with pytest.raises(ValueError, match="positive"):
        BAM(32, 0)
    with pytest.raises(ValueError, match="mode"):
        scSE(32, 2, "mul")
    with pytest.raises(ValueError, match="mode"):
        GCT(32, 1e-5, "l3")
    with pytest.raises(ValueError, match="divisible"):
        EPSA(18)
    with pytest.raises(ValueError, match="one group count per kernel"):
        EPSA(32, (3, 5), (1, 4, 8))


# ----------------------------------------------------------------------------------------- module properties
def test_gct_starts_as_identity_and_alpha_gets_a_gradient():
    m = GCT(16)
    x = torch.randn(2, 16, 5, 6, requires_grad=True)
    y = m(x)
    torch.testing.assert_close(y, x)
    (y * torch.randn_like(y)).sum().backward()
    assert m.alpha.grad is not None and torch.count_nonzero(m.alpha.grad) == 0  # γ = 0: α has no effect yet
    assert torch.count_nonzero(m.gamma.grad) > 0 and torch.count_nonzero(m.beta.grad) > 0


def test_gct_fp16_large_activations():
    """Σ x² over 40×40 positions of activations ~60 is ~6·10⁶, beyond fp16: the gate is computed in fp32."""
    m = randomize(GCT(16)).eval()
    x = torch.randn(2, 16, 40, 40) + 60.0
    with torch.no_grad():
        ref = m(x.half().float())
        yh = copy.deepcopy(m).half()(x.half())
    assert torch.isfinite(yh).all()
    torch.testing.assert_close(yh.float(), ref, rtol=2e-3, atol=2e-2)


@pytest.mark.parametrize("n", [1, 3, 7, 14, 23, 40])
def test_axis_embedding_is_linear_interpolation(n):
    table = torch.randn(5, 14, dtype=torch.float64)
    e = axis_embedding(table, n)
    torch.testing.assert_close(e, interp_ref(table, n), rtol=1e-12, atol=1e-12)
    if n > 1:  # F.interpolate agrees (its ONNX export differs at n = 1, one reason it is not used)
        ref = F.interpolate(table[None], size=n, mode="linear", align_corners=False)[0]
        torch.testing.assert_close(e, ref, rtol=1e-12, atol=1e-12)
    if n == 14:
        torch.testing.assert_close(e, table, rtol=0, atol=1e-15)


def test_attend_matches_explicit_softmax():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 50, 5, generator=g) for _ in range(3))
    ref = torch.softmax(q @ k.transpose(-1, -2) * 0.7, -1) @ v
    torch.testing.assert_close(attend(q, k, v, 0.7), ref, rtol=1e-5, atol=1e-5)


def test_mhsa_position_term_reaches_the_output():
    """Position embeddings change the output; a content-free input (all positions equal) is still position-aware."""
    m = randomize(MHSA(16, pos_size=4)).eval()
    x = torch.randn(1, 16, 1, 1).expand(1, 16, 6, 5).contiguous() + 0.01 * torch.randn(1, 16, 6, 5)
    with torch.no_grad():
        y = m(x)
        m.pos_h.zero_()
        m.pos_w.zero_()
        assert (m(x) - y).abs().max() > 1e-3


def test_mhsa_attention_map_matches_full_matrix():
    m = randomize(MHSA(16, pos_size=5)).eval()
    x = torch.randn(2, 16, 6, 7)
    with torch.no_grad():
        lm = m.attention_map((x,), m(x))
        q, k, _ = m.qkv(x)
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(m.dim_head), -1)  # (B, n_h, N, N)
    expected = a.sum(2).mean(1).view(2, 6, 7)
    torch.testing.assert_close(lm.spatial, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(lm.spatial.mean((1, 2)), torch.ones(2), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(CASES))
def test_attention_maps_are_well_formed(name):
    m = randomize(CASES[name][0](16)).eval()
    x = torch.randn(2, 16, 5, 6)
    with torch.no_grad():
        lm = m.attention_map((x,), m(x))
    if lm.spatial is not None:
        assert lm.spatial.shape == (2, 5, 6) and torch.isfinite(lm.spatial).all()
    if lm.channel is not None:
        assert lm.channel.shape == (2, 16) and torch.isfinite(lm.channel).all()
    assert lm.spatial is not None or lm.channel is not None


# ----------------------------------------------------------------------------------------- FLOPs
# x = (2, 32, 8, 8): n = B·C·H·W = 4096, B·C = 64, p = B·H·W = 128, N = H·W = 64
FUNCTIONAL = {
    "ELA": 4 * 4096 + 9 * (2 * 32 * 16) + 6 * 2 * 16,  # GN 16 groups, strips of H + W = 16
    "BAM": 4096 + 64 + 4 * 4096 + 3 * 2 * (2 * 128) + 2 * 64 + 2 * 128,  # h = 2
    "BAM-official": 4096 + 64 + 4 * 4096 + 3 * 2 * (2 * 128) + 2 * (2 * 2),
    "scSE": 4 * 4096 + 2 * 64 + 2 * 16 + 128,  # h = 16
    "GCT": 3 * 4096 + 11 * 64 + 2 * 2,
    "EPSA": 2 * 4096 + 2 * 64 + 3 * 64 + 2 * 4 * 1,  # SE hidden 1
    "MHSA": 7 * 4096 + 2 * 8 * 14 * 16 + 8 * 64 + 4096 + 4 * 2 * 64 * 64 * 32 + 4 * (2 * 4 * 64 * 64),  # d = 8
}
BUILD = {"ELA": lambda: ELA(32), "BAM": lambda: BAM(32), "BAM-official": lambda: BAM(32, official=True),
         "scSE": lambda: scSE(32), "GCT": lambda: GCT(32), "EPSA": lambda: EPSA(32), "MHSA": lambda: MHSA(32)}


@pytest.mark.parametrize("name", sorted(FUNCTIONAL))
def test_flops_by_hand(name):
    thop = pytest.importorskip("thop")
    from utils.flops import count_macs

    m = BUILD[name]().eval()
    x = torch.randn(2, 32, 8, 8)
    assert count_functional_flops(m, (x,)) == FUNCTIONAL[name]
    thop_only, _ = thop.profile(copy.deepcopy(m), inputs=(x,), verbose=False)
    assert count_macs(m, (x,)) == thop_only + FUNCTIONAL[name] / 2  # FLOPs -> MACs
    if name == "scSE":  # 1×1 convs on (B, C, 1, 1) twice and on the map once
        assert thop_only == 2 * 16 * 32 + 2 * 32 * 16 + 128 * 32
    if name == "MHSA":  # three C×C projections per position
        assert thop_only == 3 * 4096 * 32
    if name == "GCT":
        assert thop_only == 0


# ----------------------------------------------------------------------------------------- model build
def test_model_build_with_every_module_before_detect():
    import yaml

    from models.yolo import Model
    from tests.conftest import ROOT

    cfg = yaml.safe_load((ROOT / "models" / "yolov5n.yaml").read_text())
    rows = yaml.safe_load("""
    - [-1, 1, ELA, [1024, T]]
    - [-1, 1, BAMBlock, [1024, 8, 2]]
    - [-1, 1, SCSE, [1024, 16, max]]
    - [-1, 1, GCT, [1024, 1.0e-5, l1]]
    - [-1, 1, PSAModule, [1024, [3, 5, 7, 9], [1, 4, 8, 16], 16, True]]
    - [-1, 1, BoTAttention, [1024, 8, 20]]
    """)
    first = len(cfg["backbone"]) + len(cfg["head"]) - 1  # index of the first inserted layer: where Detect was
    cfg["head"][-1:-1] = rows
    cfg["head"][-1][0] = [17, 20, first + len(rows) - 1]
    model = Model(cfg).eval()
    layers = [model.model[first + i] for i in range(len(rows))]
    assert [type(m).__name__ for m in layers] == ["ELA", "BAM", "scSE", "GCT", "EPSA", "MHSA"]
    assert all(m.c1 == 256 for m in layers)
    assert (layers[0].phi, layers[1].reduction, layers[2].mode, layers[3].mode) == ("T", 8, "max", "l1")
    assert layers[4].split and (layers[5].heads, layers[5].pos_size) == (8, 20)
    with torch.no_grad():
        pred, _ = model(torch.rand(1, 3, 64, 64))
    assert pred.shape == (1, 3 * (8 * 8 + 4 * 4 + 2 * 2), 85) and torch.isfinite(pred).all()
