"""Attention layers, one module per file; importing this package registers all of them.

Each class registers itself with ``models.registry`` under its class name (kind ``"attention"``), so a yaml
line such as ``[-1, 1, NAMAttention, [1024]]`` builds it with the real input channels. To add a module,
write ``models/attention/<name>.py`` with a ``@register(rule=attention, kind="attention")`` class: every
module file in this folder is imported below, so no other file needs an edit.
"""

import importlib
import pkgutil

from models.attention.base import FallbackBatchNorm2d
from models.attention.cot import CoTAttention
from models.attention.cot_layer import CotLayer, local_aggregation
from models.attention.nam import Channel_Att, NAMAttention, Spatial_Att, add_sparsity_grad
from models.attention.simam import SimAM, simam_module

# Import (and so register) every other module file in this package, in name order.
for _info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
    if not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = [
    "CoTAttention",
    "CotLayer",
    "Channel_Att",
    "FallbackBatchNorm2d",
    "NAMAttention",
    "SimAM",
    "Spatial_Att",
    "add_sparsity_grad",
    "local_aggregation",
    "simam_module",
]
