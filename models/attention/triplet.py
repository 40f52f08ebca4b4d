"""TripletAttention: three rotated Z-pool + conv gates.

Misra, Nalamada, Arasanipalai, Hou, "Rotate to Attend: Convolutional Triplet Attention Module", WACV 2021,
arXiv 2010.03045.

Each branch rotates the tensor so that a different pair of the (C, H, W) axes forms the "spatial" plane,
compresses the remaining axis with a Z-pool (max and mean), and gates the tensor with a sigmoid of a k×k
convolution of that pooled map; the three gated tensors are averaged.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from models.attention.base import Attention, FallbackBatchNorm2d
from models.attention.flops import batchnorm_flops, numel


def zpool(x: torch.Tensor) -> torch.Tensor:
    """Z-pool: max and mean over dim 1, concatenated: (B, N, P, Q) -> (B, 2, P, Q)."""
    return torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)


class BasicConv(nn.Module):
    """k×k conv 2 -> 1 without bias + batch norm, named as in the official code (``conv``, ``bn``).

    The norm is a :class:`FallbackBatchNorm2d` (the H×W branch sees one value per channel for a batch-1
    training call on a 1×1 map), with the official momentum 0.01.
    """

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=(kernel_size - 1) // 2, bias=False)
        self.bn = FallbackBatchNorm2d(1, eps=1e-5, momentum=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class AttentionGate(nn.Module):
    """``x · sigmoid(BN(conv(Z-pool(x))))``, pooling over dim 1 of a (B, N, P, Q) tensor."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = BasicConv(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.conv(zpool(x)))  # (B, N, P, Q) · (B, 1, P, Q)


class TripletAttention(Attention):
    """Triplet attention (Misra et al., "Rotate to Attend: Convolutional Triplet Attention Module", WACV 2021,
    arXiv 2010.03045).

    With x of shape (B, C, H, W) and gate_k(t) = t · sigmoid(BN(conv_k×k(Z(t)))), Z = cat[max, mean] over dim 1::

        y_cw = gate(x permuted to (B, H, C, W)), permuted back      pool over H, attend over the (C, W) plane
        y_hc = gate(x permuted to (B, W, H, C)), permuted back      pool over W, attend over the (H, C) plane
        y_hw = gate(x)                                              pool over C, attend over the (H, W) plane
        out  = (y_hw + y_cw + y_hc) / 3                             (y_cw + y_hc) / 2 when ``no_spatial``

    Parameters: 3 × (2·k·k + 2) = 300 for k = 7, whatever C (the module is channel-count independent).
    Attribute names (``cw``, ``hc``, ``hw``, each ``.conv.conv`` / ``.conv.bn``) follow the official code, so
    its state dicts load.

    yaml example::

        [-1, 1, TripletAttention, [1024]]              # k = 7, three branches
        [-1, 1, TripletAttention, [1024, 7, True]]     # no spatial (H, W) branch

    Args:
        c1: input channels; accepted for the attention contract and unused.
        kernel_size: k, the size of each gate's convolution (odd).
        no_spatial: drop the (H, W) branch and average the other two.
    """

    def __init__(self, c1: int | None = None, kernel_size: int = 7, no_spatial: bool = False) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"TripletAttention kernel_size must be odd, got {kernel_size}")
        self.kernel_size = kernel_size
        self.no_spatial = no_spatial
        self.cw = AttentionGate(kernel_size)
        self.hc = AttentionGate(kernel_size)
        self.hw = None if no_spatial else AttentionGate(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y_cw = self.cw(x.permute(0, 2, 1, 3)).permute(0, 2, 1, 3)  # (B, H, C, W) -> (B, C, H, W)
        y_hc = self.hc(x.permute(0, 3, 2, 1)).permute(0, 3, 2, 1)  # (B, W, H, C) -> (B, C, H, W)
        if self.hw is None:
            return (y_cw + y_hc) * 0.5
        return (self.hw(x) + y_cw + y_hc) * (1 / 3)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, no_spatial={self.no_spatial}"

    def functional_flops(self, inputs: tuple, output: torch.Tensor) -> int:
        """FLOPs outside the three 2 -> 1 convs (which thop counts); multiply-add = 2.

        Per gate, with n = B·C·H·W and p the size of its pooled plane (B·C·W, B·H·C or B·H·W): the Z-pool
        2·n (a max and an add per element) + p (the division), the BN 2·p (a FallbackBatchNorm2d, which thop
        skips), the sigmoid p, the product n. Averaging: (branches − 1) additions and one product per element.
        """
        b, c, h, w = (int(s) for s in inputs[0].shape)
        n = numel((b, c, h, w))
        planes = [b * c * w, b * h * c] + ([] if self.hw is None else [b * h * w])
        gates = sum(2 * n + p + batchnorm_flops(p) + p + n for p in planes)  # Z-pool, BN, sigmoid, product
        return gates + len(planes) * n  # (branches − 1) additions + 1 product per element
