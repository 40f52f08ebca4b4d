"""MLCA: mixed local channel attention.

Wan et al., "Mixed local channel attention for object detection", Engineering Applications of
Artificial Intelligence, 2023.

A local average pool to a fixed ks × ks grid, then two ECA-like 1-D convolutions: one over the channels of the
globally pooled vector, one over the flattened (position, channel) sequence of the local grid; the two sigmoid
gates are mixed and "unpooled" back to the map size.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from models.attention.base import Attention, AttentionMap, Size
from models.attention.eca import eca_kernel_size
from models.attention.flops import numel


def adaptive_pool_matrix(n_in: Size, n_out: Size, like: torch.Tensor) -> torch.Tensor:
    """The (n_out, n_in) matrix of adaptive average pooling along one axis, in ``like``'s dtype and device.

    Output bin i averages inputs ``floor(i·n_in/n_out) <= j < ceil((i+1)·n_in/n_out)`` (PyTorch's adaptive
    pooling bins), which also "unpools" when n_out > n_in (each output copies or averages its 1-2 cells). Built
    from ``arange`` and integer arithmetic, so it stays dynamic under tracing and exports to ONNX opset 12 for
    any map size (``nn.AdaptiveAvgPool2d`` to a size other than 1 does not).
    """
    i = torch.arange(n_out, device=like.device).unsqueeze(1)  # (n_out, 1)
    j = torch.arange(n_in, device=like.device).unsqueeze(0)  # (1, n_in)
    start = (i * n_in) // n_out
    end = ((i + 1) * n_in + n_out - 1) // n_out
    m = ((j >= start) & (j < end)).to(like.dtype)  # (n_out, n_in), every row has >= 1 one
    return m / m.sum(1, keepdim=True)


def adaptive_pool2d(x: torch.Tensor, out_h: Size, out_w: Size) -> torch.Tensor:
    """``F.adaptive_avg_pool2d(x, (out_h, out_w))`` of a (..., H, W) tensor as two matrix products (see above)."""
    h, w = x.shape[-2:]
    ph = adaptive_pool_matrix(h, out_h, x)  # (out_h, H)
    pw = adaptive_pool_matrix(w, out_w, x)  # (out_w, W)
    return torch.matmul(torch.matmul(ph, x), pw.transpose(0, 1))  # (..., out_h, W) -> (..., out_h, out_w)


class MLCA(Attention):
    """Mixed local channel attention (Wan et al., "Mixed local channel attention for object detection",
    Engineering Applications of Artificial Intelligence, 2023).

    With ks = ``local_size``, w = ``local_weight`` and k = ECA's adaptive kernel size of C (γ = 2, b = 1)::

        L     = LAP_ks(x)                                  local average pool, (B, C, ks, ks)
        g     = mean_ij(L)                                 global average of the local grid, (B, C)
        a_g   = sigmoid(conv1d_k(g))                       along the channel axis, (B, C)
        s     = flatten(L) in (position, channel) order    (B, 1, ks·ks·C): channel index fastest
        a_l   = sigmoid(conv1d'_k(s)) reshaped back        (B, C, ks, ks)
        A     = UNAP_HW(w · a_l + (1 − w) · a_g)           "unpool" to (B, C, H, W): adaptive average pooling
        out   = x · A

    Both 1-D convolutions have k taps, zero padding (k − 1)/2 and no bias. The local convolution runs over the
    sequence exactly as the paper flattens it, so at the end of one position's channels it sees the next
    position's first channels (as in the authors' code).

    Difference from the authors' code: their global gate is reshaped so that the adaptive pooling runs over the
    batch axis (right only for batch 1); here the global gate is per image as the paper describes. The pooling and
    unpooling are PyTorch's adaptive average pooling bins written as matrix products (exportable on dynamic
    sizes); the pooling runs in fp32 and is cast back.

    Parameters: 2·k, i.e. 10 at C = 256 (k = 5), 6 at C = 16 (k = 3).

    yaml example::

        [-1, 1, MLCA, [1024]]              # ks = 5, w = 0.5
        [-1, 1, MLCA, [1024, 3, 0.3]]      # ks = 3, w = 0.3

    Args:
        c1: input (= output) channels C.
        local_size: ks, the side of the local pooling grid (paper: 5).
        local_weight: w, the weight of the local gate (paper: 0.5).
        gamma: γ of the adaptive kernel size.
        b: b of the adaptive kernel size.
    """

    def __init__(self, c1: int, local_size: int = 5, local_weight: float = 0.5, gamma: float = 2,
                 b: float = 1) -> None:
        super().__init__()
        if int(local_size) < 1:
            raise ValueError(f"MLCA local_size must be a positive integer, got {local_size}")
        if not 0.0 <= float(local_weight) <= 1.0:
            raise ValueError(f"MLCA local_weight must be in [0, 1], got {local_weight}")
        self.c1 = c1
        self.local_size = int(local_size)
        self.local_weight = float(local_weight)
        self.k_size = eca_kernel_size(c1, gamma, b)
        self.conv = nn.Conv1d(1, 1, self.k_size, padding=(self.k_size - 1) // 2, bias=False)  # global branch
        self.conv_local = nn.Conv1d(1, 1, self.k_size, padding=(self.k_size - 1) // 2, bias=False)

    def gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The local gate a_l (B, C, ks, ks) and the global gate a_g (B, C, 1, 1), in x's dtype."""
        ks, c = self.local_size, self.c1
        wide = torch.promote_types(x.dtype, torch.float32)
        local = adaptive_pool2d(x.to(wide), ks, ks)  # (B, C, ks, ks), fp32
        glob = local.mean((2, 3)).to(x.dtype)  # (B, C)
        local = local.to(x.dtype)
        seq = local.permute(0, 2, 3, 1).reshape(-1, 1, ks * ks * c)  # (B, ks, ks, C) -> (B, 1, ks*ks*C)
        a_l = torch.sigmoid(self.conv_local(seq))  # (B, 1, ks*ks*C)
        a_l = a_l.reshape(-1, ks, ks, c).permute(0, 3, 1, 2)  # (B, ks, ks, C) -> (B, C, ks, ks)
        a_g = torch.sigmoid(self.conv(glob.unsqueeze(1)))  # (B, 1, C)
        return a_l, a_g.transpose(1, 2).unsqueeze(-1)  # (B, C, 1) -> (B, C, 1, 1)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """The full gate A, (B, C, H, W) in x's dtype."""
        a_l, a_g = self.gates(x)
        h, w = x.shape[-2:]
        up = adaptive_pool2d(a_l, h, w)  # (B, C, H, W): each output averages the 1-2 grid cells it covers
        return self.local_weight * up + (1.0 - self.local_weight) * a_g

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x).to(x.dtype)

    def extra_repr(self) -> str:
        return f"c1={self.c1}, local_size={self.local_size}, local_weight={self.local_weight}, k_size={self.k_size}"

    @torch.no_grad()
    def attention_map(self, inputs: tuple, output: torch.Tensor) -> AttentionMap:
        """The gate A averaged over channels (spatial, (B, H, W)) and over positions (channel, (B, C))."""
        a = self.gate(inputs[0]).float()  # (B, C, H, W)
        return AttentionMap(spatial=a.mean(1), channel=a.mean((2, 3)),
                            spatial_label="MLCA gate, mean over channels", channel_label="MLCA gate, mean over positions")

    def functional_flops(self, inputs: tuple, output: torch.Tensor) -> int:
        """FLOPs outside the two Conv1d (which thop counts), with n = B·C·H·W and g = B·C·ks²:

        local average pool n + g (sums, divisions), global mean g + B·C, two sigmoids g + B·C, the unpooling
        about n (an average of the 1-2 cells each output covers), the mix 3·n (two products, one sum) and the
        product with x n. Total ``6·n + 3·g + 2·B·C``.
        """
        x = inputs[0]
        n, bc = numel(x.shape), numel(x.shape[:2])
        g = bc * self.local_size ** 2
        return 6 * n + 3 * g + 2 * bc
