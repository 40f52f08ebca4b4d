"""v6.1's ``models/experimental.py``: CrossConv, MixConv2d, Sum (re-exported), Ensemble and ``attempt_load``.

This module sits above ``models.yolo``: it loads whole checkpoints, so it needs the model classes.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from models.common import Conv, CrossConv, MixConv2d, Sum  # noqa: F401  (v6.1 pickles name the last three here)
from models.yolo import Detect, Model
from utils.checkpoint import CheckpointError, load_checkpoint
from utils.downloads import attempt_download  # noqa: F401  (v6.1 detect scripts import it from here)
from utils.general import LOGGER, InputError


class Ensemble(nn.ModuleList):
    """An ensemble of models whose inference outputs are concatenated for one NMS."""

    def __init__(self):
        super().__init__()

    def forward(self, x: torch.Tensor, augment: bool = False, profile: bool = False, visualize: bool = False):
        y = [module(x, augment, profile, visualize)[0] for module in self]
        return torch.cat(y, 1), None  # NMS ensemble: (bs, sum of N, no)


def safe_classes() -> list:
    """What a checkpoint may reference: every nn.Module class reachable as ``models.<module>.<Name>`` (under
    each path it is exported from, e.g. ``models.common.NAMAttention`` as forks pickle it) and every class of
    ``torch.nn``. Loading instantiates them without running their ``__init__``; nothing else is allowed."""
    out: dict[tuple, None] = {}
    for name, mod in list(sys.modules.items()):
        if mod is not None and (name == "models" or name.startswith("models.")):
            for attr, obj in vars(mod).items():
                if inspect.isclass(obj) and issubclass(obj, nn.Module) and obj.__module__.startswith("models."):
                    out.setdefault((obj, f"{name}.{attr}"), None)
                    out.setdefault((obj, f"{obj.__module__}.{obj.__qualname__}"), None)
    out_list: list = list(out)
    out_list += [obj for obj in vars(nn).values() if inspect.isclass(obj) and issubclass(obj, nn.Module)]
    return out_list


def describe_checkpoint(ckpt: Any) -> str:
    """What a loaded checkpoint holds, in words, for error messages."""
    if isinstance(ckpt, nn.Module):
        return f"a bare {type(ckpt).__name__} module"
    if isinstance(ckpt, dict):
        if ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
            return f"a state_dict ({len(ckpt)} tensors, no model structure)"
        if isinstance(ckpt.get("state_dict"), dict):
            return "a dict with a 'state_dict' entry (weights without the model structure)"
        keys = ", ".join(map(str, list(ckpt)[:8])) + (", ..." if len(ckpt) > 8 else "")
        return f"a dict with keys [{keys}] and no model"
    return f"a {type(ckpt).__name__} object"


def checkpoint_model(ckpt: Any, f: str | Path, prefer_ema: bool = True) -> nn.Module:
    """The model object of a loaded checkpoint: ``ema`` or ``model`` (whichever exists), or a bare module.

    Args:
        ckpt: what :func:`utils.checkpoint.load_checkpoint` returned.
        f: its file, for messages.
        prefer_ema: take ``ema`` when both are present (inference), else ``model`` (training transfer).

    Raises:
        CheckpointError: the file holds no model object (a state_dict, another program's dict, ...).
    """
    if isinstance(ckpt, nn.Module):
        return ckpt
    if isinstance(ckpt, dict):
        order = ("ema", "model") if prefer_ema else ("model", "ema")
        for k in order:
            if isinstance(ckpt.get(k), nn.Module):
                return ckpt[k]
    hint = (" train.py can transfer plain weights by layer name with --cfg <model.yaml>;"
            if isinstance(ckpt, dict) else "")
    raise CheckpointError(f"{f} is not a YOLOv5 checkpoint: it holds {describe_checkpoint(ckpt)}.{hint} detect.py, "
                          f"val.py and export.py need a checkpoint saved by train.py (a dict whose 'model' or 'ema' "
                          f"entry is the model)")


def detection_model(ckpt: Any, f: str | Path) -> nn.Module:
    """:func:`checkpoint_model` checked to be a detection model (a Detect head with strides and class names)."""
    m = checkpoint_model(ckpt, f)
    head = m.model[-1] if isinstance(getattr(m, "model", None), nn.Sequential) and len(m.model) else None
    if not isinstance(head, Detect) or getattr(m, "stride", None) is None:
        raise CheckpointError(f"{f} holds a {type(m).__name__} without a Detect head and strides: not a YOLOv5 "
                              f"detection model")
    if not hasattr(m, "names"):
        m.names = [f"class{i}" for i in range(head.nc)]
    return m


def attempt_load(weights: str | Path | list, map_location=None, inplace: bool = True, fuse: bool = True,
                 trusted: bool | None = None) -> nn.Module:
    """Load one checkpoint as a Model, or several as an Ensemble.

    Checkpoints are read with ``torch.load(weights_only=True)`` and the allowlist of :func:`safe_classes`;
    set ``YOLOV5_TRUST_CHECKPOINT=1`` (or pass ``trusted=True``) to load a pickle you trust that needs more.
    Nothing is downloaded: a missing file is a ``FileNotFoundError``.

    Args:
        weights: a path or a list of paths.
        map_location: as in ``torch.load``.
        inplace: Detect/activation ``inplace`` flag.
        fuse: fold BatchNorms (``Model.fuse()``).
        trusted: see above.
    """
    model = Ensemble()
    for w in weights if isinstance(weights, list) else [weights]:
        ckpt = load_checkpoint(w, map_location=map_location, allowed=safe_classes(), trusted=trusted)
        m = detection_model(ckpt, w).float()
        if fuse and hasattr(m, "fuse"):
            m = m.fuse()
        model.append(m.eval())

    for m in model.modules():  # compatibility with checkpoints from other torch / YOLOv5 versions
        t = type(m)
        if t in (nn.Hardswish, nn.LeakyReLU, nn.ReLU, nn.ReLU6, nn.SiLU, Detect, Model):
            m.inplace = inplace
            if t is Detect and not isinstance(m.anchor_grid, list):  # old checkpoints held it as a buffer
                delattr(m, "anchor_grid")
                m.anchor_grid = [torch.zeros(1)] * m.nl
        elif isinstance(m, Conv):
            m._non_persistent_buffers_set = set()  # torch 1.6 compatibility

    if len(model) == 1:
        return model[-1]
    ncs = {str(w): int(m.model[-1].nc) for w, m in zip(weights, model)}
    if len(set(ncs.values())) > 1:
        raise InputError(f"an ensemble needs models with the same classes; got nc {ncs}")
    LOGGER.info(f"Ensemble created with {weights}\n")
    for k in ("names",):
        setattr(model, k, getattr(model[-1], k))
    model.stride = model[torch.argmax(torch.tensor([m.stride.max() for m in model])).int()].stride
    return model
