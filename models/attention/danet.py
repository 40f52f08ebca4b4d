"""DAAttention: the dual attention of DANet (position attention module + channel attention module).

Fu, Liu, Tian, Li, Bao, Fang, Lu, "Dual Attention Network for Scene Segmentation", CVPR 2019, arXiv 1809.02983.

The position attention module (PAM) adds to every position a softmax-weighted sum of the value vectors of all
positions; the channel attention module (CAM) adds to every channel a softmax-weighted sum of all channels;
each is scaled by a learned scalar that starts at 0, and the two outputs are summed.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.attention.base import Attention, AttentionMap
from models.attention.flops import numel, softmax_flops

_MAP_BUDGET = 1 << 24  # attention weights per chunk when attention_map materialises the PAM softmax


def _exporting() -> bool:
    """True while torch.jit.trace or torch.onnx.export records the graph (no SDPA kernel at opset 12)."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


class PositionAttention(nn.Module):
    """DANet's position attention module (PAM): ``E_j = α · Σ_i softmax_i(B_i · C_j) · D_i + A_j``.

    B = ``key_conv``, C = ``query_conv`` (C -> C/r each), D = ``value_conv`` (C -> C), all 1×1 with bias; α =
    ``gamma``, starting at 0. In eager mode the product runs through ``F.scaled_dot_product_attention`` (scale
    1: the paper does not scale the energies), whose fused kernels never hold the (H·W)² matrix (655 M weights,
    2.6 GB in fp32, per 160×160 image otherwise). Those kernels need equal query and value widths and
    contiguous inputs (else SDPA silently falls back to its math path, which holds the matrix), so q and k
    are zero-padded from C' to C channels (q·k unchanged; the eager product then costs 2·N²·C instead of
    2·N²·C' FLOPs; the count reports the paper's). Traced or exported graphs use the explicit
    matmul-softmax-matmul (there is no SDPA op at opset 12), which does hold the matrix: fine for the maps
    of an exported detector (N = 400 at 20×20). Both run in at least fp32 with autocast off.
    """

    def __init__(self, c1: int, reduction: int) -> None:
        super().__init__()
        self.c_ = max(c1 // reduction, 1)
        self.query_conv = nn.Conv2d(c1, self.c_, 1)
        self.key_conv = nn.Conv2d(c1, self.c_, 1)
        self.value_conv = nn.Conv2d(c1, c1, 1)
        self.gamma = nn.Parameter(torch.zeros(1))  # α

    def qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries C_j, keys B_i, values D_i as (B, N, ·) tensors in at least fp32, N = H·W."""
        ft = torch.promote_types(x.dtype, torch.float32)
        return tuple(conv(x).flatten(2).transpose(1, 2).to(ft)  # (B, C', H, W) -> (B, N, C')
                     for conv in (self.query_conv, self.key_conv, self.value_conv))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        q, k, v = self.qkv(x)
        with torch.autocast(device_type=x.device.type, enabled=False):
            if _exporting():
                ctx = torch.matmul(torch.matmul(q, k.transpose(1, 2)).softmax(-1), v)  # (B, N, N) @ (B, N, C)
            else:  # the fused kernels want equal widths (q, k zero-padded to C: q·k unchanged) and contiguous rows
                pad = (0, int(v.shape[-1]) - int(q.shape[-1]))
                q, k, v = F.pad(q, pad).contiguous(), F.pad(k, pad).contiguous(), v.contiguous()
                ctx = F.scaled_dot_product_attention(q, k, v, scale=1.0)  # (B, N, C)
            ctx = ctx.transpose(1, 2).reshape(-1, v.shape[-1], h, w)  # (B, N, C) -> (B, C, H, W)
            out = self.gamma.to(ctx.dtype) * ctx
        return x + out.to(x.dtype)

    @torch.no_grad()
    def received(self, x: torch.Tensor) -> torch.Tensor:
        """Σ_j softmax_i(B_i · C_j): the attention each position i receives, (B, N) (mean 1), in chunks of j."""
        q, k, _ = self.qkv(x)
        n = int(q.shape[1])
        step = max(_MAP_BUDGET // max(n, 1), 1)
        total = torch.zeros(k.shape[:2], dtype=k.dtype, device=k.device)  # (B, N)
        for j in range(0, n, step):
            total += torch.matmul(q[:, j:j + step], k.transpose(1, 2)).softmax(-1).sum(1)  # (B, n_j, N) -> (B, N)
        return total

    def functional_flops(self, inputs: tuple, output: torch.Tensor) -> int:
        """Energies 2·N²·C', softmax 3·N², aggregation 2·N²·C, α· and the residual 2·n, per image."""
        b, c = int(inputs[0].shape[0]), int(inputs[0].shape[1])
        npos, n = numel(inputs[0].shape[2:]), numel(inputs[0].shape)
        return b * (2 * npos * npos * self.c_ + softmax_flops(npos * npos) + 2 * npos * npos * c) + 2 * n


class ChannelAttention(nn.Module):
    """DANet's channel attention module (CAM): ``E_j = β · Σ_i softmax_i(±A_i · A_j) · A_i + A_j``, A_j the
    j-th channel as an H·W vector; β = ``gamma``, starting at 0. The paper's sign is +; ``official=True`` takes
    the official code's ``softmax(max_i(e) − e)``, which equals the softmax of −e. Runs in at least fp32 with
    autocast off (the energies are sums of H·W products). No parameters other than β."""

    def __init__(self, official: bool = False) -> None:
        super().__init__()
        self.official = bool(official)
        self.gamma = nn.Parameter(torch.zeros(1))  # β

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """The channel softmax x_ji (row j: the weights over i), (B, C, C), in at least fp32."""
        ft = torch.promote_types(x.dtype, torch.float32)
        with torch.autocast(device_type=x.device.type, enabled=False):
            a = x.to(ft).flatten(2)  # (B, C, N)
            e = torch.matmul(a, a.transpose(1, 2))  # (B, C, N) @ (B, N, C) -> (B, C, C), symmetric
            return (-e if self.official else e).softmax(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        att = self.weights(x)  # (B, C, C)
        with torch.autocast(device_type=x.device.type, enabled=False):
            ctx = torch.matmul(att, x.to(att.dtype).flatten(2))  # (B, C, C) @ (B, C, N) -> (B, C, N)
            out = self.gamma.to(att.dtype) * ctx.reshape(-1, int(x.shape[1]), h, w)  # (B, C, H, W)
        return x + out.to(x.dtype)

    def functional_flops(self, inputs: tuple, output: torch.Tensor) -> int:
        """Energies 2·C²·N, the sign flip C² (official), softmax 3·C², aggregation 2·C²·N, β· and the residual
        2·n, per image."""
        b, c = int(inputs[0].shape[0]), int(inputs[0].shape[1])
        npos, n = numel(inputs[0].shape[2:]), numel(inputs[0].shape)
        flip = c * c if self.official else 0
        return b * (4 * c * c * npos + flip + softmax_flops(c * c)) + 2 * n


class DAAttention(Attention, aliases=("DANet",)):
    """Dual attention (Jun Fu, Jing Liu, Haijie Tian, Yong Li, Yongjun Bao, Zhiwei Fang, Hanqing Lu; "Dual
    Attention Network for Scene Segmentation"; CVPR 2019; arXiv 1809.02983).

    With A = x of shape (B, C, H, W), N = H·W positions, C' = C/r; B, C, D: 1×1 convs (with bias) C -> C',
    C -> C', C -> C; A_j a position's C-vector in PAM and a channel's N-vector in CAM::

        PAM:  s_ji = softmax_i(B_i · C_j)                  (B, N, N), no scaling of the energies
              E^p_j = α · Σ_i s_ji D_i + A_j
        CAM:  x_ji = softmax_i(A_i · A_j)                  (B, C, C)
              E^c_j = β · Σ_i x_ji A_i + A_j
        out  = E^p + E^c                                   α, β learned, both starting at 0

    As the paper says, α and β start at 0, so the module starts as ``2·x`` and the convs of PAM get zero
    (finite) gradients until α moves. The paper's segmentation head also puts a 3×3 conv + BN + ReLU before and
    after each module; as an attention layer inside a detector only the two modules and their sum are kept.
    The PAM is memory-bounded in eager mode (see :class:`PositionAttention`); all energies, softmaxes and
    products run in at least fp32 with autocast off and are cast back.

    Official variant: the official CAM takes the softmax of ``max(e) − e`` (= softmax(−e), weighting the
    *least* similar channels), not the paper's softmax(e); ``official_cam=True`` selects it, the paper's sign
    is the default. The official PAM names the paper's C ``query_conv`` and B ``key_conv`` (the query belongs
    to the output position j): the same function, and the same names here.

    Parameters: ``2·(C·C' + C') + C² + C + 2``, i.e. 82,242 at C = 256 (r = 8, C' = 32).

    yaml example::

        [-1, 1, DAAttention, [1024]]           # r = 8, CAM as in the paper
        [-1, 1, DANet, [1024, 8, True]]        # the official code's CAM sign

    Args:
        c1: input (= output) channels C.
        reduction: r, the PAM query/key width C' = max(C // r, 1) (paper: 8).
        official_cam: use the official code's softmax(max − e) in CAM instead of the paper's softmax(e).
    """

    def __init__(self, c1: int, reduction: int = 8, official_cam: bool = False) -> None:
        super().__init__()
        if int(reduction) < 1:
            raise ValueError(f"DAAttention reduction must be a positive integer, got {reduction}")
        self.c1 = c1
        self.reduction = int(reduction)
        self.pam = PositionAttention(c1, self.reduction)
        self.cam = ChannelAttention(official_cam)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pam(x) + self.cam(x)

    def extra_repr(self) -> str:
        return f"c1={self.c1}, reduction={self.reduction}, official_cam={self.cam.official}"

    @torch.no_grad()
    def attention_map(self, inputs: tuple, output: torch.Tensor) -> AttentionMap:
        """PAM attention received by each position, (B, H, W), and CAM attention received by each channel,
        (B, C): sums of the softmax weights over the receivers (mean 1 = uniform)."""
        x = inputs[0]
        h, w = x.shape[-2:]
        spatial = self.pam.received(x).float().reshape(-1, h, w)  # (B, N) -> (B, H, W)
        channel = self.cam.weights(x).float().sum(1)  # (B, C)
        return AttentionMap(spatial=spatial, channel=channel, spatial_label="PAM attention received (1 = uniform)",
                            channel_label="CAM attention received (1 = uniform)")

    def functional_flops(self, inputs: tuple, output: torch.Tensor) -> int:
        """The sum of the two module outputs, n = B·C·H·W (PAM and CAM count their own operations)."""
        return numel(inputs[0].shape)
