"""S2Attention: the spatial-shift unit of S2-MLPv2 with its split attention.

Yu et al., "S2-MLPv2: Improved Spatial-Shift MLP Architecture for Vision", 2021, arXiv 2108.01072.

The channels are expanded threefold by a channel MLP; one third is shifted by one pixel in four directions
(one direction per quarter of its channels), one third in the same four directions in another order, one
third is kept; split attention (a softmax over the three parts, per channel, from their pooled sum) fuses
them, and a second channel MLP projects back.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.attention.base import Attention, AttentionMap
from models.attention.flops import numel, softmax_flops

_POOLS = ("sum", "mean")


def shift(t: torch.Tensor, dim: int, step: int) -> torch.Tensor:
    """Move the content of an (N, C, H, W) tensor one pixel along ``dim`` (2: H, 3: W), ``step`` = +1 (towards
    higher indices) or −1; the vacated border row/column keeps its own value (``out[0] = t[0]`` for +1), as the
    paper's in-place assignment ``X[1:, ...] ← X[:-1, ...]`` leaves it. Edge padding, then a crop."""
    pad = {(2, 1): (0, 0, 1, 0), (2, -1): (0, 0, 0, 1), (3, 1): (1, 0, 0, 0), (3, -1): (0, 1, 0, 0)}[(dim, step)]
    p = F.pad(t, pad, mode="replicate")  # (N, C, H + 1, W) or (N, C, H, W + 1)
    if dim == 2:
        return p[:, :, :-1] if step == 1 else p[:, :, 1:]
    return p[..., :-1] if step == 1 else p[..., 1:]


def spatial_shift(t: torch.Tensor, order: tuple[int, int]) -> torch.Tensor:
    """Shift the four channel quarters of t by (+1, −1) along ``order[0]``, then (+1, −1) along ``order[1]``."""
    c = int(t.shape[1])
    bounds = (0, c // 4, c // 2, 3 * c // 4, c)
    moves = ((order[0], 1), (order[0], -1), (order[1], 1), (order[1], -1))
    parts = [shift(t[:, bounds[i]:bounds[i + 1]], *moves[i]) for i in range(4)]
    return torch.cat(parts, 1)  # (N, C, H, W)


class S2Attention(Attention, aliases=("S2MLPv2Attention",)):
    """The spatial-shift unit and split attention of S2-MLPv2 (Tan Yu et al.;
    "S2-MLPv2: Improved Spatial-Shift MLP Architecture for Vision"; 2021; arXiv 2108.01072).

    With x of shape (B, C, H, W) and n = H·W positions; the MLPs act on channels (1×1 convs, with bias)::

        [X1, X2, X3] = split(MLP1(x))            MLP1: C -> 3C, three parts of C channels
        X1 <- S1(X1)                             quarters shifted along W by +1, −1, then along H by +1, −1
        X2 <- S2(X2)                             quarters shifted along H by +1, −1, then along W by +1, −1
        a  = Σ_k Σ_positions X_k                 (B, C)                       split attention
        â  = W2 · GELU(W1 · a)                   W1: C × C, W2: 3C × C, no bias; viewed as (B, 3, C)
        ā  = softmax_k(â)                        over the three parts, per channel
        out = MLP2(Σ_k ā_k · X_k)                MLP2: C -> C

    A shifted quarter keeps its border row/column (the paper's in-place shift leaves it unchanged), so a 1×1
    map passes through unshifted. The paper pools with a plain sum over positions (``1·X_k`` with 1 a row of
    ones), the default; ``pool="mean"`` divides by H·W (the global average pooling of ResNeSt's split
    attention, independent of the map size). The sum and the split-attention MLP run in fp32 with autocast
    off (the sum over H·W positions exceeds fp16's range) and the weights ā are cast back. The unit has no
    residual connection and no LayerNorm (the S2-MLPv2 block wraps them around it). The hidden width of the
    split-attention MLP is C.

    Parameters: ``8·C² + 4·C``, i.e. 525,312 at C = 256.

    yaml example::

        [-1, 1, S2Attention, [1024]]                 # sum pooling (paper)
        [-1, 1, S2MLPv2Attention, [1024, mean]]      # average pooling

    Args:
        c1: input (= output) channels C.
        pool: ``"sum"`` over positions (the paper) or ``"mean"``.
    """

    def __init__(self, c1: int, pool: str = "sum") -> None:
        super().__init__()
        if pool not in _POOLS:
            raise ValueError(f"S2Attention pool must be one of {_POOLS}, got {pool!r}")
        self.c1 = c1
        self.pool = pool
        self.mlp1 = nn.Conv2d(c1, 3 * c1, 1)
        self.sa_fc1 = nn.Linear(c1, c1, bias=False)  # W1 (applied in fp32 through F.linear)
        self.sa_fc2 = nn.Linear(c1, 3 * c1, bias=False)  # W2
        self.mlp2 = nn.Conv2d(c1, c1, 1)

    def parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """X1, X2, X3 after MLP1 and the two spatial shifts, each (B, C, H, W)."""
        x1, x2, x3 = self.mlp1(x).chunk(3, dim=1)  # (B, 3C, H, W) -> 3 × (B, C, H, W)
        return spatial_shift(x1, (3, 2)), spatial_shift(x2, (2, 3)), x3

    def split_weights(self, xs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """ā: the softmax over the three parts of every channel, (B, 3, C), in at least fp32."""
        ft = torch.promote_types(xs[0].dtype, torch.float32)
        with torch.autocast(device_type=xs[0].device.type, enabled=False):
            a = (xs[0].to(ft) + xs[1].to(ft) + xs[2].to(ft)).flatten(2)  # (B, C, H*W)
            a = a.sum(-1) if self.pool == "sum" else a.mean(-1)  # (B, C)
            hidden = F.gelu(F.linear(a, self.sa_fc1.weight.to(ft)))  # (B, C)
            logits = F.linear(hidden, self.sa_fc2.weight.to(ft))  # (B, 3C)
            return logits.reshape(-1, 3, self.c1).softmax(1)  # (B, 3, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xs = self.parts(x)
        w = self.split_weights(xs).to(xs[0].dtype)[..., None, None]  # (B, 3, C, 1, 1)
        fused = w[:, 0] * xs[0] + w[:, 1] * xs[1] + w[:, 2] * xs[2]  # (B, C, H, W)
        return self.mlp2(fused)

    def extra_repr(self) -> str:
        return f"c1={self.c1}, pool={self.pool}"

    @torch.no_grad()
    def attention_map(self, inputs: tuple, output: torch.Tensor) -> AttentionMap:
        """The split-attention weight of the unshifted part X3 per channel, (B, C) (1/3 = no preference among
        the three parts); the spatial map is the generic gain."""
        w = self.split_weights(self.parts(inputs[0]))
        return AttentionMap(channel=w[:, 2].float(), channel_label="S2 split attention: weight of the unshifted part")

    def functional_flops(self, inputs: tuple, output: torch.Tensor) -> int:
        """FLOPs outside the two 1×1 convs (which thop counts), with n = B·C·H·W; the shifts move data only.

        The sum of the three parts 2·n and over positions n (+ B·C divisions for ``mean``); the split-attention
        MLP 2·B·C² + 6·B·C², its GELU B·C; the softmax over three 3·3·B·C; the weighted sum of the parts 5·n.
        """
        x = inputs[0]
        n, bc = numel(x.shape), numel(x.shape[:2])
        pool = 3 * n + (bc if self.pool == "mean" else 0)
        mlp = 8 * bc * self.c1 + bc
        return pool + mlp + softmax_flops(3 * bc) + 5 * n
