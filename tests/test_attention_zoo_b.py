"""DoubleAttention, ParNetAttention, ACmix, BiLevelRoutingAttention, LSKA, LSKBlock and MLCA: the forward against
independent float64 references written from the papers' equations (einsum, explicit loops over kernel taps, window
positions and regions), parameter counts by hand, FLOPs, and the behaviours each docstring promises. The shared
contract (shapes, gradients, fp16/bf16, ONNX, TorchScript) is in tests/test_attention.py.
"""

from __future__ import annotations

import copy
import io
import math
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from models import registry
from models.attention.acmix import ACmix
from models.attention.biformer import BiLevelRoutingAttention
from models.attention.double_attention import DoubleAttention
from models.attention.lska import LSKA
from models.attention.lsknet import LSKBlock
from models.attention.mlca import MLCA, adaptive_pool2d
from models.attention.parnet import ParNetAttention
from tests.attention_refs import P, softmax, check_against_reference, randomize_layers


def randomize(m: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial biases, norm affine parameters and BN running statistics; weights scaled ×1.5."""
    randomize_layers(m, seed, norms=(nn.BatchNorm2d, nn.LayerNorm), gain=1.5)
    return m


# ----------------------------------------------------------------------------------------- reference helpers


def pw(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """A 1×1 conv: W·x + b per position."""
    out = torch.einsum("oc,bchw->bohw", P(conv.weight)[:, :, 0, 0], x)
    return out + P(conv.bias).view(1, -1, 1, 1) if conv.bias is not None else out


def conv_ref(x: torch.Tensor, w: torch.Tensor, dilation=(1, 1), groups: int = 1) -> torch.Tensor:
    """Stride-1 'same' convolution (zero padding), no bias, as a sum over kernel taps of einsums per group."""
    b, c, h, wd = x.shape
    kh, kw = w.shape[-2:]
    dh, dw = dilation
    ph, pw_ = dh * (kh - 1) // 2, dw * (kw - 1) // 2
    xp = torch.zeros(b, c, h + 2 * ph, wd + 2 * pw_, dtype=x.dtype)
    xp[:, :, ph:ph + h, pw_:pw_ + wd] = x
    cin, cout = c // groups, w.shape[0] // groups
    out = torch.zeros(b, w.shape[0], h, wd, dtype=x.dtype)
    for g in range(groups):
        for i in range(kh):
            for j in range(kw):
                tap = xp[:, g * cin:(g + 1) * cin, i * dh:i * dh + h, j * dw:j * dw + wd]
                wg = w[g * cout:(g + 1) * cout, :, i, j]
                out[:, g * cout:(g + 1) * cout] += torch.einsum("oc,bchw->bohw", wg, tap)
    return out


def conv_mod(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """``conv_ref`` with a module's weight, dilation, groups and bias."""
    out = conv_ref(x, P(conv.weight), conv.dilation, conv.groups)
    return out + P(conv.bias).view(1, -1, 1, 1) if conv.bias is not None else out


def conv1d_ref(z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """y[:, i] = Σ_j w[j] · z[:, i + j − p] along the last axis of (B, L), zero outside."""
    k, n = w.numel(), z.shape[1]
    p = (k - 1) // 2
    y = torch.zeros_like(z)
    for i in range(n):
        for j in range(k):
            if 0 <= i + j - p < n:
                y[:, i] += w[j] * z[:, i + j - p]
    return y


def bn_ref(x: torch.Tensor, bn: nn.BatchNorm2d, training: bool) -> torch.Tensor:
    """BatchNorm: batch statistics (biased variance) when training, else the running ones."""
    stats = (x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=False)) if training else (bn.running_mean, bn.running_var)
    mean, var = (P(t) for t in stats)
    mean, var, gamma, beta = (t.view(1, -1, 1, 1) for t in (mean, var, P(bn.weight), P(bn.bias)))
    return (x - mean) / torch.sqrt(var + bn.eps) * gamma + beta


def ln_ref(x: torch.Tensor, ln: nn.LayerNorm) -> torch.Tensor:
    """LayerNorm over the channels of each position of (B, C, H, W)."""
    mean, var = x.mean(1, keepdim=True), x.var(1, unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + ln.eps) * P(ln.weight).view(1, -1, 1, 1) + P(ln.bias).view(1, -1, 1, 1)


# ----------------------------------------------------------------------------------------- references
def double_ref(m: DoubleAttention, x: torch.Tensor, training: bool) -> torch.Tensor:
    b, c, h, w = x.shape
    a = pw(x, m.convA).reshape(b, m.c_m, h * w)
    maps = softmax(pw(x, m.convB).reshape(b, m.c_n, h * w), dim=2)  # over positions
    vec = softmax(pw(x, m.convV).reshape(b, m.c_n, h * w), dim=1 if m.vector_softmax == "channel" else 2)
    g = torch.einsum("bml,bnl->bmn", a, maps)  # g_i = A b_iᵀ
    z = torch.einsum("bmn,bnl->bml", g, vec)  # z_l = G v_l
    return x + pw(z.reshape(b, m.c_m, h, w), m.conv_reconstruct)


def parnet_ref(m: ParNetAttention, x: torch.Tensor, training: bool) -> torch.Tensor:
    y1 = bn_ref(conv_ref(x, P(m.conv1x1[0].weight)), m.conv1x1[1], training)
    y3 = bn_ref(conv_ref(x, P(m.conv3x3[0].weight)), m.conv3x3[1], training)
    u = bn_ref(x, m.bn, training) if m.skip_bn else x
    s = torch.sigmoid(pw(u.mean((2, 3), keepdim=True), m.sse))
    t = y1 + y3 + u * s
    return t * torch.sigmoid(t)


def acmix_ref(m: ACmix, x: torch.Tensor, training: bool) -> torch.Tensor:
    b, c, h, w = x.shape
    n, d, p = m.head, m.head_dim, m.kernel_att // 2
    q, k, v = pw(x, m.conv1), pw(x, m.conv2), pw(x, m.conv3)
    qh, kh, vh = (t.reshape(b, n, d, h, w) for t in (q, k, v))
    locx, locy = torch.linspace(-1, 1, w, dtype=x.dtype), torch.linspace(-1, 1, h, dtype=x.dtype)
    att = torch.zeros(b, n, d, h, w, dtype=x.dtype)
    for i in range(h):
        for j in range(w):
            nb = [(a, e) for a in range(i - p, i + p + 1) for e in range(j - p, j + p + 1) if 0 <= a < h and 0 <= e < w]
            ys, xs = [a for a, _ in nb], [e for _, e in nb]
            qi = qh[..., i, j] / math.sqrt(d)  # (B, N, d)
            logits = torch.einsum("bnd,bndm->bnm", qi, kh[..., ys, xs])
            if m.rel_pos:  # q_iᵀ W_p (loc_i − loc_j)
                dl = torch.stack([locx[j] - locx[xs], locy[i] - locy[ys]])  # (2, M)
                logits = logits + torch.einsum("bnd,dt,tm->bnm", qi, P(m.conv_p.weight)[:, :, 0, 0], dl)
            att[..., i, j] = torch.einsum("bnm,bndm->bnd", softmax(logits, 2), vh[..., ys, xs])
    feats = torch.cat([t.reshape(b, n, d, h * w) for t in (q, k, v)], 1)  # (B, 3N, d, HW)
    f = torch.einsum("ks,bsdl->bdkl", P(m.fc.weight)[:, :, 0, 0], feats).reshape(b, -1, h, w)  # (B, d·k², H, W)
    conv = conv_mod(f, m.dep_conv)
    return P(m.rate1) * att.reshape(b, c, h, w) + P(m.rate2) * conv


def lska_ref(m: LSKA, x: torch.Tensor, training: bool) -> torch.Tensor:
    a = conv_mod(conv_mod(x, m.conv0h), m.conv0v)
    a = conv_mod(conv_mod(a, m.conv_spatial_h), m.conv_spatial_v)
    return x * pw(a, m.conv1)


def lsk_ref(m: LSKBlock, x: torch.Tensor, training: bool) -> torch.Tensor:
    u1 = conv_mod(x, m.conv0)
    u2 = conv_mod(u1, m.conv_spatial)
    a1, a2 = pw(u1, m.conv1), pw(u2, m.conv2)
    u = torch.cat([a1, a2], 1)
    s = torch.sigmoid(conv_mod(torch.stack([u.mean(1), u.max(1).values], 1), m.conv_squeeze))
    return x * pw(a1 * s[:, :1] + a2 * s[:, 1:], m.conv)


def mlca_ref(m: MLCA, x: torch.Tensor, training: bool) -> torch.Tensor:
    b, c, h, w = x.shape
    ls, wl = m.local_size, m.local_weight
    local = F.adaptive_avg_pool2d(x, ls)  # (B, C, ls, ls)
    a_g = torch.sigmoid(conv1d_ref(local.mean((2, 3)), P(m.conv.weight).view(-1)))  # (B, C)
    seq = local.permute(0, 2, 3, 1).reshape(b, -1)  # position-major, channel fastest
    a_l = torch.sigmoid(conv1d_ref(seq, P(m.conv_local.weight).view(-1))).reshape(b, ls, ls, c).permute(0, 3, 1, 2)
    gate = wl * F.adaptive_avg_pool2d(a_l, (h, w)) + (1 - wl) * a_g[:, :, None, None]
    return x * gate


def bra_ref(m: BiLevelRoutingAttention, x: torch.Tensor, training: bool) -> torch.Tensor:
    """Region by region: region means over the map's tokens, top-k routing, attention over the routed tokens."""
    b, c, h, w = x.shape
    s, n, scale = m.n_win, m.num_heads, m.scale
    d = c // n
    xin = ln_ref(x, m.norm) if m.block else x
    qkv = pw(xin, m.qkv)
    q, k, v = qkv[:, :c], qkv[:, c:2 * c], qkv[:, 2 * c:]
    rh, rw = -(-h // s), -(-w // s)
    regions = [[(y, e) for y in range(a * rh, min((a + 1) * rh, h)) for e in range(o * rw, min((o + 1) * rw, w))]
               for a in range(s) for o in range(s)]
    out = torch.zeros(b, c, h, w, dtype=x.dtype)
    for bi in range(b):
        def mean(t, toks):  # over the region's map tokens; 0 for a region outside the map
            return t[bi][:, [y for y, _ in toks], [e for _, e in toks]].mean(1) if toks else x.new_zeros(c)

        qr = torch.stack([mean(q, r) for r in regions])  # (S², C)
        kr = torch.stack([mean(k, r) for r in regions])
        a_r = (qr * scale) @ kr.T
        a_r[:, [i for i, r in enumerate(regions) if not r]] = float("-inf")
        idx = torch.topk(a_r, m.topk, dim=1).indices
        for i, toks in enumerate(regions):
            if not toks:
                continue
            keys = [t for r in idx[i].tolist() for t in regions[r]]  # the map tokens of the routed regions
            ys, xs = [y for y, _ in toks], [e for _, e in toks]
            ky, kx = [y for y, _ in keys], [e for _, e in keys]
            for hd in range(n):
                ch = slice(hd * d, (hd + 1) * d)
                logits = q[bi, ch][:, ys, xs].T @ k[bi, ch][:, ky, kx] * scale  # (Lq, Lk)
                out[bi, ch][:, ys, xs] = v[bi, ch][:, ky, kx] @ softmax(logits, 1).T
    y = pw(out + conv_mod(v, m.lepe), m.wo)
    return x + y if m.block else y


CASES = {  # name: (constructor, reference)
    "DoubleAttention": (lambda c: DoubleAttention(c), double_ref),
    "DoubleAttention-position": (lambda c: DoubleAttention(c, 8, 4, "position"), double_ref),
    "ParNetAttention": (lambda c: ParNetAttention(c), parnet_ref),
    "ParNetAttention-noskipbn": (lambda c: ParNetAttention(c, skip_bn=False), parnet_ref),
    "ACmix": (lambda c: ACmix(c, att_init=0.7), acmix_ref),
    "ACmix-relpos": (lambda c: ACmix(c, 5, 2, 3, rel_pos=True, att_init=0.6), acmix_ref),
    "BRA-block": (lambda c: BiLevelRoutingAttention(c, 4, 3, 2), bra_ref),
    "BRA-bare": (lambda c: BiLevelRoutingAttention(c, 3, 8, 4, 3, 0.3, False), bra_ref),
    "LSKA": (lambda c: LSKA(c), lska_ref),
    "LSKA-23": (lambda c: LSKA(c, 23), lska_ref),
    "LSKBlock": (lambda c: LSKBlock(c), lsk_ref),
    "MLCA": (lambda c: MLCA(c), mlca_ref),
    "MLCA-3": (lambda c: MLCA(c, 3, 0.3), mlca_ref),
}


@pytest.mark.parametrize("hw", [(7, 9), (2, 3)], ids=["7x9", "2x3"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_forward_matches_reference(name, hw):
    build, ref_fn = CASES[name]
    training = name.startswith("ParNet") and hw == (7, 9)  # batch statistics once; eval elsewhere
    torch.manual_seed(0)
    m = randomize(build(16)).train(training)
    x = torch.randn(2, 16, *hw) * 1.5 + 0.2
    y = check_against_reference(m, x, ref_fn(m, x.double(), training), tol32=1e-4, tol64=1e-9)
    with torch.no_grad():
        am = m.attention_map((x,), y)  # every module has its own map
    if am.spatial is not None:
        assert am.spatial.shape == (2, *hw) and torch.isfinite(am.spatial).all()
    if am.channel is not None:
        assert am.channel.shape == (2, 16) and torch.isfinite(am.channel).all()


# ----------------------------------------------------------------------------------------- registry, parameters
def test_names_and_aliases():
    names = {"DoubleAttention": DoubleAttention, "A2Attention": DoubleAttention, "ParNetAttention": ParNetAttention,
             "ACmix": ACmix, "BiLevelRoutingAttention": BiLevelRoutingAttention, "BRA": BiLevelRoutingAttention,
             "LSKA": LSKA, "LSKBlock": LSKBlock, "LSKNetAttention": LSKBlock, "MLCA": MLCA}
    assert all(registry.resolve(n).cls is cls and registry.resolve(n).kind == "attention" for n, cls in names.items())


def nparams(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_param_counts_by_hand():
    # DoubleAttention, C = 16: m = n = 4; φ, θ, ρ: 16·4 + 4 each; reconstruct 4·16 + 16
    assert nparams(DoubleAttention(16)) == 3 * 68 + 80
    assert nparams(DoubleAttention(256)) == 3 * (256 * 64 + 64) + 64 * 256 + 256 == 65_984
    assert nparams(DoubleAttention(16, 8, 2)) == (16 * 8 + 8) + 2 * (16 * 2 + 2) + 8 * 16 + 16
    # ParNet: 1×1 conv + BN, 3×3 conv + BN, skip BN, SSE FC with bias
    assert nparams(ParNetAttention(16)) == 256 + 32 + 9 * 256 + 32 + 32 + 256 + 16 == 11 * 256 + 7 * 16
    assert nparams(ParNetAttention(256)) == 722_688 and nparams(ParNetAttention(256, False)) == 722_176
    # ACmix, C = 16, N = 4, d = 4, k = 3: q, k, v 3·(256 + 16); fc 12·9; dep_conv 16·9·9 + 16; α, β
    assert nparams(ACmix(16)) == 3 * 272 + 108 + 1296 + 16 + 2
    assert nparams(ACmix(256)) == 218_478 and nparams(ACmix(256, rel_pos=True)) == 218_478 + 2 * 64
    assert ACmix(24, head=16).head == 12 and ACmix(16, head=3).head == 2  # largest divisor of C not above N
    # BRA, C = 16: qkv 16·48 + 48, LCE 25·16 + 16, W_o 256 + 16, LayerNorm 2·16
    assert nparams(BiLevelRoutingAttention(16)) == 816 + 416 + 272 + 32
    assert nparams(BiLevelRoutingAttention(256)) == 270_336
    assert nparams(BiLevelRoutingAttention(256, block=False)) == 269_824
    assert BiLevelRoutingAttention(256).num_heads == 8 and BiLevelRoutingAttention(16).num_heads == 1
    assert BiLevelRoutingAttention(48, num_heads=5).num_heads == 4 and BiLevelRoutingAttention(16, 2, 9).topk == 4
    # LSKA, k = 11: 1×3, 3×1, 1×5, 5×1 depthwise with bias, 1×1 with bias
    assert nparams(LSKA(16)) == 2 * (3 * 16 + 16) + 2 * (5 * 16 + 16) + 256 + 16
    assert nparams(LSKA(256)) == 70_912
    # LSKBlock, C = 16, C' = 8: DW 5×5, DW 7×7, two 1×1 16 -> 8, squeeze 2 -> 2 7×7, 1×1 8 -> 16 (all with bias)
    assert nparams(LSKBlock(16)) == 416 + 800 + 2 * 136 + 198 + 144
    assert nparams(LSKBlock(256)) == 118_470
    # MLCA: two 1-D kernels of ECA's size (3 at C = 16, 5 at C = 256)
    assert nparams(MLCA(16)) == 6 and nparams(MLCA(256)) == 10


@pytest.mark.parametrize("build,match", [
    (lambda: LSKA(16, 9), "k_size"), (lambda: ACmix(16, 6), "odd"), (lambda: MLCA(16, 0), "local_size"),
    (lambda: BiLevelRoutingAttention(16, 7, 4, 1, 4), "odd"), (lambda: DoubleAttention(16, 4, 4, "rows"), "softmax"),
    (lambda: MLCA(16, 5, 1.5), "local_weight")])
def test_bad_options_are_refused(build, match):
    with pytest.raises(ValueError, match=match):
        build()


# ----------------------------------------------------------------------------------------- behaviours
def test_lska_receptive_field_is_k():
    for k in (7, 11, 23, 53):
        m = LSKA(1, k)
        x = torch.zeros(1, 1, 61, 61, requires_grad=True)
        m.conv_spatial_v(m.conv_spatial_h(m.conv0v(m.conv0h(x))))[0, 0, 30, 30].backward()
        cols, rows = ((x.grad[0, 0] != 0).any(dim).nonzero() for dim in (0, 1))
        assert int(cols.max() - cols.min()) + 1 == k == int(rows.max() - rows.min()) + 1


@pytest.mark.parametrize("hw,out", [((7, 9), (5, 5)), ((2, 3), (5, 5)), ((5, 5), (7, 9)), ((1, 1), (3, 2))])
def test_mlca_adaptive_pool_matches_torch(hw, out):
    x = torch.randn(2, 3, *hw, dtype=torch.float64)
    torch.testing.assert_close(adaptive_pool2d(x, *out), F.adaptive_avg_pool2d(x, out), rtol=1e-12, atol=1e-12)


def test_mlca_gate_is_per_image():
    m = randomize(MLCA(16)).eval()
    x = torch.randn(3, 16, 7, 9)
    with torch.no_grad():
        torch.testing.assert_close(m(x)[1:2], m(x[1:2]), rtol=1e-6, atol=1e-6)


def test_acmix_init_and_1x1_map():
    m = ACmix(16)
    assert m.rate1.item() == 0.0 and m.rate2.item() == 0.5 and ACmix(16, att_init=0.5).rate1.item() == 0.5
    w = m.dep_conv.weight  # (C, k², k, k), shift kernels: input map t of a group is tap t
    assert w.sum() == 16 * 9 and all(w[:, t, t // 3, t % 3].eq(1).all() for t in range(9))
    m = randomize(ACmix(16, att_init=1.0)).eval()
    with torch.no_grad():
        m.rate2.zero_()
        x = torch.randn(2, 16, 1, 1)
        torch.testing.assert_close(m(x), m.conv3(x), rtol=1e-6, atol=1e-6)  # a 1×1 map attends to itself: out = v


def test_bra_routes_only_to_regions_holding_the_map():
    m = randomize(BiLevelRoutingAttention(16, 7, 4)).eval()
    x = torch.randn(2, 16, 2, 3)  # regions 1×1: 6 of the 49 hold a token
    with torch.no_grad():
        am = m.attention_map((x,), m(x))
    assert am.spatial.shape == (2, 2, 3) and torch.isfinite(am.spatial).all()
    torch.testing.assert_close(am.spatial.mean((1, 2)), torch.ones(2))  # hits spread over the 6 live regions


def test_parnet_fuse_layers_is_exact():
    m = randomize(ParNetAttention(16)).eval()
    x = torch.randn(2, 16, 7, 9)
    with torch.no_grad():
        ref = m(x)
        f0 = m.functional_flops((x,), ref)
        m.fuse_layers()
        m.fuse_layers()  # idempotent
        assert not hasattr(m, "conv3x3") and m.rep.kernel_size == (3, 3)
        torch.testing.assert_close(m(x), ref, rtol=1e-5, atol=1e-5)
        assert m.functional_flops((x,), ref) == f0 - x.numel()  # one branch sum fewer


# ----------------------------------------------------------------------------------------- export of the options
def test_acmix_rel_pos_exports_and_traces_on_dynamic_sizes():
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not importable: ONNX parity not checked")
    m = randomize(ACmix(8, 3, 2, 3, rel_pos=True, att_init=0.5)).eval()
    buf = io.BytesIO()
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (torch.randn(1, 8, 6, 6),), buf, opset_version=12, input_names=["images"],
                          output_names=["output"], dynamic_axes={"images": axes, "output": axes}, dynamo=False)
        ts = torch.jit.trace(m, torch.randn(1, 8, 6, 6))
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    for shape in [(2, 8, 4, 9), (1, 8, 1, 1)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            ref = m(x)
            torch.testing.assert_close(ts(x), ref, rtol=1e-5, atol=1e-5)
        out = torch.from_numpy(sess.run(None, {"images": x.numpy()})[0])
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------------------- FLOPs
# x = (2, 16, 8, 8): n = B·C·H·W = 2048, B·C = 32, B·H·W = 128
FUNCTIONAL = {
    "DoubleAttention": 2 * 3 * 128 * 4 + 4 * 128 * 4 * 4 + 2048,  # m = n = 4: two softmaxes, two products, residual
    "ParNetAttention": 6 * 2048 + 2 * 32,
    "ACmix": 2048 * (1 + 2 * 49 + 2 * 49 + 3) + 3 * (128 * 4 * 49),  # N = 4, K² = 49
    # S = 7: r = 2×2, P = 196 padded tokens, k = 4, N = 1
    "BiLevelRoutingAttention": (2 * 2 * 16 * 196 + 2 * 2 * 49 * 16 + 2 * 2 * 49 ** 2 * 16 + 2 * 49 ** 2
                                + 4 * 2 * 196 * 4 * 4 * 16 + 4 * (2 * 196 * 16) + 2048 + 8 * 2048 + 3 * 128),
    "LSKA": 2048,
    "LSKBlock": 2048 + 7 * 1024 + 3 * 128,  # C' = 8: m = 1024
    "MLCA": 6 * 2048 + 3 * 32 * 25 + 2 * 32,  # ks = 5
}


@pytest.mark.parametrize("name", sorted(FUNCTIONAL))
def test_flops_by_hand(name):
    thop = pytest.importorskip("thop")
    from utils.flops import count_functional_flops, count_macs

    m = registry.resolve(name).cls(16).eval()
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        f = m.functional_flops((x,), m(x))
    assert f == FUNCTIONAL[name] and count_functional_flops(m, (x,)) == f  # no helper submodule counts twice
    thop_only, _ = thop.profile(copy.deepcopy(m), inputs=(x,), verbose=False)
    assert thop_only > 0  # every module has convs thop counts
    assert count_macs(m, (x,)) == thop_only + f / 2  # FLOPs -> MACs
