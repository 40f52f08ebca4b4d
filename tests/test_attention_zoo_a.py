"""EMAttention, SpatialGroupEnhance, CrissCrossAttention, S2Attention, SOCA and DAAttention: the forward against
independent float64 references written from the papers' equations (explicit loops and einsums), parameter counts
by hand, options, FLOPs sanity.

The shared contract (shapes, gradients, fp16/bf16, ONNX, TorchScript) is in tests/test_attention.py, which
loops over every registered attention class.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn as nn

import models.attention  # noqa: F401  (registers every module)
from models import registry
from models.attention.criss_cross import CrissCrossAttention
from models.attention.danet import DAAttention
from models.attention.ema import EMAttention
from models.attention.s2_attention import S2Attention
from models.attention.sge import SpatialGroupEnhance
from models.attention.soca import SOCA
from tests.attention_refs import P, sig, softmax, check_against_reference, randomize_layers
from utils.flops import count_functional_flops


def randomize(m: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial norm affines, biases and learned scalars; conv/linear weights doubled (gates away from 0.5)."""
    g = randomize_layers(m, seed, norms=(nn.GroupNorm,), layers=(nn.Conv2d, nn.Linear), gain=2.0)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("gamma") or isinstance(m, SpatialGroupEnhance):  # scalars / SGE's γ, β start at 0, 1
                p.copy_(torch.randn(p.shape, generator=g))
    return m


def pointwise(conv: nn.Module, t: torch.Tensor) -> torch.Tensor:
    """A 1×1 conv (or a Linear, without bias here) on the channels of a (B, C, ...) tensor: W·t + b."""
    w = P(conv.weight).reshape(conv.weight.shape[0], -1)
    out = torch.einsum("oc,bc...->bo...", w, t)
    if conv.bias is not None:
        out = out + P(conv.bias).view(1, -1, *[1] * (t.dim() - 2))
    return out


def conv3x3_ref(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """A stride-1 3×3 conv with zero padding 1, as a sum over the nine taps."""
    b, _, h, w = x.shape
    xp = torch.zeros(b, x.shape[1], h + 2, w + 2, dtype=x.dtype)
    xp[:, :, 1:h + 1, 1:w + 1] = x
    out = P(conv.bias).view(1, -1, 1, 1).expand(b, -1, h, w).clone()
    for i in range(3):
        for j in range(3):
            out += torch.einsum("oc,bchw->bohw", P(conv.weight)[:, :, i, j], xp[:, :, i:i + h, j:j + w])
    return out


# ----------------------------------------------------------------------------------------- references
def ema_ref(m: EMAttention, x: torch.Tensor) -> torch.Tensor:
    b_, c_all, h, w = x.shape
    c = c_all // m.groups
    out = torch.empty_like(x)
    for b in range(b_):
        for g in range(m.groups):
            xg = x[b:b + 1, g * c:(g + 1) * c]  # (1, c, H, W)
            strips = pointwise(m.conv1x1, torch.cat([xg.mean(3), xg.mean(2)], 2))  # shared conv on [z^H; z^W]
            y = xg * sig(strips[:, :, :h, None]) * sig(strips[:, :, None, h:])
            mu, var = y.mean((2, 3), keepdim=True), y.var((2, 3), unbiased=False, keepdim=True)
            x1 = (y - mu) / torch.sqrt(var + m.gn.eps)
            x1 = x1 * P(m.gn.weight).view(1, -1, 1, 1) + P(m.gn.bias).view(1, -1, 1, 1)
            x2 = conv3x3_ref(xg, m.conv3x3)
            a1, a2 = softmax(x1.mean((2, 3)), 1), softmax(x2.mean((2, 3)), 1)  # (1, c)
            mmap = torch.einsum("bc,bchw->bhw", a1, x2) + torch.einsum("bc,bchw->bhw", a2, x1)
            out[b:b + 1, g * c:(g + 1) * c] = xg * sig(mmap)[:, None]
    return out


def sge_ref(m: SpatialGroupEnhance, x: torch.Tensor) -> torch.Tensor:
    b_, c_all, h, w = x.shape
    c, npos = c_all // m.groups, h * w
    out = torch.empty_like(x)
    for b in range(b_):
        for g in range(m.groups):
            vecs = x[b, g * c:(g + 1) * c].reshape(c, npos)  # columns: x_i
            gvec = vecs.sum(1) / npos
            ci = torch.stack([gvec @ vecs[:, i] for i in range(npos)])
            mu = ci.sum() / npos
            div = max(npos - 1, 1) if m.unbiased else npos
            sigma = torch.sqrt(((ci - mu) ** 2).sum() / div)
            a = P(m.weight)[0, g, 0, 0] * (ci - mu) / (sigma + m.eps) + P(m.bias)[0, g, 0, 0]
            out[b, g * c:(g + 1) * c] = (vecs * sig(a)).reshape(c, h, w)
    return out


def cca_ref(m: CrissCrossAttention, x: torch.Tensor) -> torch.Tensor:
    for _ in range(m.recurrence):
        b_, _, h, w = x.shape
        q, k, v = pointwise(m.query_conv, x), pointwise(m.key_conv, x), pointwise(m.value_conv, x)
        scale = P(m.gamma) if m.gamma is not None else 1.0
        out = x.clone()
        for b in range(b_):
            for i in range(h):
                for j in range(w):
                    omega = [(r, j) for r in range(h) if r != i] + [(i, s) for s in range(w)]  # H + W − 1
                    d = torch.stack([q[b, :, i, j] @ k[b, :, r, s] for r, s in omega])
                    a = softmax(d, 0)
                    ctx = sum(a[t] * v[b, :, r, s] for t, (r, s) in enumerate(omega))
                    out[b, :, i, j] = x[b, :, i, j] + scale * ctx
        x = out
    return x


def shift_ref(t: torch.Tensor, axis: int, step: int) -> torch.Tensor:
    """out[i] = t[i − step] along ``axis``, the border index clamped (it keeps its own value)."""
    n = t.shape[axis]
    idx = (torch.arange(n) - step).clamp(0, n - 1)
    return t.index_select(axis, idx)


def s2_ref(m: S2Attention, x: torch.Tensor) -> torch.Tensor:
    c = x.shape[1]
    xbar = pointwise(m.mlp1, x)
    xs = [xbar[:, :c], xbar[:, c:2 * c], xbar[:, 2 * c:]]
    q = [0, c // 4, c // 2, 3 * c // 4, c]
    for part, moves in ((0, [(3, 1), (3, -1), (2, 1), (2, -1)]), (1, [(2, 1), (2, -1), (3, 1), (3, -1)])):
        xs[part] = torch.cat([shift_ref(xs[part][:, q[t]:q[t + 1]], *moves[t]) for t in range(4)], 1)
    a = sum(xk.sum((2, 3)) for xk in xs)  # Σ_k 1·X_k
    if m.pool == "mean":
        a = a / (x.shape[2] * x.shape[3])
    hidden = torch.nn.functional.gelu(pointwise(m.sa_fc1, a))
    abar = softmax(pointwise(m.sa_fc2, hidden).reshape(-1, 3, c), 1)
    fused = sum(abar[:, t, :, None, None] * xs[t] for t in range(3))
    return pointwise(m.mlp2, fused)


def soca_ref(m: SOCA, x: torch.Tensor) -> torch.Tensor:
    b_, c, h, w = x.shape
    s = h * w
    xm = x.reshape(b_, c, s)
    ibar = (torch.eye(s, dtype=x.dtype) - torch.ones(s, s, dtype=x.dtype) / s) / s
    cov = xm @ ibar @ xm.transpose(1, 2)
    eye = torch.eye(c, dtype=x.dtype)
    tr = torch.stack([torch.trace(cv) for cv in cov]).view(-1, 1, 1)
    y, z = cov / tr, eye.expand(b_, c, c)
    for _ in range(m.iterations):
        t = 0.5 * (3 * eye - z @ y)
        y, z = y @ t, t @ z
    zdesc = (y * torch.sqrt(tr)).sum(2) / c  # row means of Ŷ
    zdesc = torch.where(tr.view(-1, 1) > 0, zdesc, torch.zeros_like(zdesc))  # Σ = 0 (a 1×1 map): z = 0
    wgate = sig(pointwise(m.conv_du[2], torch.relu(pointwise(m.conv_du[0], zdesc))))
    return x * wgate[:, :, None, None]


def danet_ref(m: DAAttention, x: torch.Tensor) -> torch.Tensor:
    b_, c, h, w = x.shape
    a = x.reshape(b_, c, h * w)
    bm = pointwise(m.pam.key_conv, x).reshape(b_, -1, h * w)  # the paper's B
    cm = pointwise(m.pam.query_conv, x).reshape(b_, -1, h * w)  # the paper's C
    dm = pointwise(m.pam.value_conv, x).reshape(b_, c, h * w)
    s = softmax(torch.einsum("bki,bkj->bji", bm, cm), 2)  # s[b, j, i] = softmax_i(B_i · C_j)
    ep = P(m.pam.gamma) * torch.einsum("bji,bci->bcj", s, dm) + a
    e = torch.einsum("bin,bjn->bji", a, a)  # e[b, j, i] = A_i · A_j
    xw = softmax(-e if m.cam.official else e, 2)
    ec = P(m.cam.gamma) * torch.einsum("bji,bin->bjn", xw, a) + a
    return (ep + ec).reshape(b_, c, h, w)


CASES = {  # name: (builder, reference)
    "EMAttention": (lambda: EMAttention(32, 4), ema_ref),  # 4 groups of 8 channels: non-trivial softmaxes
    "EMAttention-default": (lambda: EMAttention(32), ema_ref),  # 32 groups of one channel
    "SpatialGroupEnhance": (lambda: SpatialGroupEnhance(32, 4), sge_ref),
    "SpatialGroupEnhance-unbiased": (lambda: SpatialGroupEnhance(32, 8, unbiased=True), sge_ref),
    "CrissCrossAttention": (lambda: CrissCrossAttention(16), cca_ref),
    "CrissCrossAttention-paper": (lambda: CrissCrossAttention(16, 4, learnable_scale=False), cca_ref),
    "CrissCrossAttention-R2": (lambda: CrissCrossAttention(16, 8, 2), cca_ref),
    "S2Attention": (lambda: S2Attention(16), s2_ref),
    "S2Attention-mean": (lambda: S2Attention(12, "mean"), s2_ref),  # quarters of 3 channels
    "SOCA": (lambda: SOCA(32), soca_ref),
    "SOCA-r4-N3": (lambda: SOCA(16, 4, 3), soca_ref),
    "DAAttention": (lambda: DAAttention(16), danet_ref),
    "DAAttention-official": (lambda: DAAttention(16, 4, official_cam=True), danet_ref),
}


# ----------------------------------------------------------------------------------------- forward vs reference
@pytest.mark.parametrize("hw", [(4, 5), (1, 1), (1, 3)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("case", sorted(CASES))
def test_forward_matches_reference(case, hw):
    torch.manual_seed(0)
    builder, ref_fn = CASES[case]
    m = randomize(builder()).train()
    x = torch.randn(2, m.c1, *hw) * 0.5 + 0.2
    with torch.no_grad():
        ref = ref_fn(m, x.double())
    check_against_reference(m, x, ref, tol32=1e-4, tol64=1e-9, changes=hw == (4, 5))


# ----------------------------------------------------------------------------------------- names, parameters
def test_names_and_aliases():
    for cls, aliases in [(EMAttention, ("EMA_attention", "EMAModule")), (SpatialGroupEnhance, ("SGE",)),
                         (CrissCrossAttention, ("CCA",)), (S2Attention, ("S2MLPv2Attention",)), (SOCA, ()),
                         (DAAttention, ("DANet",))]:
        for name in (cls.__name__, *aliases):
            assert registry.resolve(name).cls is cls and registry.resolve(name).kind == "attention"
        assert getattr(models.attention, cls.__name__) is cls


def nparams(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_param_counts_by_hand():
    # EMA: c = C/G; conv1x1 c² + c, conv3x3 9c² + c, GN 2c
    assert nparams(EMAttention(256)) == 10 * 8 ** 2 + 4 * 8 == 672  # G = 32
    assert nparams(EMAttention(64, 4)) == 10 * 16 ** 2 + 4 * 16
    assert EMAttention(16).groups == 16 and EMAttention(48).groups == 24 and EMAttention(48, 5).groups == 4
    # SGE: γ, β per group
    assert nparams(SpatialGroupEnhance(256)) == 128 and SpatialGroupEnhance(16).groups == 16
    assert SpatialGroupEnhance(96).groups == 48
    # CCA, C = 256, C' = 32: Q, K 256·32 + 32 each, V 256² + 256, γ
    assert nparams(CrissCrossAttention(256)) == 2 * (256 * 32 + 32) + 256 * 256 + 256 + 1 == 82_241
    assert nparams(CrissCrossAttention(256, learnable_scale=False)) == 82_240
    assert CrissCrossAttention(4).c_ == 1
    # S2: MLP1 3C² + 3C, split attention C² + 3C² (no bias), MLP2 C² + C
    assert nparams(S2Attention(256)) == 8 * 256 ** 2 + 4 * 256 == 525_312
    # SOCA, C = 256, r = 16: 256·16 + 16 + 16·256 + 256
    assert nparams(SOCA(256)) == 8_464 and SOCA(8).hidden == 1
    # DANet: PAM as CCA's Q, K, V + α; CAM β
    assert nparams(DAAttention(256)) == 82_242
    assert {n for n, _ in DAAttention(16).named_parameters()} == {
        "pam.query_conv.weight", "pam.query_conv.bias", "pam.key_conv.weight", "pam.key_conv.bias",
        "pam.value_conv.weight", "pam.value_conv.bias", "pam.gamma", "cam.gamma"}


def test_initial_state_and_bad_options():
    x = torch.randn(2, 16, 5, 6)
    with torch.no_grad():
        torch.testing.assert_close(CrissCrossAttention(16)(x), x)  # γ = 0: identity
        torch.testing.assert_close(DAAttention(16)(x), 2 * x)  # α = β = 0: PAM + CAM = 2x
        torch.testing.assert_close(SpatialGroupEnhance(16)(x), x * torch.sigmoid(torch.tensor(1.0)))  # γ 0, β 1
    with pytest.raises(ValueError, match="pool"):
        S2Attention(16, "max")
    with pytest.raises(ValueError, match="positive"):
        SOCA(16, 0)
    with pytest.raises(ValueError, match="positive"):
        CrissCrossAttention(16, 8, 0)
    with pytest.raises(ValueError, match="positive"):
        DAAttention(16, 0)


# ----------------------------------------------------------------------------------------- module specifics
def test_soca_newton_schulz_approaches_the_matrix_square_root():
    """With many iterations the normalised covariance is Σ^{1/2} (eigen-decomposition in float64)."""
    m = SOCA(8, 4, 40).double()
    x = torch.randn(2, 8, 6, 7, dtype=torch.float64) * 3 + 1
    xm = x.flatten(2) - x.flatten(2).mean(-1, keepdim=True)
    cov = xm @ xm.transpose(1, 2) / 42
    lam, u = torch.linalg.eigh(cov)
    root = u @ torch.diag_embed(lam.clamp_min(0).sqrt()) @ u.transpose(1, 2)
    torch.testing.assert_close(root @ root, cov)
    torch.testing.assert_close(m.descriptor(x), root.mean(-1), rtol=1e-8, atol=1e-8)


def test_soca_constant_map_gives_a_zero_descriptor():
    m = SOCA(16)
    for x in (torch.randn(2, 16, 1, 1), torch.full((2, 16, 4, 4), 3.0)):
        z = m.descriptor(x)
        assert torch.equal(z, torch.zeros_like(z))


def test_danet_traced_graph_equals_the_eager_sdpa_path():
    """Eager mode uses scaled_dot_product_attention, traced graphs the explicit softmax: same numbers."""
    m = randomize(DAAttention(16)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ts = torch.jit.trace(m, torch.randn(1, 16, 6, 6))
    x = torch.randn(2, 16, 7, 9) * 2
    with torch.no_grad():
        torch.testing.assert_close(ts(x), m(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(m.double()(x.double()), danet_ref(m, x.double()), rtol=1e-9, atol=1e-9)


def test_danet_eager_path_runs_on_the_memory_bounded_kernel():
    """On CPU the flash kernel accepts the PAM's inputs (with the math fallback disabled the call would raise), so
    the (H·W)² matrix is never materialised in eager mode."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    m = randomize(DAAttention(16)).eval()
    x = torch.randn(2, 16, 6, 7)
    with torch.no_grad():
        y = m(x)
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            torch.testing.assert_close(m(x), y)
            torch.testing.assert_close(m.half()(x.half()).float(), y, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("case", ["SpatialGroupEnhance", "CrissCrossAttention", "CrissCrossAttention-R2",
                                  "DAAttention-official"])
def test_onnx_parity_with_non_zero_scales(case):
    """The registry's export tests build these with their scales at 0 (attention without effect): export the
    randomised modules (dynamic H, W) and compare ONNX Runtime with eager mode at another size."""
    pytest.importorskip("onnxruntime", reason="onnxruntime is not importable: ONNX parity not checked")
    from tests.test_attention import _export, _ort_check

    m = randomize(CASES[case][0]()).eval()
    _ort_check(_export(m, torch.randn(1, m.c1, 6, 6), dynamic=True), m, torch.randn(2, m.c1, 5, 9))


def test_criss_cross_self_position_counted_once():
    """A position attends to H + W − 1 positions: with q·k = 0 everywhere the weights are uniform over them."""
    m = CrissCrossAttention(8, 8, learnable_scale=False)
    with torch.no_grad():
        for conv in (m.query_conv, m.key_conv):
            conv.weight.zero_()
            conv.bias.zero_()
        a_col, a_row = m.weights(torch.randn(1, 8, 3, 5))
    assert torch.all(a_col.diagonal(dim1=1, dim2=3) == 0)  # (B, W, H) diagonal h' = h
    torch.testing.assert_close(a_col.sum(-1) + a_row.sum(-1), torch.ones(1, 3, 5))
    torch.testing.assert_close(a_row, torch.full_like(a_row, 1 / 7))


@pytest.mark.parametrize("case", ["EMAttention", "SpatialGroupEnhance", "CrissCrossAttention-paper", "S2Attention",
                                  "SOCA", "DAAttention"])
def test_attention_maps(case):
    m = randomize(CASES[case][0]()).eval()
    x = torch.randn(2, m.c1, 5, 6)
    with torch.no_grad():
        am = m.attention_map((x,), m(x))
    if am.spatial is not None:
        assert am.spatial.shape == (2, 5, 6) and torch.isfinite(am.spatial).all()
    if am.channel is not None:
        assert am.channel.shape == (2, m.c1) and torch.isfinite(am.channel).all()
    if case in ("CrissCrossAttention-paper", "DAAttention"):  # attention received: each query gives 1 in total
        torch.testing.assert_close(am.spatial.mean((1, 2)), torch.ones(2, dtype=am.spatial.dtype))
    if case == "DAAttention":
        torch.testing.assert_close(am.channel.mean(1), torch.ones(2, dtype=am.channel.dtype))


# ----------------------------------------------------------------------------------------- FLOPs
def test_flops_by_hand_and_sanity():
    # x = (2, 16, 4, 4): n = 512, B·C = 32, H·W = 16
    b, c, h, w = 2, 16, 4, 4
    n, bc, npos = b * c * h * w, b * c, h * w
    expected = {
        SpatialGroupEnhance(c, 4): 4 * n + bc + 8 * (b * 4 * npos) + 4 * (b * 4),
        CrissCrossAttention(c): 2 * 2 * (b * npos * 8) + 3 * (b * npos * 8) + 2 * c * (b * npos * 8) + 3 * n,
        S2Attention(c): 3 * n + 8 * bc * c + bc + 9 * bc + 5 * n,
        DAAttention(c): n + b * (2 * npos ** 2 * 2 + 3 * npos ** 2 + 2 * npos ** 2 * c) + 2 * n
        + b * (4 * c * c * npos + 3 * c * c) + 2 * n,
    }
    x = torch.randn(b, c, h, w)
    for m, f in expected.items():
        assert count_functional_flops(m.eval(), (x,)) == f, type(m).__name__
    for m in (EMAttention(c, 4), SOCA(c), *expected):
        f1 = count_functional_flops(m, (x,))
        assert 0 < f1 < count_functional_flops(m, (torch.randn(b, c, 2 * h, 2 * w),))
        assert count_functional_flops(m, (torch.randn(2 * b, c, h, w),)) == 2 * f1  # linear in the batch
