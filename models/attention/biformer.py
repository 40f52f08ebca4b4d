"""BiLevelRoutingAttention: the bi-level routing attention (BRA) of BiFormer.

Zhu, Wang, Ke, Zhang, Lau, "BiFormer: Vision Transformer with Bi-Level Routing Attention", CVPR 2023,
arXiv 2303.08125.

The map is split into S × S regions; region-level queries and keys (region means) route each region to its
top-k most related regions; every token then attends to the tokens of those k regions only. A depthwise conv
on V (local context enhancement) is added, and an output projection follows.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.attention.acmix import largest_divisor
from models.attention.base import Attention, AttentionMap
from models.attention.flops import numel, softmax_flops


def to_regions(t: torch.Tensor, s: int) -> torch.Tensor:
    """(B, C, S·r_h, S·r_w) -> (B, S², r_h·r_w, C): the S×S regions in row-major order, tokens row-major inside."""
    b, c, hp, wp = t.shape
    rh, rw = hp // s, wp // s
    t = t.reshape(b, c, s, rh, s, rw).permute(0, 2, 4, 3, 5, 1)  # (B, S, S, r_h, r_w, C)
    return t.reshape(b, s * s, rh * rw, c)


def from_regions(t: torch.Tensor, s: int, rh, rw) -> torch.Tensor:
    """The inverse of :func:`to_regions`: (B, S², r_h·r_w, C) -> (B, C, S·r_h, S·r_w)."""
    b, _, _, c = t.shape
    t = t.reshape(b, s, s, rh, rw, c).permute(0, 5, 1, 3, 2, 4)  # (B, C, S, r_h, S, r_w)
    return t.reshape(b, c, s * rh, s * rw)


def gather_regions(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Gather whole regions: t (B, S², r², C), idx (B, S², k) -> (B, S², k·r², C).

    One flat ``index_select`` (ONNX Gather) over the B·S² regions, with per-image offsets.
    """
    b, n, r2, c = t.shape
    k = idx.shape[-1]
    offset = (torch.arange(b, device=idx.device) * n).view(-1, 1, 1)  # (B, 1, 1)
    flat = torch.index_select(t.reshape(b * n, r2 * c), 0, (idx + offset).reshape(-1))  # (B·S²·k, r²·C)
    return flat.reshape(b, n, k * r2, c)


class BiLevelRoutingAttention(Attention, aliases=("BRA",)):
    """Bi-level routing attention (Lei Zhu, Xinjiang Wang, Zhanghan Ke, Wayne Zhang, Rynson Lau, "BiFormer: Vision
    Transformer with Bi-Level Routing Attention", CVPR 2023, arXiv 2303.08125).

    With x (B, C, H, W) split into S × S regions (S = ``n_win``) of r² tokens and N heads::

        Q, K, V = W_qkv · LN(x) + b                     1×1 conv C -> 3C (LN: see ``block``)
        Q^r, K^r = mean over each region's tokens      (B, S², C)
        A^r     = Q^r (K^r)ᵀ                            region-to-region affinity, (B, S², S²)
        I^r     = topk_index(A^r, k)                   (B, S², k): the routed regions of each region
        K^g, V^g = gather(K, I^r), gather(V, I^r)      (B, S², k·r², C)
        O       = Attention(Q, K^g, V^g) + LCE(V)      softmax(QKᵀ/√C)·V per head; LCE: depthwise 5×5 conv on V
        BRA(x)  = W_o · O + b_o                         1×1 conv C -> C
        out     = x + BRA(LN(x))    (block=True)       the BiFormer block's attention sub-layer
        out     = BRA(x)            (block=False)      the bare operator

    LN is a LayerNorm over the channels of each token. ``block=True`` (default) is the pre-norm residual
    sub-layer of the paper's BiFormer block, so the layer starts near the identity and its logits do not grow
    with the activations (the bare operator's softmax is an arg-max on activations of ~100, and fp16 rounding of
    the input then moves near ties). The routing is shared by the heads and carries no gradient (indices only).
    Defaults: S = 7 (the paper's), k = 4 (the paper varies k by stage; clamped to S²), head width 32 as in the
    paper (N = max(C // 32, 1) unless ``num_heads`` is given; reduced to a divisor of C), LCE kernel 5. The logit
    scale is 1/√C with C the full channel count, as the paper's attention formula writes it, also with several
    heads (``qk_scale`` overrides it).

    Any map size: the projected map is zero padded at the bottom and right to a multiple of S and cropped back;
    padded tokens are left out of the region means, padded keys are masked out of the softmax and regions with no
    map token are never routed to while another one is left (padding the input before the projections instead
    would let bias-valued padding tokens join the means and the attention). On a map smaller than S every region
    is one token and the empty ones are masked, i.e. S is clamped to the map. The routing and the token attention
    run in fp32; the token attention uses ``scaled_dot_product_attention`` (memory O(B·N·H·W·d), not the k·r²
    logits per query) except during ONNX export, where it is written out (opset 12 has no fused attention; TopK
    and Gather export as such).

    Parameters: C·3C + 3C + 25·C + C + C² + C (+ 2C with ``block``), i.e. 270,336 at C = 256.

    yaml example::

        [-1, 1, BiLevelRoutingAttention, [1024]]             # S = 7, k = 4, head width 32, residual block
        [-1, 1, BRA, [1024, 7, 4, 8, {block: False}]]        # 8 heads, the bare operator

    Args:
        c1: input (= output) channels C.
        n_win: S, the regions per side (paper: 7).
        topk: k, the regions each region attends to (paper: 4), clamped to S².
        num_heads: N (None: C // 32, the paper's head width 32), reduced to a divisor of C.
        side_dwconv: kernel of the LCE depthwise conv, odd (paper: 5).
        qk_scale: the logit scale (None: 1/√C).
        block: the pre-norm residual sub-layer ``x + BRA(LN(x))`` (True) or the bare ``BRA(x)``.
    """

    def __init__(self, c1: int, n_win: int = 7, topk: int = 4, num_heads: int | None = None, side_dwconv: int = 5,
                 qk_scale: float | None = None, block: bool = True) -> None:
        super().__init__()
        if int(n_win) < 1 or int(topk) < 1:
            raise ValueError(f"BiLevelRoutingAttention n_win and topk must be positive, got {n_win}, {topk}")
        if int(side_dwconv) < 1 or int(side_dwconv) % 2 == 0:
            raise ValueError(f"BiLevelRoutingAttention side_dwconv must be a positive odd integer, got {side_dwconv}")
        self.c1 = c1
        self.n_win = int(n_win)
        self.topk = min(int(topk), self.n_win ** 2)
        self.num_heads = largest_divisor(c1, max(c1 // 32, 1) if num_heads is None else num_heads)
        self.scale = float(qk_scale) if qk_scale is not None else c1 ** -0.5
        self.block = bool(block)
        self.norm = nn.LayerNorm(c1) if self.block else None  # over the channels of each token
        self.qkv = nn.Conv2d(c1, 3 * c1, 1)
        self.lepe = nn.Conv2d(c1, c1, side_dwconv, padding=side_dwconv // 2, groups=c1)  # LCE
        self.wo = nn.Conv2d(c1, c1, 1)

    def layer_norm(self, x: torch.Tensor) -> torch.Tensor:
        """LayerNorm over the channels of each position, in fp32, cast back."""
        wide = torch.promote_types(x.dtype, torch.float32)
        t = x.permute(0, 2, 3, 1).to(wide)  # (B, H, W, C)
        t = F.layer_norm(t, (self.c1,), self.norm.weight.to(wide), self.norm.bias.to(wide), self.norm.eps)
        return t.permute(0, 3, 1, 2).to(x.dtype)  # (B, C, H, W)

    def route(self, q: torch.Tensor, k: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        """Top-k region indices (B, S², k) from q, k (B, S², r², C) and the map tokens per region (1, S²)."""
        denom = count.clamp(min=1).unsqueeze(-1)  # (1, S², 1)
        qr, kr = q.sum(2) / denom, k.sum(2) / denom  # (B, S², C): means over the map tokens (padding is 0)
        logits = torch.matmul(qr * self.scale, kr.transpose(1, 2))  # (B, S², S²)
        logits = logits.masked_fill(count.unsqueeze(1) < 0.5, float("-inf"))  # never route to an empty region
        return torch.topk(logits, self.topk, dim=-1).indices  # (B, S², k)

    def token_attention(self, q: torch.Tensor, kg: torch.Tensor, vg: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Multi-head attention of q (B, S², r², C) over kg, vg (B, S², k·r², C), keys masked by keep
        (B, S², 1, k·r²); returns (B, S², r², C)."""
        b, n, r2, c = q.shape
        h, d = self.num_heads, c // self.num_heads

        def heads(t: torch.Tensor) -> torch.Tensor:  # (B, S², L, C) -> (B, N·S², L, d)
            return t.reshape(b, n, -1, h, d).permute(0, 3, 1, 2, 4).reshape(b, h * n, -1, d)

        keep = keep.unsqueeze(1).expand(-1, h, -1, -1, -1).reshape(b, h * n, 1, -1)  # (B, N·S², 1, k·r²)
        qh, kh, vh = heads(q), heads(kg), heads(vg)
        if torch.onnx.is_in_onnx_export():  # written out: opset 12 has no fused attention
            logits = torch.matmul(qh * self.scale, kh.transpose(-1, -2)).masked_fill(~keep, float("-inf"))
            o = torch.matmul(logits.softmax(dim=-1), vh)  # (B, N·S², r², d)
        else:
            o = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=keep, scale=self.scale)
        return o.reshape(b, h, n, r2, d).permute(0, 2, 3, 1, 4).reshape(b, n, r2, c)  # (B, S², r², C)

    def bra(self, x: torch.Tensor) -> torch.Tensor:
        """The operator BRA(x), (B, C, H, W)."""
        s, c = self.n_win, self.c1
        h, w = x.shape[-2:]
        rh, rw = (h + s - 1) // s, (w + s - 1) // s  # region size: ceil(H / S), ceil(W / S)
        qkv = self.qkv(x)  # (B, 3C, H, W)
        v_map = qkv[:, 2 * c:]  # (B, C, H, W), for the LCE
        pads = (0, rw * s - w, 0, rh * s - h)
        wide = torch.promote_types(x.dtype, torch.float32)
        with torch.autocast(x.device.type, enabled=False):
            tokens = to_regions(F.pad(qkv.to(wide), pads), s)  # (B, S², r², 3C), padded tokens all 0
            valid = to_regions(F.pad(torch.ones_like(qkv[:1, :1], dtype=wide), pads), s)[..., 0]  # (1, S², r²)
            q, k, v = tokens[..., :c], tokens[..., c:2 * c], tokens[..., 2 * c:]
            idx = self.route(q, k, valid.sum(-1))  # (B, S², k)
            kg, vg = gather_regions(k, idx), gather_regions(v, idx)  # (B, S², k·r², C)
            keep = gather_regions(valid.expand(idx.shape[0], -1, -1).unsqueeze(-1), idx)  # (B, S², k·r², 1)
            o = self.token_attention(q, kg, vg, keep.transpose(-1, -2) > 0.5)  # (B, S², r², C)
            o = from_regions(o, s, rh, rw)[..., :h, :w]  # (B, C, S·r_h, S·r_w) -> (B, C, H, W)
        return self.wo(o.to(x.dtype) + self.lepe(v_map))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm is None:
            return self.bra(x)
        return x + self.bra(self.layer_norm(x))

    def extra_repr(self) -> str:
        return (f"c1={self.c1}, n_win={self.n_win}, topk={self.topk}, num_heads={self.num_heads}, "
                f"side_dwconv={self.lepe.kernel_size[0]}, scale={self.scale:.4g}, block={self.block}")

    @torch.no_grad()
    def attention_map(self, inputs: tuple, output: torch.Tensor) -> AttentionMap:
        """How often each region is routed to by the map's regions, relative to the mean (1), (B, H, W)."""
        x = inputs[0]
        s, c = self.n_win, self.c1
        h, w = (int(t) for t in x.shape[-2:])
        rh, rw = -(-h // s), -(-w // s)
        xin = self.layer_norm(x) if self.norm is not None else x
        pads = (0, rw * s - w, 0, rh * s - h)
        tokens = to_regions(F.pad(self.qkv(xin).float(), pads), s)  # (B, S², r², 3C)
        count = to_regions(F.pad(torch.ones_like(x[:1, :1], dtype=torch.float), pads), s)[..., 0].sum(-1)  # (1, S²)
        idx = self.route(tokens[..., :c], tokens[..., c:2 * c], count)  # (B, S², k)
        live = (count > 0.5).float().expand(idx.shape[0], -1)  # (B, S²): regions holding map tokens
        hits = torch.zeros_like(live).scatter_add_(1, idx.flatten(1), live.repeat_interleave(self.topk, dim=1))
        hits = hits / (hits.sum(1, keepdim=True) / live.sum(1, keepdim=True))  # mean over live regions = 1
        grid = hits.view(-1, s, s).repeat_interleave(rh, 1).repeat_interleave(rw, 2)  # (B, S·r_h, S·r_w)
        return AttentionMap(spatial=grid[:, :h, :w], spatial_label="BRA routing hits per region (1 = mean)")

    def functional_flops(self, inputs: tuple, output: torch.Tensor) -> int:
        """FLOPs outside the convs (which thop counts), on the padded map of P = S²·r² tokens, n = B·C·H·W:

        LayerNorm 7·n + 3·B·H·W and the residual n (``block``); region means 2·B·C·P + 2·B·S²·C; routing
        2·B·S⁴·C + B·S⁴ (scale, top-k comparisons); token attention 4·B·P·k·r²·C (QKᵀ and AV), 1 + 3 per logit
        (scale, softmax) over B·N·P·k·r² logits; the LCE sum n.
        """
        x = inputs[0]
        b, c, h, w = (int(t) for t in x.shape)
        s, k = self.n_win, self.topk
        r2 = -(-h // s) * -(-w // s)
        p = s * s * r2
        n = numel(x.shape)
        logits = b * self.num_heads * p * k * r2
        flops = 2 * b * c * p + 2 * b * s * s * c + 2 * b * s ** 4 * c + b * s ** 4
        flops += 4 * b * p * k * r2 * c + logits + softmax_flops(logits) + n
        if self.block:
            flops += 7 * n + 3 * b * h * w + n
        return flops
