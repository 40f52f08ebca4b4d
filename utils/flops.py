"""FLOPs counting: thop for standard layers plus each module's own functional operations.

thop counts only leaf modules it has a rule for, so an attention module that works with tensor operations
(SimAM's mean and sigmoid, CoTAttention's softmax and product) counts as 0. A module reports those operations
itself through a method ``functional_flops(inputs, output) -> int`` (FLOPs, a multiply-add counting 2); the
hooks below add them to thop's per-module counter, so totals stay in thop's MAC convention.

Every module that defines ``functional_flops`` is counted, each once per call: the attention layers (the
``Attention`` base class gives them a default of 0) and any helper submodule of theirs (NAM's channel and
spatial branches report their own). So a module's ``functional_flops`` counts only the operations in its own
``forward``, never those of its children. thop adds up a module's counter and its children's, except below a
module of a type it has a rule for (a leaf to it); no module with ``functional_flops`` sits there.
"""

from __future__ import annotations

from copy import deepcopy

import torch
import torch.nn as nn

from utils.general import LOGGER

_reported: set[str] = set()


def _report_once(msg: str) -> None:
    """Log a FLOPs problem once per process (it would otherwise repeat for every model built)."""
    if msg not in _reported:
        _reported.add(msg)
        LOGGER.warning(msg)


def _add_functional(m: nn.Module, inputs: tuple, output) -> None:
    if hasattr(m, "total_ops"):  # the counter thop attaches to every module during profile()
        m.total_ops += float(m.functional_flops(inputs, output)) / 2  # FLOPs -> MACs


def count_macs(model: nn.Module, inputs: tuple) -> float:
    """Multiply-accumulate count of one forward of ``model(*inputs)``, functional operations included.

    Profiles a deep copy, so ``model`` keeps no hooks or buffers. Raises whatever thop or the forward raises.
    """
    import thop  # optional dependency: callers decide how to report its absence
    from thop.vision.basic_hooks import count_normalization

    m = deepcopy(model)
    hooks = [x.register_forward_hook(_add_functional) for x in m.modules() if callable(getattr(x, "functional_flops", None))]
    try:  # thop 0.1.1 has no GroupNorm rule; count it like its other normalisations
        macs, _ = thop.profile(m, inputs=inputs, custom_ops={nn.GroupNorm: count_normalization}, verbose=False)
    finally:
        for h in hooks:
            h.remove()
    return float(macs)


def count_functional_flops(model: nn.Module, inputs: tuple) -> int:
    """FLOPs of the functional operations of one forward of ``model(*inputs)``: the ``functional_flops`` of
    ``model`` and of every submodule, summed over their calls (what :func:`count_macs` adds to thop's count,
    in FLOPs). Runs the forward under ``no_grad`` on ``model`` itself and removes its hooks afterwards."""
    total = [0]

    def add(m: nn.Module, inputs: tuple, output) -> None:
        total[0] += int(m.functional_flops(inputs, output))

    hooks = [x.register_forward_hook(add) for x in model.modules() if callable(getattr(x, "functional_flops", None))]
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for h in hooks:
            h.remove()
    return total[0]


def model_gflops(model: nn.Module, img_size: int | list | tuple = 640) -> float | None:
    """GFLOPs of a detection model at ``img_size``: profiled at a stride-sized input, scaled.

    Returns None (and logs why, once) when thop is missing or profiling fails.
    """
    try:
        stride = max(int(model.stride.max()), 32) if hasattr(model, "stride") else 32
        p = next(model.parameters())
        ch = model.yaml.get("ch", 3) if isinstance(getattr(model, "yaml", None), dict) else 3
        img = torch.zeros((1, ch, stride, stride), device=p.device, dtype=p.dtype)
        gflops = count_macs(model, (img,)) / 1e9 * 2
        h, w = img_size if isinstance(img_size, (list, tuple)) else (img_size, img_size)
        return gflops * h / stride * w / stride
    except ImportError:
        _report_once("WARNING: GFLOPs not computed: thop is not installed (pip install thop)")
    except Exception as e:  # reported, never swallowed silently
        _report_once(f"WARNING: GFLOPs not computed: {type(e).__name__}: {e}")
    return None
