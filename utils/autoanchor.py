"""AutoAnchor (facts §11): anchor order check; the dataset fit and k-means evolution live here too."""

from __future__ import annotations

import torch.nn as nn

from utils.general import LOGGER, colorstr

PREFIX = colorstr("AutoAnchor: ")


def check_anchor_order(m: nn.Module) -> None:
    """Flip a Detect head's anchors along the level axis when their area order disagrees with the strides."""
    a = m.anchors.prod(-1).view(-1)  # anchor areas, level by level
    da = a[-1] - a[0]
    ds = m.stride[-1] - m.stride[0]
    if da.sign() != ds.sign():
        LOGGER.info(f"{PREFIX}Reversing anchor order")
        m.anchors[:] = m.anchors.flip(0)
