"""CoTAttention: the Contextual Transformer block in the form YOLO forks insert.

Li et al., "Contextual Transformer Networks for Visual Recognition", TPAMI 2022, arXiv 2107.12292.
The official block (local attention) is :class:`models.attention.cot_layer.CotLayer`.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from models.attention.base import Attention, AttentionMap
from models.attention.flops import numel, softmax_flops
from utils.torch_utils import fuse_conv_and_bn


class CoTAttention(Attention):
    """Contextual Transformer attention as YOLO forks use it (Li et al., "Contextual Transformer Networks for
    Visual Recognition", TPAMI 2022, arXiv 2107.12292).

    With k = ``kernel_size`` and C = ``dim``::

        k1 = key_embed(x)                                  static context: grouped k×k conv + BN + SiLU
        v  = value_embed(x)                                1×1 conv + BN
        a  = attention_embed(cat[k1, x])                   (B, k·k·C, H, W)
        a  = mean over the k·k axis of a viewed as (B, C, k·k, H, W)
        k2 = softmax(a over all H·W positions) · v         elementwise
        out = k1 + k2

    Note: the softmax runs over *all* positions, so its weights are about 1/(H·W) and k2 ≈ v/(H·W); the
    block therefore behaves mostly like a grouped k×k convolution (its key branch). It is kept as it is
    because that is what users' configs and checkpoints contain; the official, local form is ``CotLayer``.

    Parameters at C = 512, k = 3: 2,300,928. C must be divisible by 4.

    yaml example::

        [-1, 1, CoTAttention, [1024, 3]]

    Args:
        dim: input (= output) channels C.
        kernel_size: k, the key convolution's kernel size.
    """

    def __init__(self, dim: int = 512, kernel_size: int = 3) -> None:
        super().__init__()
        if dim % 4:
            raise ValueError(f"CoTAttention needs channels divisible by 4, got {dim}")
        self.dim = dim
        self.kernel_size = kernel_size
        self.key_embed = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=4, bias=False),
            nn.BatchNorm2d(dim),
            nn.SiLU())
        self.value_embed = nn.Sequential(nn.Conv2d(dim, dim, 1, bias=False), nn.BatchNorm2d(dim))
        factor = 4
        self.attention_embed = nn.Sequential(
            nn.Conv2d(2 * dim, 2 * dim // factor, 1, bias=False),
            nn.BatchNorm2d(2 * dim // factor),
            nn.SiLU(),
            nn.Conv2d(2 * dim // factor, kernel_size * kernel_size * dim, 1))

    def _attention(self, x: torch.Tensor, k1: torch.Tensor) -> torch.Tensor:
        """Softmax weights over all positions, per channel: (B, C, H*W), each row summing to 1."""
        a = self.attention_embed(torch.cat([k1, x], dim=1))  # (B, k*k*C, H, W), or (B, C, H, W) once fused
        if not getattr(self, "fused", False):
            kk = self.kernel_size * self.kernel_size
            a = a.view(a.shape[0], self.dim, kk, a.shape[2], a.shape[3]).mean(2)  # (B, C, k*k, H, W) -> (B, C, H, W)
        return torch.softmax(a.flatten(2), dim=-1)  # (B, C, H*W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k1 = self.key_embed(x)  # (B, C, H, W)
        v = self.value_embed(x).flatten(2)  # (B, C, H*W)
        k2 = self._attention(x, k1) * v  # (B, C, H*W)
        return k1 + k2.view_as(k1)  # (B, C, H, W)

    @torch.no_grad()
    def attention_map(self, inputs: tuple, output: torch.Tensor) -> AttentionMap:
        """What this block weights, for ``utils.attention_maps``: its softmax over positions, averaged over
        channels and scaled by H·W (1 = uniform attention), shape (B, H, W); the channel map is the generic gain."""
        x = inputs[0]
        att = self._attention(x, self.key_embed(x)).float().mean(1)  # (B, C, H*W) -> (B, H*W)
        h, w = x.shape[-2:]
        return AttentionMap(spatial=att.view(-1, h, w) * (h * w),  # (B, H*W) -> (B, H, W)
                            spatial_label="softmax attention × H·W (1 = uniform)")

    @torch.no_grad()
    def fuse_layers(self) -> None:
        """Inference folding (``Model.fuse()``): exact, and most of this block's cost.

        * every conv + BatchNorm pair becomes one conv with bias;
        * the mean over the k·k axis of the last 1×1 conv's output is itself a 1×1 conv with the k·k weight
          groups averaged, so that conv shrinks from C/2 -> k·k·C to C/2 -> C channels (9× fewer for k = 3) and the
          mean disappears.
        """
        if getattr(self, "fused", False):
            return
        kk = self.kernel_size * self.kernel_size
        self.key_embed = nn.Sequential(fuse_conv_and_bn(self.key_embed[0], self.key_embed[1]), self.key_embed[2])
        self.value_embed = nn.Sequential(fuse_conv_and_bn(self.value_embed[0], self.value_embed[1]))
        conv1, bn, act, conv2 = self.attention_embed
        mean_conv = nn.Conv2d(conv2.in_channels, self.dim, 1).requires_grad_(False).to(conv2.weight.device)
        mean_conv.weight.copy_(conv2.weight.view(self.dim, kk, -1, 1, 1).mean(1))  # out channel c*kk + t -> c
        mean_conv.bias.copy_(conv2.bias.view(self.dim, kk).mean(1))
        self.attention_embed = nn.Sequential(fuse_conv_and_bn(conv1, bn), act, mean_conv.to(conv2.weight.dtype))
        self.fused = True

    def functional_flops(self, inputs: tuple, output: torch.Tensor) -> int:
        """FLOPs outside child modules: the k·k mean (until fused), the softmax, the product with v, k1 + k2."""
        n = numel(inputs[0].shape)  # B·C·H·W
        kk = 0 if getattr(self, "fused", False) else self.kernel_size * self.kernel_size
        return kk * n + softmax_flops(n) + n + n
