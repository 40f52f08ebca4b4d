"""SE: the Squeeze-and-Excitation block.

Hu, Shen, Sun, "Squeeze-and-Excitation Networks", CVPR 2018, arXiv 1709.01507.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.attention.base import Attention
from models.attention.flops import numel


class SEAttention(Attention, aliases=("SE",)):
    """Squeeze-and-Excitation Networks (Jie Hu, Li Shen, Gang Sun; CVPR 2018; arXiv 1709.01507).

    With z the global average of each channel ("squeeze") and r the reduction ratio::

        z   = mean_hw(x)                                    (B, C)
        s   = sigmoid(W2 · ReLU(W1 · z + b1) + b2)          W1: C/r × C, W2: C × C/r ("excitation")
        out = x · s                                         per channel

    The two fully connected layers are 1×1 convolutions on the pooled (B, C, 1, 1) tensor, with biases as
    in the authors' released models. The hidden width is ``C // r``, at least 1 (so C < r still builds).
    Parameters: ``2·C·(C//r) + C//r + C``, e.g. 33,312 at C = 512, r = 16. The pooled mean is taken in
    fp32 (no fp16 overflow of the sum over H·W) and cast back.

    Also resolvable as ``SE`` (the name YOLO forks use). Forks' yamls ``[1024, 16]`` mean the same here:
    the nominal channels, then the reduction.

    yaml example::

        [-1, 1, SEAttention, [1024]]       # reduction 16
        [-1, 1, SEAttention, [1024, 8]]    # reduction 8

    Args:
        c1: input (= output) channels C.
        reduction: the reduction ratio r (the paper's default is 16).
    """

    def __init__(self, c1: int, reduction: int = 16) -> None:
        super().__init__()
        if int(reduction) < 1:
            raise ValueError(f"SEAttention reduction must be a positive integer, got {reduction}")
        self.c1 = c1
        self.reduction = int(reduction)
        self.hidden = max(c1 // self.reduction, 1)
        self.fc1 = nn.Conv2d(c1, self.hidden, 1, bias=True)  # W1, b1
        self.fc2 = nn.Conv2d(self.hidden, c1, 1, bias=True)  # W2, b2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.to(torch.promote_types(x.dtype, torch.float32)).mean((2, 3), keepdim=True).to(x.dtype)  # (B, C, 1, 1)
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(z))))  # (B, C, 1, 1)
        return x * s.to(x.dtype)

    def extra_repr(self) -> str:
        return f"c1={self.c1}, reduction={self.reduction}, hidden={self.hidden}"

    def functional_flops(self, inputs: tuple, output: torch.Tensor) -> int:
        """FLOPs outside the two 1×1 convs (which thop counts), with n = B·C·H·W.

        Squeeze: n additions and B·C divisions; ReLU: B·(C//r); sigmoid: B·C; the product with x: n.
        Total ``2·n + 2·B·C + B·(C//r)``.
        """
        x = inputs[0]
        n, bc = numel(x.shape), numel(x.shape[:2])
        return 2 * n + 2 * bc + int(x.shape[0]) * self.hidden
