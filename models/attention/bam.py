"""BAM: the Bottleneck Attention Module.

Park, Woo, Lee, Kweon, "BAM: Bottleneck Attention Module", BMVC 2018, arXiv 1807.06514.

A channel branch (an MLP on the pooled map) and a spatial branch (a reduced 1×1 projection, two dilated 3×3
convolutions, a 1×1 projection to one channel) are added, broadcast to (B, C, H, W), squashed by a sigmoid,
and applied as a residual gate.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from models.attention.base import Attention, AttentionMap, FallbackBatchNorm2d
from models.attention.flops import batchnorm_flops, numel


class BAM(Attention, aliases=("BAMBlock",)):
    """BAM: Bottleneck Attention Module (Jongchan Park, Sanghyun Woo, Joon-Young Lee, In So Kweon; BMVC 2018;
    arXiv 1807.06514).

    With x of shape (B, C, H, W), r the reduction, h = max(C // r, 1) and d the dilation::

        Mc  = BN(W1 · ReLU(W0 · mean_hw(x) + b0) + b1)                        (B, C, 1, 1)
        Ms  = BN(f3_1×1(g(f2_3×3,d(g(f1_3×3,d(g(f0_1×1(x))))))))             (B, 1, H, W), g = ReLU∘BN
        M   = sigmoid(Mc + Ms)                                                (B, C, H, W), broadcast sum
        out = x + x · M

    f0 reduces C -> h, f1 and f2 are h -> h 3×3 convolutions with dilation d (padding d, so any H, W >= 1
    keeps its size), f3 projects h -> 1. All convolutions and linear layers have biases, as in the authors'
    code. Every BN is a :class:`FallbackBatchNorm2d`, so a batch-1 training call on a 1×1 map (one value per
    channel) does not fail. The pooled mean runs in fp32 and is cast back.

    The paper's formulas put a BN at the end of each branch (the default here). The authors' released code
    differs: its channel MLP has the BN on the hidden layer (FC -> BN -> ReLU -> FC) and its spatial branch
    ends with the 1×1 projection, without a BN. ``official=True`` builds that variant. The default follows
    the paper, which states the BNs as the way to bring the two branches to a common scale before the sum.

    Parameters: paper ``3·C·h + 18·h² + 11·h + 3·C + 3``, 17,843 at C = 256 (r = 16, h = 16);
    official ``3·C·h + 18·h² + 13·h + C + 1``, 17,361 at C = 256.

    yaml example::

        [-1, 1, BAM, [1024]]              # r = 16, d = 4
        [-1, 1, BAM, [1024, 8, 2]]        # r = 8, d = 2
        [-1, 1, BAM, [1024, 16, 4, True]] # the authors' code's BN placement

    Args:
        c1: input (= output) channels C.
        reduction: r of both branches (paper: 16).
        dilation: d of the two 3×3 convolutions (paper: 4).
        official: the authors' code's BN placement instead of the paper's.
    """

    def __init__(self, c1: int, reduction: int = 16, dilation: int = 4, official: bool = False) -> None:
        super().__init__()
        if int(reduction) < 1:
            raise ValueError(f"BAM reduction must be a positive integer, got {reduction}")
        if int(dilation) < 1:
            raise ValueError(f"BAM dilation must be a positive integer, got {dilation}")
        self.c1 = c1
        self.reduction = int(reduction)
        self.dilation = int(dilation)
        self.official = bool(official)
        h = self.hidden = max(c1 // self.reduction, 1)
        # channel branch: FC -> (BN, official) -> ReLU -> FC -> (BN, paper), as 1×1 convs on (B, C, 1, 1)
        ch = [nn.Conv2d(c1, h, 1)]
        ch += [FallbackBatchNorm2d(h)] if self.official else []
        ch += [nn.ReLU(inplace=True), nn.Conv2d(h, c1, 1)]
        ch += [] if self.official else [FallbackBatchNorm2d(c1)]
        self.channel = nn.Sequential(*ch)
        # spatial branch: 1×1 C -> h, two dilated 3×3 h -> h, each followed by BN and ReLU; 1×1 h -> 1 (BN, paper)
        sp = [nn.Conv2d(c1, h, 1), FallbackBatchNorm2d(h), nn.ReLU(inplace=True)]
        for _ in range(2):
            sp += [nn.Conv2d(h, h, 3, padding=self.dilation, dilation=self.dilation), FallbackBatchNorm2d(h),
                   nn.ReLU(inplace=True)]
        sp += [nn.Conv2d(h, 1, 1)]
        sp += [] if self.official else [FallbackBatchNorm2d(1)]
        self.spatial = nn.Sequential(*sp)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """M = sigmoid(Mc + Ms), (B, C, H, W), in x's dtype."""
        z = x.to(torch.promote_types(x.dtype, torch.float32)).mean((2, 3), keepdim=True).to(x.dtype)  # (B, C, 1, 1)
        mc = self.channel(z)  # (B, C, 1, 1)
        ms = self.spatial(x)  # (B, 1, H, W)
        return torch.sigmoid(mc + ms).to(x.dtype)  # (B, C, H, W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + x * self.gate(x)

    def extra_repr(self) -> str:
        return (f"c1={self.c1}, reduction={self.reduction}, dilation={self.dilation}, hidden={self.hidden}, "
                f"official={self.official}")

    @torch.no_grad()
    def attention_map(self, inputs: tuple, output: torch.Tensor) -> AttentionMap:
        """The gate M = sigmoid(Mc + Ms): its mean over channels (B, H, W) and over positions (B, C)."""
        m = self.gate(inputs[0]).float()  # (B, C, H, W)
        return AttentionMap(spatial=m.mean(1), channel=m.mean((2, 3)),
                            spatial_label="BAM gate sigmoid(Mc + Ms), mean over channels",
                            channel_label="BAM gate sigmoid(Mc + Ms), mean over positions")

    def functional_flops(self, inputs: tuple, output: torch.Tensor) -> int:
        """FLOPs outside the convs (which thop counts), with n = B·C·H·W and p = B·H·W.

        The mean n + B·C; the BNs (a subclass thop skips, folded to 2 per element): 2·B·h on the hidden
        layer (official) or 2·B·C at the end of the channel branch (paper), 3 · 2·h·p in the spatial branch,
        2·p at its end (paper); the ReLUs count 0 (thop's convention); the broadcast sum Mc + Ms n, the
        sigmoid n, the product x·M n, the residual sum n.
        """
        b, c, h, w = (int(v) for v in inputs[0].shape)
        n, p = numel(inputs[0].shape), b * h * w
        flops = n + b * c + 4 * n + 3 * batchnorm_flops(self.hidden * p)
        if self.official:
            flops += batchnorm_flops(b * self.hidden)
        else:
            flops += batchnorm_flops(b * c) + batchnorm_flops(p)
        return flops
