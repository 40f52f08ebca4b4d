"""ECA: Efficient Channel Attention.

Wang, Wu, Zhu, Li, Zuo, Hu, "ECA-Net: Efficient Channel Attention for Deep Convolutional Neural Networks",
CVPR 2020, arXiv 1910.03151.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from models.attention.base import Attention
from models.attention.flops import numel


def eca_kernel_size(channels: int, gamma: float = 2, b: float = 1) -> int:
    """ECA's adaptive kernel size ``k = ψ(C) = |log2(C)/γ + b/γ|_odd``.

    As in the authors' code: ``t = int(|(log2(C) + b) / γ|)``, then ``k = t`` if t is odd, else ``t + 1``
    (so k ≥ 1). With γ = 2, b = 1: C = 16..64 -> 3, 128..1024 -> 5, 2048 -> 7.

    Args:
        channels: the channel count C (≥ 1).
        gamma: γ of the mapping.
        b: b of the mapping.
    """
    t = int(abs((math.log2(channels) + b) / gamma))
    return t if t % 2 else t + 1


class ECAAttention(Attention, aliases=("ECA",)):
    """ECA-Net: Efficient Channel Attention for Deep CNNs (Qilong Wang, Banggu Wu, Pengfei Zhu, Peihua Li,
    Wangmeng Zuo, Qinghua Hu; CVPR 2020; arXiv 1910.03151).

    Local cross-channel interaction without dimensionality reduction: a 1-D convolution of size k (no
    bias, zero padding (k − 1)/2) slides along the channel axis of the pooled vector::

        z   = mean_hw(x)                        (B, C), taken in fp32 and cast back
        s   = sigmoid(conv1d_k(z))              along the channel axis, weights shared by all channels
        out = x · s                             per channel
        k   = |log2(C)/γ + b/γ|_odd             γ = 2, b = 1 (see :func:`eca_kernel_size`) unless given

    Parameters: k (3 at C = 64, 5 at C = 512).

    Also resolvable as ``ECA`` (the name YOLO forks use); forks' yaml ``[1024, 3]`` (a fixed k = 3) means
    the same here.

    yaml example::

        [-1, 1, ECAAttention, [1024]]       # adaptive k from the real channels (5 for 256 or 1024)
        [-1, 1, ECAAttention, [1024, 3]]    # fixed k = 3

    Args:
        c1: input (= output) channels C.
        k_size: kernel size k, odd; ``None`` (default) for the adaptive size.
        gamma: γ of the adaptive size.
        b: b of the adaptive size.
    """

    def __init__(self, c1: int, k_size: int | None = None, gamma: float = 2, b: float = 1) -> None:
        super().__init__()
        k = eca_kernel_size(c1, gamma, b) if k_size is None else int(k_size)
        if k < 1 or k % 2 == 0:
            raise ValueError(f"ECAAttention k_size must be a positive odd integer, got {k_size}")
        self.c1 = c1
        self.k_size = k
        self.conv = nn.Conv1d(1, 1, k, padding=(k - 1) // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.to(torch.promote_types(x.dtype, torch.float32)).mean((2, 3)).to(x.dtype)  # (B, C)
        s = torch.sigmoid(self.conv(z.unsqueeze(1)))  # (B, 1, C): channels as the 1-D sequence
        return x * s.transpose(1, 2).unsqueeze(-1).to(x.dtype)  # (B, 1, C) -> (B, C, 1, 1)

    def extra_repr(self) -> str:
        return f"c1={self.c1}, k_size={self.k_size}"

    def functional_flops(self, inputs: tuple, output: torch.Tensor) -> int:
        """FLOPs outside the Conv1d (which thop counts), with n = B·C·H·W.

        Squeeze: n additions and B·C divisions; sigmoid: B·C; product with x: n. Total ``2·n + 2·B·C``.
        """
        x = inputs[0]
        return 2 * numel(x.shape) + 2 * numel(x.shape[:2])
