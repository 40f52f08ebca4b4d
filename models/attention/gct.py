"""GCT: gated channel transformation.

Yang, Zhu, Wu, Yang, "Gated Channel Transformation for Visual Recognition", CVPR 2020, arXiv 1909.11519.

A per-channel global embedding (the l2 norm of each channel, scaled by α), a normalisation across channels
(channel competition), and a gate 1 + tanh(γ·ŝ + β) per channel: with γ = β = 0 (their initial values) the
block is the identity.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from models.attention.base import Attention, AttentionMap
from models.attention.flops import numel

_MODES = ("l2", "l1")


class GCT(Attention, aliases=("GatedChannelTransformation",)):
    """Gated Channel Transformation (Zongxin Yang, Linchao Zhu, Yu Wu, Yi Yang; CVPR 2020; arXiv 1909.11519).

    With x of shape (B, C, H, W) and per-channel parameters α, γ, β (shape (1, C, 1, 1))::

        s_c  = α_c · (Σ_hw x_c² + ε)^½                     global context embedding (l2)       (B, C, 1, 1)
        ŝ_c  = √C · s_c / (Σ_c' s_c'² + ε)^½               channel normalisation (l2)          (B, C, 1, 1)
        out  = x · (1 + tanh(γ_c · ŝ_c + β_c))              gating adaptation

    α starts at 1 and γ, β at 0, as in the paper, so the block starts as the identity (gate 1); α still gets
    a gradient (0 while γ = 0), so it is trained once γ moves. The whole gate is computed in fp32 (Σ x² over
    160×160 positions of activations ~100 is ~3·10⁸, beyond fp16) and cast back.

    ``mode="l1"`` is the paper's l1 ablation, as the authors' code computes it: s_c = α_c · Σ_hw |x_c| and
    ŝ_c = s_c / (mean_c |s_c| + ε). The authors' code for l2 writes the normalisation as
    s_c / (mean_c s_c² + ε)^½, which is the paper's formula with ε scaled by C: numerically the same for any
    activations that are not all ~0; the paper's form is used.

    Parameters: ``3·C``, i.e. 768 at C = 256.

    yaml example::

        [-1, 1, GCT, [1024]]              # l2 embedding, ε = 1e-5
        [-1, 1, GCT, [1024, 1e-5, l1]]    # l1 embedding

    Args:
        c1: input (= output) channels C.
        epsilon: ε (authors' value 1e-5).
        mode: ``"l2"`` (paper's default) or ``"l1"``.
    """

    def __init__(self, c1: int, epsilon: float = 1e-5, mode: str = "l2") -> None:
        super().__init__()
        if mode not in _MODES:
            raise ValueError(f"GCT mode must be one of {_MODES}, got {mode!r}")
        self.c1 = c1
        self.epsilon = float(epsilon)
        self.mode = mode
        self.alpha = nn.Parameter(torch.ones(1, c1, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c1, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, c1, 1, 1))

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """1 + tanh(γ·ŝ + β), (B, C, 1, 1), in fp32 (or float64)."""
        ft = torch.promote_types(x.dtype, torch.float32)
        xf = x.to(ft)
        alpha, gamma, beta = self.alpha.to(ft), self.gamma.to(ft), self.beta.to(ft)
        if self.mode == "l2":
            s = (xf.square().sum((2, 3), keepdim=True) + self.epsilon).sqrt() * alpha  # (B, C, 1, 1)
            s_hat = s * (self.c1 ** 0.5) / (s.square().sum(1, keepdim=True) + self.epsilon).sqrt()  # (B, C, 1, 1)
        else:
            s = xf.abs().sum((2, 3), keepdim=True) * alpha  # (B, C, 1, 1)
            s_hat = s / (s.abs().mean(1, keepdim=True) + self.epsilon)  # (B, C, 1, 1)
        return 1.0 + torch.tanh(gamma * s_hat + beta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x).to(x.dtype)

    def extra_repr(self) -> str:
        return f"c1={self.c1}, epsilon={self.epsilon}, mode={self.mode}"

    @torch.no_grad()
    def attention_map(self, inputs: tuple, output: torch.Tensor) -> AttentionMap:
        """The channel gate 1 + tanh(γ·ŝ + β), (B, C); the spatial map is the generic gain."""
        return AttentionMap(channel=self.gate(inputs[0]).float()[:, :, 0, 0],  # (B, C, 1, 1) -> (B, C)
                            channel_label="GCT gate 1 + tanh(γ·ŝ + β), in (0, 2)")

    def functional_flops(self, inputs: tuple, output: torch.Tensor) -> int:
        """FLOPs of the whole module (no child module), with n = B·C·H·W.

        The embedding 2·n (square or abs, accumulate); per (image, channel) +ε, √ and ×α (3), the
        normalisation's square-accumulate (2), ×√C and ÷ (2), ×γ, +β, tanh, +1 (4); per image +ε and √ (2);
        the product with x n. Total ``3·n + 11·B·C + 2·B``.
        """
        x = inputs[0]
        return 3 * numel(x.shape) + 11 * numel(x.shape[:2]) + 2 * int(x.shape[0])
