"""SpatialGroupEnhance: the spatial group-wise enhance (SGE) module.

Li, Hu, Yang, "Spatial Group-wise Enhance: Improving Semantic Feature Learning in Convolutional Networks",
2019, arXiv 1905.09646.

Channels are split into G groups; in each group every position is scored by the similarity of its feature
vector to the group's global mean vector, the scores are normalised over positions, scaled and shifted by
one learned pair per group, and a sigmoid of them gates the group's features.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from models.attention.base import Attention, AttentionMap, clamp_min1, spatial_count
from models.attention.flops import numel


def divisor_groups(c1: int, groups: int) -> int:
    """The largest G <= ``groups`` that divides ``c1`` (at least 1)."""
    g = max(min(int(groups), int(c1)), 1)
    while c1 % g:
        g -= 1
    return g


class SpatialGroupEnhance(Attention, aliases=("SGE",)):
    """Spatial Group-wise Enhance (Xiang Li, Xiaolin Hu, Jian Yang; 2019; arXiv 1905.09646).

    x (B, C, H, W) is viewed as B·G groups of C/G channels; in a group, x_i is the (C/G)-vector at position
    i = 1..m, m = H·W, and γ, β are that group's two parameters::

        g   = (1/m) Σ_i x_i                               global mean vector of the group
        c_i = g · x_i                                     similarity of each position to it (dot product)
        μ   = (1/m) Σ_i c_i ,  σ² = (1/m) Σ_i (c_i − μ)²
        ĉ_i = (c_i − μ) / (σ + ε)                         normalised over positions, ε = 1e-5
        a_i = γ · ĉ_i + β
        out_i = x_i · sigmoid(a_i)

    γ starts at 0 and β at 1 (so every gate starts at sigmoid(1)), as in the paper and the official code.
    G is the paper's 64 by default, reduced to the largest divisor of C (so C = 16 gives 16 groups of one
    channel). The statistics (g, c_i, μ, σ) run in at least fp32 and the gate is cast back: c_i grows like
    the square of the activations and overflows fp16 for activations of a few hundred.

    Official variant: the official code divides by the Bessel-corrected standard deviation (m − 1 instead of
    m); ``unbiased=True`` selects it. The paper's σ (divisor m) is the default because it is what the paper
    writes and it is defined on a 1×1 map (m = 1), where the unbiased one is 0/0; with ``unbiased=True`` the
    divisor is ``max(m − 1, 1)`` so a 1×1 map still gives ĉ = 0.

    Parameters: 2·G, i.e. 128 at C = 256 (G = 64).

    yaml example::

        [-1, 1, SpatialGroupEnhance, [1024]]        # G = 64
        [-1, 1, SGE, [1024, 8]]                     # G = 8

    Args:
        c1: input (= output) channels C.
        groups: the number of groups G (upper bound; reduced to the largest divisor of C).
        unbiased: divide the variance by m − 1 as the official code does (default: by m, as the paper).
        eps: ε added to σ.
    """

    def __init__(self, c1: int, groups: int = 64, unbiased: bool = False, eps: float = 1e-5) -> None:
        super().__init__()
        self.c1 = c1
        self.groups = divisor_groups(c1, groups)
        self.unbiased = bool(unbiased)
        self.eps = float(eps)
        self.weight = nn.Parameter(torch.zeros(1, self.groups, 1, 1))  # γ
        self.bias = nn.Parameter(torch.ones(1, self.groups, 1, 1))  # β

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """sigmoid(a): the gate of every (image, group, position), (B, G, H, W), in at least fp32."""
        h, w = x.shape[-2:]
        ft = torch.promote_types(x.dtype, torch.float32)
        xg = x.to(ft).reshape(-1, self.c1 // self.groups, h, w)  # (B*G, C/G, H, W)
        g = xg.mean((2, 3), keepdim=True)  # (B*G, C/G, 1, 1)
        c = (xg * g).sum(1).reshape(-1, self.groups, h * w)  # (B*G, H, W) -> (B, G, m)
        c = c - c.mean(-1, keepdim=True)
        m = spatial_count(x)
        var = c.square().sum(-1, keepdim=True) / (clamp_min1(m - 1) if self.unbiased else m)  # (B, G, 1)
        cn = (c / (var.sqrt() + self.eps)).reshape(-1, self.groups, h, w)  # (B, G, m) -> (B, G, H, W)
        return torch.sigmoid(cn * self.weight.to(ft) + self.bias.to(ft))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        s = self.gate(x).to(x.dtype).reshape(-1, 1, h, w)  # (B, G, H, W) -> (B*G, 1, H, W)
        out = x.reshape(-1, self.c1 // self.groups, h, w) * s  # (B*G, C/G, H, W)
        return out.reshape(-1, self.c1, h, w)  # (B, C, H, W)

    def extra_repr(self) -> str:
        return f"c1={self.c1}, groups={self.groups}, unbiased={self.unbiased}"

    @torch.no_grad()
    def attention_map(self, inputs: tuple, output: torch.Tensor) -> AttentionMap:
        """The gate sigmoid(a) averaged over the groups, (B, H, W); the channel map is the generic gain."""
        return AttentionMap(spatial=self.gate(inputs[0]).float().mean(1), spatial_label="SGE gate, mean over groups")

    def functional_flops(self, inputs: tuple, output: torch.Tensor) -> int:
        """FLOPs of the whole module (it has no child module), with n = B·C·H·W, p = B·G·H·W, q = B·G.

        Group mean n + B·C; the products x_i·g n and their sum over the group's channels n; the mean of c
        p + q and its subtraction p; the variance 2·p + q; sqrt, + ε 2·q; the division p; the affine 2·p;
        the sigmoid p; the gating product n. Total ``4·n + B·C + 8·p + 4·q``.
        """
        x = inputs[0]
        n, bc = numel(x.shape), numel(x.shape[:2])
        q = int(x.shape[0]) * self.groups
        p = q * numel(x.shape[2:])
        return 4 * n + bc + 8 * p + 4 * q
