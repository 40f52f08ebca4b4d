"""Attention layers, one module per file; importing this package registers all of them.

Every attention layer subclasses :class:`models.attention.base.Attention`, which registers it with
``models.registry`` under its class name (kind ``"attention"``), so a yaml line such as
``[-1, 1, NAMAttention, [1024]]`` builds it with the real input channels. To add a module, write
``models/attention/<name>.py`` with a class ``MyAttention(Attention)``: every module file in this folder is
imported below, and every registered attention class defined in them becomes an attribute of this package
(``from models.attention import MyAttention``), so no other file needs an edit.
"""

import importlib
import pkgutil

from models import registry
from models.attention.base import Attention, AttentionMap, FallbackBatchNorm2d
from models.attention.cot_layer import local_aggregation
from models.attention.nam import Channel_Att, Spatial_Att, add_sparsity_grad
from models.attention.simam import simam_module

# Import (and so register) every module file in this package, in name order.
for _info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
    if not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")

# Every registered attention class defined here, as a package attribute under its class name.
_CLASSES = {c.__name__: c for c in registry.classes("attention") if c.__module__.startswith(f"{__name__}.")}
globals().update(_CLASSES)

__all__ = [
    "Attention",
    "AttentionMap",
    "Channel_Att",
    "FallbackBatchNorm2d",
    "Spatial_Att",
    "add_sparsity_grad",
    "local_aggregation",
    "simam_module",
]
__all__ += sorted(_CLASSES)
