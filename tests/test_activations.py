"""utils/activations.py: v6.1's activation modules compute their formulas; MemoryEfficientMish's gradient is Mish's."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from utils.activations import AconC, FReLU, Hardswish, MemoryEfficientMish, MetaAconC, Mish, SiLU


def test_elementwise_activations_match_their_formulas():
    x = torch.linspace(-8, 8, 201, dtype=torch.float64)
    mish = x * torch.tanh(torch.log1p(torch.exp(x)))
    assert torch.allclose(Mish()(x), mish) and torch.allclose(MemoryEfficientMish()(x), mish)
    assert torch.allclose(SiLU()(x), F.silu(x)) and torch.allclose(Hardswish()(x), F.hardswish(x))


def test_memory_efficient_mish_gradient_equals_autograd_of_mish():
    x = torch.randn(64, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(MemoryEfficientMish.F.apply, (x,))
    g1 = torch.autograd.grad(MemoryEfficientMish()(x).sum(), x)[0]
    g2 = torch.autograd.grad(Mish()(x).sum(), x)[0]
    assert torch.allclose(g1, g2)


def test_frelu_is_max_of_input_and_its_spatial_condition():
    torch.manual_seed(0)
    m = FReLU(4).eval()
    assert m.conv.groups == 4 and m.conv.padding == (1, 1) and m.conv.bias is None
    x = torch.randn(2, 4, 9, 9)
    y = m(x)
    assert y.shape == x.shape and torch.equal(y, torch.max(x, m.bn(m.conv(x))))
    assert (y >= x).all()


def test_acon_c_and_meta_acon_c():
    torch.manual_seed(0)
    x = torch.randn(2, 32, 5, 5)
    a = AconC(32)
    d = (a.p1 - a.p2) * x
    assert torch.allclose(a(x), d * torch.sigmoid(a.beta * d) + a.p2 * x)
    with torch.no_grad():  # p1 = 1, p2 = 0, β = 1: ACON-C is SiLU
        a.p1.fill_(1.0), a.p2.fill_(0.0)
    assert torch.allclose(a(x), F.silu(x), atol=1e-6)
    m = MetaAconC(32, r=16)
    assert (m.fc1.in_channels, m.fc1.out_channels, m.fc2.out_channels) == (32, 16, 32)  # c2 = max(r, c1 // r)
    beta = torch.sigmoid(m.fc2(m.fc1(x.mean((2, 3), keepdim=True))))
    d = (m.p1 - m.p2) * x
    assert torch.allclose(m(x), d * torch.sigmoid(beta * d) + m.p2 * x) and m(x).shape == x.shape
