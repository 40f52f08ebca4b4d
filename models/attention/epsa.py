"""EPSA: the pyramid split attention (PSA) module of EPSANet.

Zhang, Zu, Lu, Zou, Meng, "EPSANet: An Efficient Pyramid Squeeze Attention Block on Convolutional Neural
Network", 2021, arXiv 2105.14447.

S convolutions of growing kernel size (and group count) give S feature maps of C/S channels; a shared SE
weight module scores each channel of each map, a softmax across the S scales recalibrates them, and the
reweighted maps are concatenated back to C channels.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.attention.base import Attention, AttentionMap
from models.attention.ela import largest_divisor_at_most
from models.attention.flops import numel, softmax_flops


class EPSA(Attention, aliases=("PyramidSplitAttention", "PSAModule")):
    """Pyramid split attention of EPSANet (Hu Zhang, Keke Zu, Jian Lu, Yuru Zou, Deyu Meng; "EPSANet: An
    Efficient Pyramid Squeeze Attention Block on Convolutional Neural Network", 2021, arXiv 2105.14447).

    With x of shape (B, C, H, W), S = len(kernels) scales, C' = C / S, and one SE weight module shared by
    the scales (hidden width h = max(C' // r, 1))::

        F_i  = Conv_{k_i×k_i, G_i}(X_i)                         (B, C', H, W), i = 0..S-1, zero padding k_i // 2
        Z_i  = sigmoid(W2 · ReLU(W1 · mean_hw(F_i) + b1) + b2)    (B, C', 1, 1)  SEWeight
        a_i  = exp(Z_i) / Σ_j exp(Z_j)                          (B, C', 1, 1)  softmax across the S scales
        out  = cat_i(F_i · a_i)                                 (B, C, H, W)   scale-major channel order

    X_i is the whole input x by default (``split=False``): that is the paper's equation for F_i, the
    parameter counts it reports (its PSA replaces ResNet's 3×3 conv with fewer parameters only when every
    branch sees all C input channels) and the authors' code. ``split=True`` feeds branch i with the i-th
    C/S-channel slice of x instead, the "split" that the paper's prose and figure describe (16× fewer conv
    parameters at S = 4 than the default, not the models the paper measures).

    Kernels 3, 5, 7, 9 with groups 1, 4, 8, 16 as in the paper's experiments (its rule G = 2^((k-1)/2) would
    give 2 for k = 3; the experiments use 1). A group count is clamped to the largest divisor of the
    branch's input and output channels not above it: 1, 4, 4, 4 at C = 16 and 1, 4, 8, 8 at C = 32. The
    convolutions have no bias; the SE layers have biases (as in the authors' code). C must be divisible by
    S. This is a convolution with attention, not a gate on x: the output is the reweighted multi-scale
    features. The pooled means and the softmax run in fp32 and are cast back.

    Parameters: ``Σ_i C_in·C'·k_i²/G_i + 2·C'·h + h + C'`` with C_in = C (or C' with ``split=True``);
    at C = 256 (C' = 64, h = 4): 433,152 + 580 = 433,732 (``split=True``: 108,288 + 580 = 108,868).

    yaml example::

        [-1, 1, EPSA, [1024]]                                      # k 3,5,7,9, G 1,4,8,16, r = 16
        [-1, 1, PSAModule, [1024, [3, 5, 7, 9], [1, 4, 8, 16], 16, True]]   # split input

    Args:
        c1: input (= output) channels C.
        kernels: kernel size of each scale, odd (paper: 3, 5, 7, 9).
        groups: group count of each scale's convolution, clamped as above (paper: 1, 4, 8, 16).
        reduction: r of the SE weight module (paper: 16).
        split: feed each scale a C/S slice of x instead of the whole x.
    """

    def __init__(self, c1: int, kernels: tuple = (3, 5, 7, 9), groups: tuple = (1, 4, 8, 16), reduction: int = 16,
                 split: bool = False) -> None:
        super().__init__()
        kernels, groups = tuple(int(k) for k in kernels), tuple(int(g) for g in groups)
        if not kernels or len(kernels) != len(groups):
            raise ValueError(f"EPSA needs one group count per kernel, got kernels {kernels}, groups {groups}")
        if any(k < 1 or k % 2 == 0 for k in kernels):
            raise ValueError(f"EPSA kernels must be positive odd integers, got {kernels}")
        if c1 % len(kernels):
            raise ValueError(f"EPSA channels {c1} are not divisible by the number of scales {len(kernels)}")
        if int(reduction) < 1:
            raise ValueError(f"EPSA reduction must be a positive integer, got {reduction}")
        self.c1 = c1
        self.scales = len(kernels)
        self.split = bool(split)
        self.reduction = int(reduction)
        cs = self.c_split = c1 // self.scales  # C'
        c_in = cs if self.split else c1
        self.kernels = kernels
        self.groups = tuple(largest_divisor_at_most(cs, g) for g in groups)  # cs divides c_in
        self.convs = nn.ModuleList(nn.Conv2d(c_in, cs, k, padding=k // 2, groups=g, bias=False)
                                   for k, g in zip(self.kernels, self.groups))
        self.hidden = max(cs // self.reduction, 1)
        self.se_fc1 = nn.Conv2d(cs, self.hidden, 1)  # W1, b1 (shared by the scales)
        self.se_fc2 = nn.Conv2d(self.hidden, cs, 1)  # W2, b2

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The S multi-scale maps F_i, each (B, C', H, W)."""
        parts = x.chunk(self.scales, dim=1) if self.split else [x] * self.scales  # S × (B, C' or C, H, W)
        return [conv(p) for conv, p in zip(self.convs, parts)]

    def weights(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """The softmax across scales of the SE weights, (B, S, C', 1, 1), in fp32 (or float64)."""
        ft = torch.promote_types(feats[0].dtype, torch.float32)
        z = []
        for f in feats:
            pooled = f.to(ft).mean((2, 3), keepdim=True).to(f.dtype)  # (B, C', 1, 1)
            z.append(torch.sigmoid(self.se_fc2(F.relu(self.se_fc1(pooled)))))  # (B, C', 1, 1)
        return torch.stack(z, 1).to(ft).softmax(dim=1)  # (B, S, C', 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.features(x)
        a = self.weights(feats)  # (B, S, C', 1, 1)
        return torch.cat([f * a[:, i].to(f.dtype) for i, f in enumerate(feats)], 1)  # S × (B, C', H, W) -> (B, C, H, W)

    def extra_repr(self) -> str:
        return (f"c1={self.c1}, kernels={self.kernels}, groups={self.groups}, reduction={self.reduction}, "
                f"hidden={self.hidden}, split={self.split}")

    @torch.no_grad()
    def attention_map(self, inputs: tuple, output: torch.Tensor) -> AttentionMap:
        """The per-channel softmax weights across scales, (B, C) in the output's channel order; the spatial map is
        the generic gain."""
        a = self.weights(self.features(inputs[0])).float()  # (B, S, C', 1, 1)
        return AttentionMap(channel=a.flatten(1),  # (B, S·C') = (B, C)
                            channel_label="EPSA softmax weight across scales (they sum to 1 per C' slot)")

    def functional_flops(self, inputs: tuple, output: torch.Tensor) -> int:
        """FLOPs outside the convs (which thop counts), with n = B·C·H·W (the S maps together) and S·C' = C.

        The means n + B·C; the ReLUs B·S·h; the sigmoids B·C; the softmax across scales 3·B·C; the products
        F_i · a_i n. Total ``2·n + 5·B·C + B·S·h``.
        """
        b = int(inputs[0].shape[0])
        n = numel(output.shape)
        return 2 * n + 2 * b * self.c1 + softmax_flops(b * self.c1) + b * self.scales * self.hidden
