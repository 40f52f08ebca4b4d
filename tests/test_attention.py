"""Tests of the attention modules (models/attention/), against their papers' formulas and the module contract.

The contract tests loop over ``registry.classes("attention")``, so a newly registered module is covered as soon
as ``models.attention`` imports it; it only has to build as ``cls(c1)`` with c1 a multiple of 16.
"""

from __future__ import annotations

import copy
import io
import warnings

import pytest
import torch
import torch.nn as nn

import models.attention  # noqa: F401  (registers every module)
from models import registry
from models.attention.cot import CoTAttention
from models.attention.cot_layer import CotLayer, local_aggregation
from models.attention.nam import NAMAttention, add_sparsity_grad
from models.attention.simam import SimAM
from utils.flops import count_functional_flops

C = 32  # channels for most tests
C_BIG_MAP = 16  # channels for the 160×160 maps
GLOBAL_ATTENTION = {"MHSA"}  # attention over all H·W positions: the big map is 96×96 in the fp16 test (CPU time)

# Every registered attention class, built with defaults, plus the non-default configurations worth covering.
VARIANTS = {cls.__name__: (lambda c, cls=cls: cls(c)) for cls in registry.classes("attention")}
VARIANTS["NAMAttention-spatial"] = lambda c: NAMAttention(c, no_spatial=False)
NAMES = sorted(VARIANTS)


def build(name: str, c: int = C, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return VARIANTS[name](c)


def randomize_bn(m: nn.Module, seed: int = 1) -> nn.Module:
    """Give every norm layer non-trivial affine parameters and running statistics (signs mixed in γ)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, (nn.BatchNorm2d, nn.GroupNorm)) and mod.weight is not None:
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=g))
                mod.bias.copy_(0.3 * torch.randn(mod.bias.shape, generator=g))
            if isinstance(mod, nn.BatchNorm2d) and mod.running_mean is not None:
                mod.running_mean.copy_(0.2 * torch.randn(mod.running_mean.shape, generator=g))
                mod.running_var.copy_(0.5 + torch.rand(mod.running_var.shape, generator=g))
    return m


def finite(t: torch.Tensor) -> bool:
    return bool(torch.isfinite(t).all())


# ----------------------------------------------------------------------------------------- registry
def test_registered_names():
    names = {s.name for s in registry.specs("attention")}
    assert {"NAMAttention", "SimAM", "simam_module", "CoTAttention", "CotLayer"} <= names
    assert registry.resolve("simam_module").cls is SimAM
    from models.attention import simam
    assert simam.simam_module is SimAM
    assert SimAM(64, 0.1).e_lambda == 0.1  # yaml [1024, 0.1] -> SimAM(c1, 0.1)


def test_nam_state_dict_layout():
    keys = set(NAMAttention(64).state_dict())
    assert keys == {f"Channel_Att.bn2.{k}" for k in
                    ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
    assert NAMAttention(64).Channel_Att.channels == 64
    assert type(NAMAttention(64).Channel_Att).__name__ == "Channel_Att"


def test_param_counts():
    assert sum(p.numel() for p in CoTAttention(512).parameters()) == 2_300_928
    assert sum(p.numel() for p in NAMAttention(512).parameters()) == 1024
    assert sum(p.numel() for p in SimAM(512).parameters()) == 0


# ----------------------------------------------------------------------------------------- contract
@pytest.mark.parametrize("hw", [(1, 1), (2, 3), (20, 20), (160, 160)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name", NAMES)
def test_shape_and_finite(name, hw):
    c = C_BIG_MAP if hw[0] >= 160 else C
    m = build(name, c)
    torch.manual_seed(1)
    with torch.no_grad():
        m.train()
        x = torch.randn(2, c, *hw)
        y = m(x)
        assert y.shape == x.shape and finite(y)
        m.eval()
        x = torch.randn(1, c, *hw)
        y = m(x)
        assert y.shape == x.shape and finite(y)


@pytest.mark.parametrize("name", NAMES)
def test_every_parameter_gets_a_gradient(name):
    m = build(name).train()
    x = torch.randn(2, C, 6, 7, requires_grad=True)
    y = m(x)
    (y * torch.randn_like(y)).sum().backward()
    assert finite(x.grad)
    for pname, p in m.named_parameters():
        assert p.grad is not None, f"{name}.{pname} has no gradient"
        assert finite(p.grad), f"{name}.{pname} has a non-finite gradient"


@pytest.mark.parametrize("hw", [(1, 1), (8, 8), (160, 160)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("std", [0.01, 1.0, 100.0])
@pytest.mark.parametrize("name", NAMES)
def test_half_and_autocast(name, std, hw):
    # fp16 convolutions run on this torch's CPU backend, so .half() is tested everywhere.
    c = C_BIG_MAP if hw[0] >= 160 else C
    if hw[0] >= 160 and name in GLOBAL_ATTENTION:  # (HW)² attention: 96² tokens still sum past fp16's comfort
        hw = (96, 96)
    m = randomize_bn(build(name, c)).eval()
    x = torch.randn(2, c, *hw) * std
    with torch.no_grad():
        ref = m(x)
        yh = copy.deepcopy(m).half()(x.half())
        assert yh.dtype == torch.float16 and yh.shape == x.shape and finite(yh)
        for dtype in (torch.bfloat16, torch.float16):
            for xin in (x, x.to(dtype)):  # fp32 input, and the low-precision input a preceding conv gives
                with torch.autocast("cpu", dtype=dtype):
                    y = m(xin)
                assert y.shape == x.shape and finite(y), f"autocast {dtype}, input {xin.dtype}"
        # the fp16 result stays close to fp32 (relative to the output scale)
        assert (yh.float() - ref).abs().max() <= 2e-2 * ref.abs().max() + 1e-3 * std
    m.train()  # training-mode autocast (batch statistics) too
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = m(x.to(torch.bfloat16))
    assert finite(y)


@pytest.mark.parametrize("name", NAMES)
def test_functional_flops_positive(name):
    """Every module has operations outside thop's leaves, reported by itself or its helper submodules."""
    m = build(name).eval()
    x = torch.randn(2, C, 8, 8)
    f = count_functional_flops(m, (x,))
    assert isinstance(f, int) and f > 0


def test_simam_flops_about_8_per_element():
    x = torch.randn(2, C, 20, 20)
    f = SimAM(C).functional_flops((x,), x)
    assert 8 * x.numel() <= f <= 9 * x.numel()


# ----------------------------------------------------------------------------------------- SimAM
def simam_reference(x: torch.Tensor, lam: float) -> torch.Tensor:
    """SimAM written out in float64, per image and channel."""
    x = x.double()
    h, w = x.shape[-2:]
    n = max(h * w - 1, 1)
    mu = x.mean(dim=(2, 3), keepdim=True)
    d = (x - mu) ** 2
    y = d / (4 * (d.sum(dim=(2, 3), keepdim=True) / n + lam)) + 0.5
    return x * torch.sigmoid(y)


@pytest.mark.parametrize("hw", [(1, 1), (2, 3), (13, 9)], ids=str)
@pytest.mark.parametrize("lam", [1e-4, 0.1])
def test_simam_matches_formula(hw, lam):
    x = torch.randn(2, 8, *hw) * 3
    ref = simam_reference(x, lam)
    m = SimAM(8, lam)
    torch.testing.assert_close(m(x).double(), ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(m(x.double()).double(), ref, rtol=1e-12, atol=1e-12)  # float64 path: exact


def test_simam_1x1_is_defined():
    x = torch.randn(2, 4, 1, 1)
    torch.testing.assert_close(SimAM()(x), x * torch.sigmoid(torch.tensor(0.5)))


def test_simam_fp16_no_overflow():
    x = torch.randn(2, C, 20, 20) * 100
    xh = x.half()
    # the naive fp16 statistic overflows: this is the case the fp32 statistics guard against
    d16 = (xh - xh.mean(dim=(2, 3), keepdim=True)) ** 2
    assert not finite(d16.sum(dim=(2, 3)))
    y32 = SimAM()(xh.float())
    y16 = SimAM()(xh)
    assert y16.dtype == torch.float16 and finite(y16)
    torch.testing.assert_close(y16.float(), y32, rtol=2e-3, atol=1e-2)


# ----------------------------------------------------------------------------------------- NAM
def nam_channel_reference(m: NAMAttention, x: torch.Tensor, training: bool) -> torch.Tensor:
    """NAM channel branch written out in float64."""
    bn = m.Channel_Att.bn2
    x = x.double()
    gamma, beta = bn.weight.detach().double(), bn.bias.detach().double()
    if training:
        mean, var = x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=False)
    else:
        mean, var = bn.running_mean.double(), bn.running_var.double()
    v = lambda t: t.view(1, -1, 1, 1)  # noqa: E731
    xn = (x - v(mean)) / torch.sqrt(v(var) + bn.eps) * v(gamma) + v(beta)
    w = gamma.abs() / gamma.abs().sum()
    return torch.sigmoid(xn * v(w)) * x


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_nam_channel_matches_formula(training):
    m = randomize_bn(NAMAttention(16)).train(training)
    x = torch.randn(2, 16, 5, 7) * 2 + 0.5
    ref = nam_channel_reference(m, x, training)
    with torch.no_grad():
        torch.testing.assert_close(m(x).double(), ref, rtol=1e-6, atol=1e-6)
        m64 = copy.deepcopy(m).double()
        torch.testing.assert_close(m64(x.double()), ref, rtol=1e-12, atol=1e-12)


def test_nam_weights_carry_no_gradient():
    """w = |γ|/Σ|γ| is a constant for autograd: γ's gradient comes through BN(x) only."""
    m = randomize_bn(NAMAttention(8)).train()
    x = torch.randn(2, 8, 4, 4)
    m(x).sum().backward()
    g = m.Channel_Att.bn2.weight.grad.clone()
    bn = m.Channel_Att.bn2
    xn = (x - x.mean((0, 2, 3), keepdim=True)) / torch.sqrt(x.var((0, 2, 3), unbiased=False, keepdim=True) + bn.eps)
    gamma = bn.weight.detach()
    w = (gamma.abs() / gamma.abs().sum()).view(1, -1, 1, 1)
    y = xn * gamma.view(1, -1, 1, 1) + bn.bias.detach().view(1, -1, 1, 1)
    s = torch.sigmoid(y * w)
    expected = (x * s * (1 - s) * w * xn).sum((0, 2, 3))  # d/dγ with w held constant
    torch.testing.assert_close(g, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("spatial", [False, True], ids=["channel", "spatial"])
def test_nam_fuse_layers(spatial):
    m = NAMAttention(C, no_spatial=not spatial)
    m.train()
    with torch.no_grad():
        for _ in range(3):  # move running statistics away from their init
            m(torch.randn(4, C, 6, 6) * 2 + 1)
    randomize_bn(m.Channel_Att)
    m.eval()
    x = torch.randn(2, C, 9, 11) * 3
    with torch.no_grad():
        ref = m(x)
        f0 = count_functional_flops(m, (x,))  # reported by the branches (NAMAttention's own count is 0)
        m.fuse_layers()
        assert not hasattr(m.Channel_Att, "bn2")
        torch.testing.assert_close(m(x), ref, rtol=1e-5, atol=1e-5)
        if not spatial:  # the folded channel path does not depend on the mode (the spatial BN does)
            m.train()
            torch.testing.assert_close(m(x), ref, rtol=1e-5, atol=1e-5)
        m.fuse_layers()  # idempotent
        assert 0 < count_functional_flops(m, (x,)) != f0


def test_add_sparsity_grad():
    p = 1e-4
    model = nn.Sequential(nn.Conv2d(3, C, 3, padding=1), NAMAttention(C), NAMAttention(C, no_spatial=False))
    randomize_bn(model)
    model.train()
    model(torch.randn(2, 3, 8, 8)).square().mean().backward()
    targets = [*model[1].regularized_parameters(), *model[2].regularized_parameters()]
    assert len(targets) == 4  # γ; γ, λ-conv weight and bias
    assert targets[0] is model[1].Channel_Att.bn2.weight and targets[1] is model[2].Channel_Att.bn2.weight
    before = {id(t): t.grad.clone() for t in model.parameters()}
    assert add_sparsity_grad(model, p) == 4
    for t in model.parameters():
        expected = before[id(t)] + (p * torch.sign(t.detach()) if any(t is s for s in targets) else 0)
        torch.testing.assert_close(t.grad, expected, rtol=0, atol=1e-12)
    model[1].Channel_Att.bn2.weight.grad = None  # parameters without a gradient are skipped
    assert add_sparsity_grad(model, p) == 3
    assert add_sparsity_grad(model, 0.0) == 0


# ----------------------------------------------------------------------------------------- CotLayer
def naive_aggregation(v: torch.Tensor, a: torch.Tensor, k: int) -> torch.Tensor:
    """k2[b,c,h,w] = Σ_taps a[b, c mod G, tap, h, w] · v[b, c, h+dh, w+dw], zero outside the map."""
    b_, c_, h_, w_ = v.shape
    g_ = a.shape[1]
    p = k // 2
    out = torch.zeros_like(v)
    for c in range(c_):
        for h in range(h_):
            for w in range(w_):
                acc = torch.zeros(b_, dtype=v.dtype)
                for i in range(k):
                    for j in range(k):
                        hh, ww = h + i - p, w + j - p
                        if 0 <= hh < h_ and 0 <= ww < w_:
                            acc += a[:, c % g_, i * k + j, h, w] * v[:, c, hh, ww]
                out[:, c, h, w] = acc
    return out


@pytest.mark.parametrize("k", [3, 5])
def test_local_aggregation_matches_naive_loop(k):
    v = torch.randn(2, 8, 4, 5)
    a = torch.randn(2, 2, k * k, 4, 5)
    torch.testing.assert_close(local_aggregation(v, a, k), naive_aggregation(v, a, k), rtol=1e-5, atol=1e-5)


def test_cotlayer_forward_matches_reference():
    """The whole CotLayer forward, re-composed from its submodules with the naive loop aggregation."""
    m = randomize_bn(CotLayer(16)).eval()
    x = torch.randn(2, 16, 3, 4)
    with torch.no_grad():
        k1 = m.key_embed(x)
        a = m.embed(torch.cat([x, k1], 1)).view(2, m.groups, 9, 3, 4)
        k2 = m.act(m.bn(naive_aggregation(m.conv1x1(x), a, 3)))
        z = torch.softmax(m.se((k1 + k2).mean((2, 3), keepdim=True)).view(2, 16, 2), dim=2)
        ref = z[:, :, 0, None, None] * k2 + z[:, :, 1, None, None] * k1
        torch.testing.assert_close(m(x), ref, rtol=1e-5, atol=1e-5)


def test_cotlayer_batch1_training():
    m = CotLayer(C).train()
    se_bn = m.se[1]
    before = se_bn.running_mean.clone()
    y = m(torch.randn(1, C, 8, 8))
    y.sum().backward()
    assert y.shape == (1, C, 8, 8) and finite(y)
    torch.testing.assert_close(se_bn.running_mean, before)  # fallback path: running stats untouched
    m(torch.randn(2, C, 8, 8))
    assert not torch.equal(se_bn.running_mean, before)  # an ordinary batch updates them


# ----------------------------------------------------------------------------------------- export
def _export(m: nn.Module, x: torch.Tensor, dynamic: bool) -> bytes:
    buf = io.BytesIO()
    axes = {0: "batch", 2: "height", 3: "width"}
    kw = {"dynamic_axes": {"images": axes, "output": axes}} if dynamic else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (x,), buf, opset_version=12, input_names=["images"], output_names=["output"],
                          dynamo=False, **kw)
    return buf.getvalue()


def _ort_check(model_bytes: bytes, m: nn.Module, x: torch.Tensor) -> None:
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not importable: ONNX parity not checked")
    sess = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    out = sess.run(None, {"images": x.numpy()})[0]
    with torch.no_grad():
        ref = m(x)
    torch.testing.assert_close(torch.from_numpy(out), ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_onnx_static_and_dynamic(name):
    pytest.importorskip("onnxruntime", reason="onnxruntime is not importable: ONNX parity not checked")
    m = build(name)
    m.train()
    with torch.no_grad():
        m(torch.randn(4, C, 8, 8) * 2 + 0.5)  # non-trivial running statistics
    m.eval()
    for hw in [(8, 8), (5, 12)]:  # static: one export per size
        x = torch.randn(1, C, *hw)
        _ort_check(_export(m, x, dynamic=False), m, x)
    onnx_bytes = _export(m, torch.randn(1, C, 8, 8), dynamic=True)  # dynamic: one export, other sizes
    for shape in [(2, C, 6, 10), (1, C, 13, 7)]:
        _ort_check(onnx_bytes, m, torch.randn(*shape))


def test_onnx_fused_nam():
    pytest.importorskip("onnxruntime", reason="onnxruntime is not importable: ONNX parity not checked")
    m = randomize_bn(NAMAttention(C)).eval()
    m.fuse_layers()
    onnx_bytes = _export(m, torch.randn(1, C, 8, 8), dynamic=True)
    _ort_check(onnx_bytes, m, torch.randn(2, C, 5, 9))


@pytest.mark.parametrize("name", NAMES)
def test_torchscript_trace_other_size(name):
    m = randomize_bn(build(name)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ts = torch.jit.trace(m, torch.randn(1, C, 8, 8))
    x = torch.randn(2, C, 5, 12)
    with torch.no_grad():
        torch.testing.assert_close(ts(x), m(x), rtol=1e-5, atol=1e-5)


def test_cot_attention_fuse_layers_is_exact_and_cheaper():
    from utils.flops import count_macs

    m = randomize_bn(build("CoTAttention", 64)).eval()
    f = copy.deepcopy(m)
    f.fuse_layers()
    x = torch.randn(2, 64, 7, 9)
    with torch.no_grad():
        torch.testing.assert_close(f(x), m(x), atol=1e-5, rtol=1e-5)
    # the k*k mean folded into the last 1x1 conv: C/2 -> C outputs instead of C/2 -> 9C
    assert f.attention_embed[-1].out_channels == 64 and m.attention_embed[-1].out_channels == 9 * 64
    assert count_macs(f, (x,)) < 0.6 * count_macs(m, (x,))
