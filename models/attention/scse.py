"""scSE: concurrent spatial and channel squeeze & excitation.

Roy, Navab, Wachinger, "Concurrent Spatial and Channel 'Squeeze & Excitation' in Fully Convolutional
Networks", MICCAI 2018, arXiv 1803.02579.

A channel gate (SE: spatial squeeze, channel excitation) and a spatial gate (a 1×1 convolution to one channel:
channel squeeze, spatial excitation) each recalibrate the input; the two recalibrated maps are combined.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.attention.base import Attention, AttentionMap
from models.attention.flops import numel

_MODES = ("add", "max")


class scSE(Attention, aliases=("SCSE",)):  # noqa: N801  (the paper's name)
    """Concurrent spatial and channel squeeze & excitation (Abhijit Guha Roy, Nassir Navab, Christian
    Wachinger; MICCAI 2018; arXiv 1803.02579).

    With x of shape (B, C, H, W), r the reduction and h = max(C // r, 1)::

        s     = sigmoid(W2 · ReLU(W1 · mean_hw(x) + b1) + b2)     (B, C, 1, 1)   cSE, W1: h × C, W2: C × h
        q     = sigmoid(w_s · x + b_s)                            (B, 1, H, W)   sSE, a 1×1 conv C -> 1
        x_cSE = x · s,  x_sSE = x · q
        out   = x_cSE + x_sSE                                      (mode "add", the paper)
        out   = max(x_cSE, x_sSE)                                  (mode "max", element-wise)

    The paper combines the two by addition and halves the channels in the excitation (r = 2); both are the
    defaults. The authors' released code takes the element-wise maximum instead; ``mode="max"`` gives it.
    The linear layers and the 1×1 conv have biases, as in that code. The pooled mean runs in fp32 and is
    cast back.

    Parameters: ``2·C·h + h + 2·C + 1``, i.e. 66,177 at C = 256 (r = 2, h = 128).

    yaml example::

        [-1, 1, scSE, [1024]]            # r = 2, addition
        [-1, 1, SCSE, [1024, 16, max]]   # r = 16, element-wise maximum

    Args:
        c1: input (= output) channels C.
        reduction: r of the channel excitation (paper: 2).
        mode: how x_cSE and x_sSE are combined, ``"add"`` (paper) or ``"max"`` (authors' code).
    """

    def __init__(self, c1: int, reduction: int = 2, mode: str = "add") -> None:
        super().__init__()
        if int(reduction) < 1:
            raise ValueError(f"scSE reduction must be a positive integer, got {reduction}")
        if mode not in _MODES:
            raise ValueError(f"scSE mode must be one of {_MODES}, got {mode!r}")
        self.c1 = c1
        self.reduction = int(reduction)
        self.mode = mode
        self.hidden = max(c1 // self.reduction, 1)
        self.fc1 = nn.Conv2d(c1, self.hidden, 1)  # W1, b1
        self.fc2 = nn.Conv2d(self.hidden, c1, 1)  # W2, b2
        self.sconv = nn.Conv2d(c1, 1, 1)  # w_s, b_s

    def gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The channel gate s (B, C, 1, 1) and the spatial gate q (B, 1, H, W), in x's dtype."""
        z = x.to(torch.promote_types(x.dtype, torch.float32)).mean((2, 3), keepdim=True).to(x.dtype)  # (B, C, 1, 1)
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(z))))  # (B, C, 1, 1)
        q = torch.sigmoid(self.sconv(x))  # (B, 1, H, W)
        return s.to(x.dtype), q.to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s, q = self.gates(x)
        if self.mode == "max":
            return torch.maximum(x * s, x * q)
        return x * s + x * q

    def extra_repr(self) -> str:
        return f"c1={self.c1}, reduction={self.reduction}, hidden={self.hidden}, mode={self.mode}"

    @torch.no_grad()
    def attention_map(self, inputs: tuple, output: torch.Tensor) -> AttentionMap:
        """The two gates: the spatial one q (B, H, W) and the channel one s (B, C)."""
        s, q = self.gates(inputs[0])
        return AttentionMap(spatial=q.float()[:, 0], channel=s.float()[:, :, 0, 0],  # (B, H, W), (B, C)
                            spatial_label="sSE gate sigmoid(conv1x1(x))",
                            channel_label="cSE gate sigmoid(MLP(mean(x)))")

    def functional_flops(self, inputs: tuple, output: torch.Tensor) -> int:
        """FLOPs outside the 1×1 convs (which thop counts), with n = B·C·H·W and p = B·H·W.

        The mean n + B·C; ReLU B·h; the sigmoids B·C + p; the two products 2·n; the combination n.
        Total ``4·n + 2·B·C + B·h + p``.
        """
        b, c, h, w = (int(v) for v in inputs[0].shape)
        return 4 * numel(inputs[0].shape) + 2 * b * c + b * self.hidden + b * h * w
