"""SimAM: a simple, parameter-free attention module.

Yang et al., "SimAM: A Simple, Parameter-Free Attention Module for Convolutional Neural
Networks", ICML 2021 (PMLR vol. 139). The paper was published in the ICML proceedings only; it has no arXiv
id.
"""

from __future__ import annotations

import torch

from models.attention.base import Attention, clamp_min1, spatial_count
from models.attention.flops import numel


class SimAM(Attention, aliases=("simam_module",)):
    """SimAM: A Simple, Parameter-Free Attention Module for CNNs (Yang et al., ICML 2021; no arXiv id).

    Each neuron is weighted by the inverse of its minimal energy, with statistics global per image and
    channel (μ the mean over the H·W positions, n = H·W − 1, λ = ``e_lambda``)::

        d   = (x − μ)²
        y   = d / (4 · (Σ_hw d / n + λ)) + 0.5
        out = x · sigmoid(y)

    Differences from the official code, both only where it misbehaves: n is taken as at least 1 (a 1×1 map
    gives NaN otherwise), and the statistics are computed in fp32 and cast back (in fp16, Σd overflows 65504
    for activations with std above about 13 on a 20×20 map). No parameters.

    yaml example::

        [-1, 1, SimAM, []]            # e_lambda = 1e-4
        [-1, 1, SimAM, [1024, 0.1]]   # 1024 nominal channels, e_lambda = 0.1 (the paper's runs)

    Args:
        c1: input channels; accepted for the attention contract and unused.
        e_lambda: the regulariser λ added to the variance.
    """

    def __init__(self, c1: int | None = None, e_lambda: float = 1e-4) -> None:
        super().__init__()
        self.e_lambda = e_lambda

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = clamp_min1(spatial_count(x) - 1)  # int, or a 0-dim tensor while tracing
        xf = x.to(torch.promote_types(x.dtype, torch.float32))  # fp16/bf16 -> fp32: Σd overflows in fp16
        d = (xf - xf.mean(dim=(2, 3), keepdim=True)).pow(2)  # (B, C, H, W)
        var = d.sum(dim=(2, 3), keepdim=True) / n  # (B, C, 1, 1)
        y = d / (4 * (var + self.e_lambda)) + 0.5  # (B, C, H, W)
        return (xf * torch.sigmoid(y)).to(x.dtype)

    def extra_repr(self) -> str:
        return f"e_lambda={self.e_lambda}"

    def functional_flops(self, inputs: tuple, output: torch.Tensor) -> int:
        """8 FLOPs per element: mean, subtract, square, sum, divide, +0.5, sigmoid, product."""
        x = inputs[0]
        return 8 * numel(x.shape) + 3 * numel(x.shape[:2])  # + per-channel /n, +λ, ·4


simam_module = SimAM  # the name in the blog code users copy (pickled as models.common.simam_module)
