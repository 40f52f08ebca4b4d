"""SOCA: the second-order channel attention of SAN.

Dai, Cai, Zhang, Xia, Zhang, "Second-order Attention Network for Single Image Super-Resolution", CVPR 2019.

The channel descriptor is second-order: the covariance matrix of the channels over positions, normalised by
its matrix square root (Newton-Schulz iteration), averaged over each row; an SE-style bottleneck turns it
into a sigmoid gate per channel.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from models.attention.base import Attention, AttentionMap, spatial_count
from models.attention.flops import numel


def sqrtm_newton_schulz(a: torch.Tensor, iterations: int) -> torch.Tensor:
    """Square root of a batch of symmetric positive semi-definite matrices (B, C, C), by ``iterations`` coupled
    Newton-Schulz steps on ``a / tr(a)`` (eigenvalues in [0, 1], where the iteration converges), scaled back
    by ``sqrt(tr(a))``. A zero matrix (trace 0) gives 0. Pure matmuls: exportable, differentiable."""
    c = int(a.shape[-1])
    eye = torch.eye(c, dtype=a.dtype, device=a.device)  # (C, C)
    norm = (a * eye).sum((-2, -1), keepdim=True).clamp_min(torch.finfo(a.dtype).tiny)  # tr(a), (B, 1, 1)
    y, z = a / norm, eye
    for i in range(iterations):
        t = 0.5 * (3.0 * eye - torch.matmul(z, y))  # (B, C, C)
        y = torch.matmul(y, t)
        if i + 1 < iterations:  # the last Z (→ a^-1/2) is not needed
            z = torch.matmul(t, z)
    return y * norm.sqrt()


class SOCA(Attention):
    """Second-order channel attention (Tao Dai, Jianrui Cai, Yongbing Zhang, Shu-Tao Xia, Lei Zhang;
    "Second-order Attention Network for Single Image Super-Resolution"; CVPR 2019).

    With x of shape (B, C, H, W) viewed as X (C × s), s = H·W, and N Newton-Schulz iterations::

        Σ   = X Ī Xᵀ,  Ī = (1/s)(I − (1/s)·1·1ᵀ)             channel covariance (B, C, C)
        Y₀  = Σ / tr(Σ),  Z₀ = I
        T   = ½(3I − Z_{n−1} Y_{n−1}),  Y_n = Y_{n−1} T,  Z_n = T Z_{n−1}      n = 1..N
        Ŷ   = sqrt(tr(Σ)) · Y_N                               ≈ Σ^{1/2} (covariance normalisation)
        z_c = (1/C) Σ_i Ŷ_{c,i}                              global covariance pooling (B, C)
        w   = sigmoid(W_U · ReLU(W_D · z + b_D) + b_U)        W_D: C/r × C, W_U: C × C/r (1×1 convs)
        out = x · w                                           per channel

    The covariance (X centred over positions, then X Xᵀ / s), the iteration and z run in at least fp32 with
    autocast off (the sums of squares over H·W positions overflow fp16; the iteration needs the precision),
    and the gate is cast back; float64 modules run it in float64. N is fixed (the paper's 5), so the graph is
    a fixed chain of matmuls that traces and exports. A 1×1 map (or a constant one) has Σ = 0, hence z = 0
    (trace clamped to the smallest normal number instead of dividing by 0).

    The official code applies the same computation to at most the central 1000×1000 crop of the map (a
    memory guard for super-resolution inputs); here the whole map is used, as the paper writes.
    The bottleneck convs keep the official names (``conv_du.0``, ``conv_du.2``); its hidden width is
    ``C // r``, at least 1.

    Parameters: ``2·C·(C//r) + C//r + C``, i.e. 8,464 at C = 256 (r = 16).

    yaml example::

        [-1, 1, SOCA, [1024]]          # r = 16, N = 5
        [-1, 1, SOCA, [1024, 8, 3]]    # r = 8, N = 3

    Args:
        c1: input (= output) channels C.
        reduction: r, the bottleneck's reduction ratio (paper: 16).
        iterations: N, the Newton-Schulz iterations (paper: 5).
    """

    def __init__(self, c1: int, reduction: int = 16, iterations: int = 5) -> None:
        super().__init__()
        if int(reduction) < 1 or int(iterations) < 1:
            raise ValueError(f"SOCA reduction and iterations must be positive integers, got {reduction}, {iterations}")
        self.c1 = c1
        self.reduction = int(reduction)
        self.iterations = int(iterations)
        self.hidden = max(c1 // self.reduction, 1)
        self.conv_du = nn.Sequential(
            nn.Conv2d(c1, self.hidden, 1),  # W_D, b_D
            nn.ReLU(inplace=True),
            nn.Conv2d(self.hidden, c1, 1))  # W_U, b_U

    def descriptor(self, x: torch.Tensor) -> torch.Tensor:
        """z: the row means of the normalised covariance, (B, C), in at least fp32."""
        ft = torch.promote_types(x.dtype, torch.float32)
        with torch.autocast(device_type=x.device.type, enabled=False):
            xf = x.to(ft).flatten(2)  # (B, C, s)
            xc = xf - xf.mean(-1, keepdim=True)  # X Ī = centred X, up to the 1/s
            cov = torch.matmul(xc, xc.transpose(1, 2)) / spatial_count(x)  # (B, C, s) @ (B, s, C) -> (B, C, C)
            return sqrtm_newton_schulz(cov, self.iterations).mean(-1)  # (B, C)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """w = sigmoid(W_U ReLU(W_D z)), (B, C, 1, 1), in x's dtype."""
        z = self.descriptor(x).to(x.dtype)[..., None, None]  # (B, C) -> (B, C, 1, 1)
        return torch.sigmoid(self.conv_du(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x).to(x.dtype)

    def extra_repr(self) -> str:
        return f"c1={self.c1}, reduction={self.reduction}, iterations={self.iterations}, hidden={self.hidden}"

    @torch.no_grad()
    def attention_map(self, inputs: tuple, output: torch.Tensor) -> AttentionMap:
        """The channel gate w, (B, C); the spatial map is the generic gain."""
        return AttentionMap(channel=self.gate(inputs[0]).float().flatten(1), channel_label="SOCA channel gate")

    def functional_flops(self, inputs: tuple, output: torch.Tensor) -> int:
        """FLOPs outside the two 1×1 convs (which thop counts; the ReLU counts 0), with n = B·C·H·W.

        Per image: mean over positions and centring 2·C·s + C; the covariance 2·C²·s and its division C²; the
        trace C and the normalisation C²; per iteration Z·Y 2·C³, T 2·C², Y·T 2·C³ and (all but the last) T·Z
        2·C³; the rescaling C² + 1; the row means C² + C. Then the sigmoid B·C and the gating product n.
        """
        x = inputs[0]
        b, c = int(x.shape[0]), int(x.shape[1])
        n = numel(x.shape)
        s = n // max(b * c, 1)
        cov = 2 * c * s + c + 2 * c * c * s + c * c
        newton = c + c * c + self.iterations * (4 * c ** 3 + 2 * c * c) + (self.iterations - 1) * 2 * c ** 3
        tail = 2 * c * c + c + 1
        return b * (cov + newton + tail) + b * c + n
