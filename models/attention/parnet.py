"""ParNetAttention: the RepVGG-SSE block of ParNet.

Goyal, Bochkovskiy, Deng, Koltun, "Non-deep Networks", NeurIPS 2022, arXiv 2110.07641.

Three parallel branches summed and passed through SiLU: a 1×1 conv + BN, a 3×3 conv + BN, and the skip branch
(a BN) gated by a Skip-Squeeze-Excitation (one fully connected layer on the pooled skip features, a sigmoid).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.attention.base import Attention, AttentionMap
from models.attention.flops import numel
from utils.torch_utils import fuse_conv_and_bn


def _conv_bn(c1: int, k: int) -> nn.Sequential:
    """A k×k conv (no bias, 'same' padding) followed by BatchNorm."""
    return nn.Sequential(nn.Conv2d(c1, c1, k, padding=k // 2, bias=False), nn.BatchNorm2d(c1))


class ParNetAttention(Attention):
    """The RepVGG-SSE block of ParNet (Ankit Goyal, Alexey Bochkovskiy, Jia Deng, Vladlen Koltun, "Non-deep
    Networks", NeurIPS 2022, arXiv 2110.07641).

    With W the SSE's single fully connected layer (a 1×1 conv C -> C with bias; no bottleneck)::

        y1  = BN1(conv_1×1(x))
        y3  = BN3(conv_3×3(x))
        u   = BN0(x)                                      the skip branch
        s   = sigmoid(W · mean_hw(u) + b)                 Skip-Squeeze-Excitation, (B, C, 1, 1)
        out = SiLU(y1 + y3 + u · s)

    ``skip_bn=False`` gives the variant of a widely copied implementation, which leaves out the skip BN
    (``u = x``); the default follows the paper's figure, where SSE sits on RepVGG's BN skip branch. The pooled
    mean runs in fp32 and is cast back. :meth:`fuse_layers` folds the two conv branches into one 3×3 conv (the
    RepVGG re-parameterisation); the skip branch stays as it is (its gate depends on the input).

    Parameters: C² + 2C + 9·C² + 2C + 2C + C² + C = 11·C² + 7·C, i.e. 722,688 at C = 256 (without the skip BN:
    722,176).

    yaml example::

        [-1, 1, ParNetAttention, [1024]]

    Args:
        c1: input (= output) channels C.
        skip_bn: normalise the skip branch with a BN before the SSE gate (the paper's block).
    """

    def __init__(self, c1: int, skip_bn: bool = True) -> None:
        super().__init__()
        self.c1 = c1
        self.skip_bn = bool(skip_bn)
        self.conv1x1 = _conv_bn(c1, 1)
        self.conv3x3 = _conv_bn(c1, 3)
        self.bn = nn.BatchNorm2d(c1) if self.skip_bn else nn.Identity()
        self.sse = nn.Conv2d(c1, c1, 1)  # the SSE's fully connected layer

    def skip(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The skip features u and the SSE gate s (B, C, 1, 1)."""
        u = self.bn(x)
        z = u.to(torch.promote_types(u.dtype, torch.float32)).mean((2, 3), keepdim=True).to(u.dtype)  # (B, C, 1, 1)
        return u, torch.sigmoid(self.sse(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u, s = self.skip(x)
        convs = self.rep(x) if hasattr(self, "rep") else self.conv1x1(x) + self.conv3x3(x)
        return F.silu(convs + u * s.to(u.dtype))

    def extra_repr(self) -> str:
        return f"c1={self.c1}, skip_bn={self.skip_bn}"

    @torch.no_grad()
    def fuse_layers(self) -> None:
        """RepVGG re-parameterisation: conv1x1 + BN1 and conv3x3 + BN3 become one 3×3 conv with bias (``rep``)."""
        if hasattr(self, "rep"):
            return
        f3 = fuse_conv_and_bn(self.conv3x3[0], self.conv3x3[1])
        f1 = fuse_conv_and_bn(self.conv1x1[0], self.conv1x1[1])
        f3.weight.add_(F.pad(f1.weight, (1, 1, 1, 1)))  # the 1×1 kernel at the centre of the 3×3 one
        f3.bias.add_(f1.bias)
        self.rep = f3
        del self.conv1x1, self.conv3x3

    @torch.no_grad()
    def attention_map(self, inputs: tuple, output: torch.Tensor) -> AttentionMap:
        """The SSE gate s per image, (B, C); the spatial map is the generic gain."""
        _, s = self.skip(inputs[0])
        return AttentionMap(channel=s.float().flatten(1), channel_label="SSE gate sigmoid(W·mean(BN(x)))")

    def functional_flops(self, inputs: tuple, output: torch.Tensor) -> int:
        """FLOPs outside the convs and BNs (which thop counts), with n = B·C·H·W: the pooling n + B·C, the
        sigmoid B·C, the gate product n, the three-branch sum 2·n (n once fused), SiLU 2·n (sigmoid, product)."""
        x = inputs[0]
        n, bc = numel(x.shape), numel(x.shape[:2])
        adds = n if hasattr(self, "rep") else 2 * n
        return n + 2 * bc + n + adds + 2 * n
