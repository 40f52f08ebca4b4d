"""MHSA: the multi-head self-attention layer of Bottleneck Transformers (BoTNet).

Srinivas, Lin, Parmar, Shlens, Abbeel, Vaswani, "Bottleneck Transformers for Visual Recognition", CVPR 2021,
arXiv 2101.11605.

Global all-to-all attention over the H·W positions of the map, with 1×1 query/key/value projections and
content-position logits q·(r_h + r_w) from learnt row and column embeddings.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.attention.base import Attention, AttentionMap, Size
from models.attention.ela import largest_divisor_at_most
from models.attention.flops import numel, softmax_flops

_MAP_CHUNK = 1 << 22  # logits per chunk in attention_map (16 MiB of fp32)


def axis_embedding(table: torch.Tensor, n: Size) -> torch.Tensor:
    """The (d, L) table of learnt embeddings resampled linearly to n positions, (d, n).

    Position i of n samples the table at s_i = (i + ½)·L/n − ½ clamped to [0, L − 1] (cell centres, the
    ``align_corners=False`` convention of ``F.interpolate``), as Σ_l table[:, l] · max(0, 1 − |l − s_i|).
    Built from ``arange``, ``abs``, ``clamp`` and a matmul, so n stays dynamic under tracing and ONNX export;
    at n = L it returns the table itself.
    """
    length = int(table.shape[1])
    ft = table.dtype
    i = torch.arange(n, dtype=ft, device=table.device)  # (n,)
    s = ((i + 0.5) * (length / n) - 0.5).clamp(0, length - 1)  # (n,) source coordinates in [0, L-1]
    grid = torch.arange(length, dtype=ft, device=table.device)  # (L,)
    hat = (1.0 - (grid[:, None] - s[None, :]).abs()).clamp(min=0)  # (L, n) linear-interpolation weights
    return table @ hat  # (d, L) @ (L, n) -> (d, n)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """softmax(q·kᵀ·scale)·v over the last two axes, (..., N, d) each, without an N×N matrix in eager mode.

    Eager and TorchScript: ``F.scaled_dot_product_attention``, whose fused kernels stream over keys, with the
    head dimension zero-padded to a multiple of 8 (the alignment the GPU kernels ask for; zeros change no dot
    product and the padded output columns are dropped). ONNX export: the explicit product and softmax,
    because opset 12 has no attention operator (the exported graph holds the (..., N, N) logits).
    """
    if torch.onnx.is_in_onnx_export():
        logits = torch.matmul(q, k.transpose(-1, -2)) * scale  # (..., N, N)
        return torch.matmul(logits.softmax(dim=-1), v)  # (..., N, d)
    d = int(q.shape[-1])
    pad = -d % 8
    if pad:
        q, k, v = (F.pad(t, (0, pad)) for t in (q, k, v))  # (..., N, d + pad)
    return F.scaled_dot_product_attention(q, k, v, scale=scale)[..., :d]  # (..., N, d)


class MHSA(Attention, aliases=("BoTAttention",)):
    """Multi-head self-attention of BoTNet (Aravind Srinivas, Tsung-Yi Lin, Niki Parmar, Jonathon Shlens,
    Pieter Abbeel, Ashish Vaswani; "Bottleneck Transformers for Visual Recognition"; CVPR 2021;
    arXiv 2101.11605).

    With x of shape (B, C, H, W), N = H·W positions, heads n_h, d = C / n_h, and the 1×1 projections W_q,
    W_k, W_v (C -> C, no bias) split into heads::

        x̂          = GN(x)                                     (B, C, H, W)   one group: per image (see below)
        q, k, v    = W_q x̂, W_k x̂, W_v x̂                       (B, n_h, N, d) each
        r_(y,x)    = R_h[:, y] + R_w[:, x]                      (d,) per position, shared by the heads
        A          = softmax_j(q_i · (k_j + r_j) / √d)          content-content + content-position logits
        out_i      = Σ_j A_ij · v_j                             heads concatenated -> (B, C, H, W)

    **Deviation: position embeddings.** The paper's relative logits q_i·r_(j−i) index a table by the
    query-key offset, for a fixed map size, and form an N×N bias that no fused attention kernel takes. Here
    the content-position term is q_i·(r_h + r_w)_j with learnt per-row and per-column embeddings R_h, R_w of
    shape (d, L), indexed by the key's row and column (L = ``pos_size``, 14: the 14×14 map BoTNet's MHSA sees
    at 224 px), and resampled to the actual H and W by linear interpolation at cell centres
    (:func:`axis_embedding`: dynamic in ONNX/trace, the identity at H = L). Since r_j depends on the key
    position only, it is added to the keys, and the attention stays one ``softmax(q·k'ᵀ)`` product. The
    embeddings start as N(0, 1/d).

    **Memory.** The attention runs through ``F.scaled_dot_product_attention`` (:func:`attend`) in fp32 or
    wider with autocast off, cast back at the end: no N×N matrix is stored in eager mode (nor in a TorchScript
    trace). On a 160×160 map (N = 25,600) with C = 16 an fp32 forward costs about 5 CPU-seconds per image
    (the N² = 6.6·10⁸ exponentials per head are inherent to global attention; under 2 s of wall time only with
    several cores) and holds a few MB besides the (B, C, N) projections. The ONNX graph (opset 12 has no
    attention operator) holds the (B, n_h, N, N) logits: 2.6 MB per image at a 640-px P5 map (20×20).

    **Deviation: the input group norm.** In BoTNet, MHSA sits inside a bottleneck after a 1×1 conv, BN and
    ReLU, so its inputs are normalised. On raw features the logits grow with the square of the input scale:
    at activations ~100 the softmax is an argmax that fp16 rounding flips. The default (``prenorm=True``)
    therefore normalises x per image (GroupNorm with one group, affine, in fp32); ``prenorm=False`` is the
    bare layer of the paper. There is no residual or output projection, as in the paper's layer.

    Heads are clamped to the largest divisor of C not above ``heads`` (4 at C = 16 and 32).

    Parameters: ``3·C² + 2·d·L + 2·C``, i.e. 198,912 at C = 256 (4 heads, d = 64, L = 14).

    yaml example::

        [-1, 1, MHSA, [1024]]           # 4 heads, 14-sample position tables
        [-1, 1, BoTAttention, [1024, 8, 20]]

    Args:
        c1: input (= output) channels C.
        heads: number of heads n_h (paper: 4).
        pos_size: L, the number of learnt row (and column) embeddings.
        prenorm: normalise the input with a one-group GroupNorm (default; see above).
    """

    def __init__(self, c1: int, heads: int = 4, pos_size: int = 14, prenorm: bool = True) -> None:
        super().__init__()
        if int(heads) < 1 or int(pos_size) < 1:
            raise ValueError(f"MHSA heads and pos_size must be positive integers, got {heads}, {pos_size}")
        self.c1 = c1
        self.heads = largest_divisor_at_most(c1, heads)
        self.dim_head = c1 // self.heads
        self.pos_size = int(pos_size)
        self.prenorm = bool(prenorm)
        self.norm = nn.GroupNorm(1, c1) if self.prenorm else None  # parameters only: applied in fp32
        self.query = nn.Conv2d(c1, c1, 1, bias=False)
        self.key = nn.Conv2d(c1, c1, 1, bias=False)
        self.value = nn.Conv2d(c1, c1, 1, bias=False)
        std = self.dim_head ** -0.5
        self.pos_h = nn.Parameter(torch.randn(self.dim_head, self.pos_size) * std)  # R_h, one column per row
        self.pos_w = nn.Parameter(torch.randn(self.dim_head, self.pos_size) * std)  # R_w, one column per column

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """x̂ = GN(x) in fp32, cast back (x itself without ``prenorm``)."""
        if self.norm is None:
            return x
        ft = torch.promote_types(x.dtype, torch.float32)
        return F.group_norm(x.to(ft), 1, self.norm.weight.to(ft), self.norm.bias.to(ft), self.norm.eps).to(x.dtype)

    def qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k' = k + r and v, each (B, n_h, N, d), in fp32 (or float64)."""
        b = x.shape[0]
        h, w = x.shape[-2:]
        ft = torch.promote_types(x.dtype, torch.float32)
        xn = self.normalize(x)
        q, k, v = self.query(xn), self.key(xn), self.value(xn)  # (B, C, H, W) each, autocast may lower them
        with torch.autocast(device_type=x.device.type, enabled=False):  # the rest in >= fp32
            eh = axis_embedding(self.pos_h.to(ft), h)  # (d, H)
            ew = axis_embedding(self.pos_w.to(ft), w)  # (d, W)
            r = (eh[:, :, None] + ew[:, None, :]).reshape(self.dim_head, -1).transpose(0, 1)  # (d, H, W) -> (N, d)
            q, k, v = (t.to(ft).reshape(b, self.heads, self.dim_head, -1).transpose(-1, -2)  # (B, n_h, N, d)
                       for t in (q, k, v))
            return q, k + r, v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        h, w = x.shape[-2:]
        q, k, v = self.qkv(x)
        with torch.autocast(device_type=x.device.type, enabled=False):
            out = attend(q, k, v, self.dim_head ** -0.5)  # (B, n_h, N, d)
            return out.transpose(-1, -2).reshape(b, self.c1, h, w).to(x.dtype)  # (B, n_h, d, N) -> (B, C, H, W)

    def extra_repr(self) -> str:
        return f"c1={self.c1}, heads={self.heads}, dim_head={self.dim_head}, pos_size={self.pos_size}, prenorm={self.prenorm}"

    @torch.no_grad()
    def attention_map(self, inputs: tuple, output: torch.Tensor) -> AttentionMap:
        """The attention each position receives, Σ_i A_ij averaged over heads, (B, H, W): 1 = uniform.

        Computed over chunks of queries (at most ``_MAP_CHUNK`` logits at a time), eager only.
        """
        x = inputs[0]
        h, w = (int(s) for s in x.shape[-2:])
        q, k, _ = self.qkv(x)  # (B, n_h, N, d)
        n = h * w
        chunk = max(_MAP_CHUNK // (q.shape[0] * self.heads * n), 1)
        received = q.new_zeros(q.shape[0], n)  # (B, N)
        with torch.autocast(device_type=x.device.type, enabled=False):
            for start in range(0, n, chunk):
                logits = torch.matmul(q[:, :, start:start + chunk], k.transpose(-1, -2)) * self.dim_head ** -0.5
                received += logits.softmax(dim=-1).sum((1, 2))  # (B, n_h, chunk, N) -> (B, N)
        return AttentionMap(spatial=(received / self.heads).float().view(-1, h, w),  # (B, N) -> (B, H, W)
                            spatial_label="MHSA attention received per position, mean over heads (1 = uniform)")

    def functional_flops(self, inputs: tuple, output: torch.Tensor) -> int:
        """FLOPs outside the 1×1 projections (which thop counts), with n = B·C·H·W and N = H·W.

        The group norm 7·n (``prenorm``); the position embeddings 2·d·L·(H+W) (resampling) + d·N (row + column)
        + n (added to every head's keys); the logits 2·B·N²·C, their scaling B·n_h·N², the softmax
        3·B·n_h·N², the weighted sum of the values 2·B·N²·C.
        """
        x = inputs[0]
        b, c, h, w = (int(v) for v in x.shape)
        n, npos = numel(x.shape), h * w
        flops = 7 * n if self.prenorm else 0
        flops += 2 * self.dim_head * self.pos_size * (h + w) + self.dim_head * npos + n
        flops += 4 * b * npos * npos * c + b * self.heads * npos * npos + softmax_flops(b * self.heads * npos * npos)
        return flops
