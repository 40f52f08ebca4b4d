"""NAM: Normalization-based Attention Module.

Liu et al., "NAM: Normalization-based Attention Module", NeurIPS 2021 workshop,
arXiv 2111.12419.

The paper's L1 sparsity penalty acts on :meth:`NAMAttention.regularized_parameters` through
``utils.regularizers``; :func:`add_sparsity_grad` is the older name of that gradient step.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from models.attention.base import Attention, AttentionMap, FallbackBatchNorm2d
from models.attention.flops import batchnorm_flops, numel
from utils.regularizers import add_l1_grad


class Channel_Att(nn.Module):  # noqa: N801 - the name existing checkpoints pickle
    """NAM channel branch: ``sigmoid(BN(x) · |γ|/Σ|γ|) · x``.

    The attribute layout (``channels`` and ``bn2``) is the one existing checkpoints pickle; keep it.

    Args:
        channels: number of input (= output) channels.
        t: unused; kept because the original constructor takes it.
    """

    def __init__(self, channels: int, t: int = 16) -> None:
        super().__init__()
        self.channels = channels
        self.bn2 = nn.BatchNorm2d(channels, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = getattr(self, "fused_scale", None)
        if scale is not None:  # folded by fuse_layers(): one multiply-add and a sigmoid
            y = x * scale.to(x.dtype) + self.fused_shift.to(x.dtype)  # (B, C, H, W)
            return torch.sigmoid(y) * x
        y = self.bn2(x)  # (B, C, H, W)
        g = self.bn2.weight.detach().abs()  # (C,) no gradient flows through the weights w
        w = (g / g.sum()).to(y.dtype).view(1, -1, 1, 1)  # (1, C, 1, 1)
        return torch.sigmoid(y * w) * x

    @torch.no_grad()
    def fuse_layers(self) -> None:
        """Fold the (eval-mode) BN and the ``|γ|/Σ|γ|`` weights into one per-channel scale and shift.

        Afterwards ``forward`` computes ``sigmoid(x · s + t) · x`` with buffers ``fused_scale`` and
        ``fused_shift`` of shape (1, C, 1, 1), and ``bn2`` is removed (like ``Conv.fuse`` removes its BN).
        """
        if getattr(self, "fused_scale", None) is not None:
            return
        bn = self.bn2
        g = bn.weight.abs()
        w = g / g.sum()  # (C,)
        inv_std = torch.rsqrt(bn.running_var + bn.eps)  # (C,)
        scale = bn.weight * inv_std * w  # (C,)
        shift = (bn.bias - bn.running_mean * bn.weight * inv_std) * w  # (C,)
        self.register_buffer("fused_scale", scale.view(1, -1, 1, 1).clone())
        self.register_buffer("fused_shift", shift.view(1, -1, 1, 1).clone())
        self.register_buffer("fused_weight", w.clone(), persistent=False)  # for channel_weights(); not saved
        del self.bn2

    @torch.no_grad()
    def channel_weights(self) -> torch.Tensor | None:
        """The learnt channel importance ``|γ|/Σ|γ|`` (C,), summing to 1; None for a module fused by an older
        version of this code (it kept no copy)."""
        bn = getattr(self, "bn2", None)
        if bn is not None:
            g = bn.weight.detach().float().abs()
            return g / g.sum()
        w = getattr(self, "fused_weight", None)
        return None if w is None else w.detach().float().clone()

    def functional_flops(self, inputs: tuple, output: torch.Tensor) -> int:
        """FLOPs outside ``bn2`` (which thop counts): weighting, sigmoid, product (the folded affine once fused)."""
        n = numel(inputs[0].shape)
        if getattr(self, "fused_scale", None) is not None:
            return 4 * n  # multiply-add (2), sigmoid, product with x
        return 3 * n + 3 * self.channels  # |γ|, Σ, division; then ·w, sigmoid, ·x per element


class Spatial_Att(nn.Module):  # noqa: N801 - named like its sibling Channel_Att
    """NAM spatial branch made size-independent (see :class:`NAMAttention` for the reasoning).

    ``m`` = channel mean of x (B, 1, H, W); ``x̂ = BN(m)`` without affine; the per-pixel scale
    ``λ = conv1x1(x)`` (B, 1, H, W); ``w_p = H·W·|λ_p| / Σ_q |λ_q|`` (no gradient through ``w``, as for the
    channel weights); ``out = sigmoid(w · (λ · x̂ + β)) · x``.

    Args:
        channels: number of input (= output) channels.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.bn = FallbackBatchNorm2d(1, affine=False)  # normalises the channel-mean map
        self.scale = nn.Conv2d(channels, 1, 1, bias=True)  # predicts the per-pixel BN scale λ
        self.bias = nn.Parameter(torch.zeros(1))  # the BN shift β
        nn.init.zeros_(self.scale.weight)  # start as a plain BN with λ = 1 everywhere
        nn.init.ones_(self.scale.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(x) * x

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """The spatial gate ``sigmoid(w · (λ · x̂ + β))``, (B, 1, H, W) in x's dtype (``forward`` = gate · x)."""
        m = self.bn(x.mean(1, keepdim=True))  # (B, 1, H, W)
        lam = self.scale(x)  # (B, 1, H, W)
        a = lam.detach().to(torch.promote_types(lam.dtype, torch.float32)).abs()  # (B, 1, H, W), >= fp32
        w = a / (a.mean((2, 3), keepdim=True) + 1e-12)  # (B, 1, H, W), = H·W·|λ_p| / Σ_q |λ_q|
        y = w.to(m.dtype) * (lam.to(m.dtype) * m + self.bias.to(m.dtype))  # (B, 1, H, W)
        return torch.sigmoid(y).to(x.dtype)

    def scale_params(self) -> list[nn.Parameter]:
        """The parameters that produce λ (the conv predicting it); NAMAttention.regularized_parameters returns them."""
        return [self.scale.weight, self.scale.bias]

    def functional_flops(self, inputs: tuple, output: torch.Tensor) -> int:
        """FLOPs outside the λ conv (which thop counts): channel mean, BN (a subclass thop does not count),
        λ weighting, sigmoid, product with x."""
        b, c, h, w = (int(s) for s in inputs[0].shape)
        p = b * h * w  # positions
        return b * c * h * w * 2 + batchnorm_flops(p) + 8 * p  # mean + ·x; BN; |λ|, mean, ÷, ·x̂, +β, ·w, σ


class NAMAttention(Attention):
    """NAM: Normalization-based Attention Module (Liu et al., NeurIPS 2021 workshop, arXiv 2111.12419).

    Channel branch (the default, and the only branch in the official code and YOLO forks), with γ the scale
    of a BatchNorm over the input::

        w_c = |γ_c| / Σ_j |γ_j|          (no gradient through w)
        out = sigmoid(BN(x) · w_c) · x

    Spatial branch (``no_spatial=False``), applied after the channel branch. The paper gives every pixel
    position its own BN scale λ_p; the official draft did this with a ``BatchNorm1d`` over ``H·W``, which
    ties the module to one input size and breaks multi-scale training, rectangular validation and any other
    detect size. Here the per-pixel scale is *predicted from the features* by a 1×1 conv, so its parameter
    count does not depend on the input size, and it is normalised over the positions of each image::

        m   = mean_c(x)                           channel-mean map, (B, 1, H, W)
        λ   = conv1x1(x)                          per-pixel scale, (B, 1, H, W)
        w_p = H·W · |λ_p| / Σ_q |λ_q|             no gradient through w; mean of w is 1 at every size
        out = sigmoid(w_p · (λ_p · BN_s(m)_p + β)) · x

    The ``H·W`` factor keeps the gate's magnitude independent of the map size (without it ``w_p`` shrinks as
    1/(H·W) and the gate tends to 0.5 on large maps). The conv starts at weight 0, bias 1, i.e. as a plain
    spatial BN with λ = 1. The L1 sparsity penalty acts on that conv's parameters.

    Sparsity penalty: the paper trains with ``loss + p·Σ|γ| (+ p·Σ|λ|)``; ``utils.regularizers.L1Regularizer``
    (hyp ``nam_l1``) adds ``p·sign`` to the gradients of :meth:`regularized_parameters`.

    FLOPs: the two branches are child modules that thop does not know; each reports its own
    ``functional_flops``, so this module's own count is the default 0.

    yaml example::

        [-1, 1, NAMAttention, [1024]]                 # channel branch only
        [-1, 1, NAMAttention, [1024, None, False]]    # with the spatial branch

    Args:
        channels: number of input (= output) channels.
        out_channels: accepted for compatibility with the original signature and ignored; the output always
            has ``channels`` channels.
        no_spatial: ``True`` (default, checkpoint-compatible) for the channel branch only.
    """

    def __init__(self, channels: int, out_channels: int | None = None, no_spatial: bool = True) -> None:
        super().__init__()
        self.Channel_Att = Channel_Att(channels)
        if not no_spatial:
            self.Spatial_Att = Spatial_Att(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.Channel_Att(x)
        spatial = getattr(self, "Spatial_Att", None)  # absent in channel-only modules and old checkpoints
        return out if spatial is None else spatial(out)

    @torch.no_grad()
    def attention_map(self, inputs: tuple, output: torch.Tensor) -> AttentionMap:
        """What this module weights, for ``utils.attention_maps`` (visualisation).

        Returns:
            ``channel``: the learnt channel importance ``|γ|/Σ|γ|`` (C,), summing to 1 (image-independent; None
            for a module fused by an older version, which kept no copy); with the spatial branch also
            ``spatial``: its gate (B, H, W) for this input. A None map is left to the generic gain estimate
            (for the spatial map, the |x|-weighted mean channel gate per position).
        """
        am = AttentionMap(channel=self.Channel_Att.channel_weights(), channel_label="channel weight |γ|/Σ|γ|")
        spatial = getattr(self, "Spatial_Att", None)
        if spatial is not None:
            am.spatial = spatial.gate(self.Channel_Att(inputs[0]))[:, 0].float()  # (B, 1, H, W) -> (B, H, W)
            am.spatial_label = "spatial gate"
        return am

    def regularized_parameters(self) -> list[nn.Parameter]:
        """Parameters the L1 sparsity penalty acts on: the channel BN γ, plus the λ conv if spatial."""
        params = []
        bn = getattr(self.Channel_Att, "bn2", None)  # gone after fuse_layers()
        if bn is not None:
            params.append(bn.weight)
        spatial = getattr(self, "Spatial_Att", None)
        if spatial is not None:
            params += spatial.scale_params()
        return params

    def fuse_layers(self) -> None:
        """Fold the channel BN and its ``|γ|/Σ|γ|`` weights into one per-channel scale and shift.

        For inference: the folded path uses the running statistics, so a fused module computes what the
        unfused module computes in eval mode, in train mode too.
        """
        self.Channel_Att.fuse_layers()


def add_sparsity_grad(model: nn.Module, p: float) -> int:
    """Add the NAM L1 sparsity penalty's gradient, ``p · sign(θ)``, to every regularised parameter θ.

    Equivalent to training with ``loss + p · Σ|θ|`` over the parameters each submodule lists in
    ``regularized_parameters()`` (the NAM BN scales γ, and the λ predictor of a spatial branch); the same step
    as ``utils.regularizers.add_l1_grad``, kept under this name. Call it after ``backward`` and, under AMP, after
    ``scaler.unscale_(optimizer)``, before the optimizer step.

    Args:
        model: any module; every submodule with a ``regularized_parameters()`` method is visited.
        p: penalty weight (the official code uses 1e-4); 0 does nothing.

    Returns:
        How many parameter tensors had their gradient changed (parameters without ``.grad`` are skipped).
    """
    return add_l1_grad(model, p)
