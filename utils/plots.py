"""Plotting helpers: feature-map visualisation (more plots arrive with training and detection)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from utils.general import LOGGER


def feature_visualization(x: torch.Tensor, module_type: str, stage: int, n: int = 32,
                          save_dir: Path = Path("runs/detect/exp")) -> None:
    """Save up to ``n`` channels of a (b, c, h, w) feature map as ``stage{i}_{type}_features.png`` (+ .npy)."""
    if "Detect" in module_type or not isinstance(x, torch.Tensor) or x.dim() != 4:
        return
    _, channels, height, width = x.shape
    if height <= 1 or width <= 1:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    f = save_dir / f"stage{stage}_{module_type.split('.')[-1]}_features.png"
    blocks = torch.chunk(x[0].detach().float().cpu(), channels, dim=0)  # per-channel (1, h, w) maps
    n = min(n, channels)
    fig, ax = plt.subplots(math.ceil(n / 8), 8, tight_layout=True)
    ax = np.atleast_1d(ax).ravel()
    plt.subplots_adjust(wspace=0.05, hspace=0.05)
    for i in range(len(ax)):
        if i < n:
            ax[i].imshow(blocks[i].squeeze())
        ax[i].axis("off")
    LOGGER.info(f"Saving {f}... ({n}/{channels})")
    plt.savefig(f, dpi=300, bbox_inches="tight")
    plt.close(fig)
    np.save(str(f.with_suffix(".npy")), x[0].detach().float().cpu().numpy())
