"""PolarizedSelfAttention: polarized self-attention (PSA), parallel layout.

Liu, Xu, Chen, Zhang, Wang, "Polarized Self-Attention: Towards High-quality Pixel-wise Regression", 2021,
arXiv 2107.00782.

A channel-only branch keeps full channel resolution while collapsing space (softmax over positions), a
spatial-only branch keeps full spatial resolution while collapsing channels (softmax over channels); each
ends in a sigmoid gate on x and the two gated tensors are added.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from models.attention.base import Attention
from models.attention.flops import softmax_flops


class PolarizedSelfAttention(Attention, aliases=("PSA",)):
    """Polarized self-attention, parallel layout PSA_p (Liu et al., "Polarized Self-Attention: Towards
    High-quality Pixel-wise Regression", 2021, arXiv 2107.00782).

    With x of shape (B, C, H, W), C' = C/2 and all W· 1×1 convs without bias::

        channel-only:  q  = softmax_hw(W_q^ch x)                     (B, 1, H·W), W_q^ch: C -> 1
                       z  = Σ_hw (W_v^ch x) · q                      (B, C', 1, 1), W_v^ch: C -> C'
                       A^ch = sigmoid(LN(W_z z))                     (B, C, 1, 1), W_z: C' -> C, LayerNorm over C
        spatial-only:  q  = softmax_c(mean_hw(W_q^sp x))             (B, 1, C'), W_q^sp: C -> C'
                       A^sp = sigmoid(q · W_v^sp x)                  (B, 1, H, W), W_v^sp: C -> C'
        out = A^ch · x + A^sp · x

    Both softmaxes run in fp32 (the one over H·W positions in particular) and are cast back. The convs have
    no bias, as in the official code (a bias on W_q^ch would be cancelled by its softmax, one on W_z by the
    LayerNorm). Parameters: 2·C² + 3·C for even C, i.e. 525,824 at C = 512.

    yaml example::

        [-1, 1, PolarizedSelfAttention, [1024]]
        [-1, 1, PSA, [1024]]                       # the same module under its alias

    Args:
        c1: input (= output) channels C.
    """

    def __init__(self, c1: int) -> None:
        super().__init__()
        self.c1 = c1
        self.c_ = max(c1 // 2, 1)  # C'
        self.ch_wv = nn.Conv2d(c1, self.c_, 1, bias=False)
        self.ch_wq = nn.Conv2d(c1, 1, 1, bias=False)
        self.ch_wz = nn.Conv2d(self.c_, c1, 1, bias=False)
        self.ln = nn.LayerNorm(c1)
        self.sp_wv = nn.Conv2d(c1, self.c_, 1, bias=False)
        self.sp_wq = nn.Conv2d(c1, self.c_, 1, bias=False)

    def channel_weight(self, x: torch.Tensor) -> torch.Tensor:
        """A^ch, the channel-only gate: (B, C, H, W) -> (B, C, 1, 1)."""
        v = self.ch_wv(x).flatten(2)  # (B, C', H*W)
        q = self.ch_wq(x).flatten(2)  # (B, 1, H*W)
        q = q.to(torch.promote_types(q.dtype, torch.float32)).softmax(dim=-1).to(v.dtype)  # over H*W, in fp32
        z = torch.matmul(v, q.transpose(1, 2)).unsqueeze(-1)  # (B, C', H*W) @ (B, H*W, 1) -> (B, C', 1, 1)
        z = self.ch_wz(z).flatten(1)  # (B, C)
        return torch.sigmoid(self.ln(z))[..., None, None]  # (B, C) -> (B, C, 1, 1)

    def spatial_weight(self, x: torch.Tensor) -> torch.Tensor:
        """A^sp, the spatial-only gate: (B, C, H, W) -> (B, 1, H, W)."""
        h, w = x.shape[-2:]
        v = self.sp_wv(x).flatten(2)  # (B, C', H*W)
        q = self.sp_wq(x).mean((2, 3))  # (B, C')
        q = q.to(torch.promote_types(q.dtype, torch.float32)).softmax(dim=-1).to(v.dtype)  # over C', in fp32
        z = torch.matmul(q.unsqueeze(1), v)  # (B, 1, C') @ (B, C', H*W) -> (B, 1, H*W)
        return torch.sigmoid(z).reshape(-1, 1, h, w)  # (B, 1, H, W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ch = self.channel_weight(x).to(x.dtype)
        sp = self.spatial_weight(x).to(x.dtype)
        return x * ch + x * sp

    def extra_repr(self) -> str:
        return f"c1={self.c1}, c_={self.c_}"

    def functional_flops(self, inputs: tuple, output: torch.Tensor) -> int:
        """FLOPs outside the convs and the LayerNorm (which thop counts); multiply-add = 2.

        With P = B·H·W positions, n = B·C·H·W and m = B·C'·H·W:

        * channel-only: softmax over H·W 3·P, the weighted sum 2·m, the sigmoid B·C, the product n;
        * spatial-only: the mean of q m + B·C', the softmax over C' 3·B·C', the product q·v 2·m, the
          sigmoid P, the product n;
        * the final addition n.
        """
        b, c, h, w = (int(s) for s in inputs[0].shape)
        p, n = b * h * w, b * c * h * w
        m, bc_ = b * self.c_ * h * w, b * self.c_
        channel = softmax_flops(p) + 2 * m + b * c + n
        spatial = m + bc_ + softmax_flops(bc_) + 2 * m + p + n
        return channel + spatial + n
