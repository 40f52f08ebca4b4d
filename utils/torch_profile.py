"""v6.1's ``profile()`` of ``utils.torch_utils``: speed, memory and FLOPs of operations on given inputs."""

from __future__ import annotations

import time
from typing import Any, Tuple, Union

import torch
import torch.nn as nn

from utils.general import LOGGER

Shape = Union[Tuple[int, ...], str]  # evaluated at import: no ``X | Y`` (Python 3.9)


def _sync(device: torch.device) -> float:
    """``time.perf_counter()`` after the queued work of a CUDA ``device`` has finished."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _shape(y: Any) -> Shape:
    """The shape of an output tensor, or ``'list'`` for anything else."""
    return tuple(y.shape) if isinstance(y, torch.Tensor) else "list"


def _gflops(m: Any, x: torch.Tensor) -> float:
    """GFLOPs (2 x MACs) of ``m(x)``; 0 for a callable that is not a module or when thop fails/is missing."""
    if not isinstance(m, nn.Module):
        return 0.0
    try:
        from utils.flops import count_macs

        return count_macs(m, (x,)) / 1e9 * 2
    except Exception:  # v6.1 reports 0 GFLOPs when counting fails; the timing still runs
        return 0.0


def _time(m: Any, x: torch.Tensor, n: int, device: torch.device) -> tuple[float, float, Any]:
    """Mean forward and backward milliseconds of ``m(x)`` over ``n`` runs (backward NaN when it cannot run)."""
    tf = tb = 0.0
    y = None
    for _ in range(n):
        t0 = _sync(device)
        y = m(x)
        t1 = _sync(device)
        try:
            (sum(yi.sum() for yi in y) if isinstance(y, list) else y).sum().backward()
            t2 = _sync(device)
        except Exception:  # no graph (no_grad, integer output, ...): v6.1 reports NaN
            t2 = float("nan")
        tf += (t1 - t0) * 1000 / n
        tb += (t2 - t1) * 1000 / n
    return tf, tb, y


def profile(input: torch.Tensor | list[torch.Tensor], ops: Any, n: int = 10,
            device: str | torch.device | None = None) -> list[list | None]:
    """Profile each op of ``ops`` on each tensor of ``input`` and log one table row per (input, op) pair.

    Example: ``profile(torch.randn(16, 3, 640, 640), [nn.SiLU(), lambda x: x * torch.sigmoid(x)], n=100)``.

    Args:
        input: a tensor or a list of tensors (copies are moved to ``device`` and set to require gradients; the
            caller's tensors are left as they are).
        ops: a module/callable or a list of them (modules are moved to ``device``; to half precision for a half
            input).
        n: timed runs; forward and backward times are means over them.
        device: where to run; default :func:`utils.torch_utils.select_device` ('' -> first GPU, else CPU).

    Returns:
        Per (input, op) pair, in input-major order: ``[params, GFLOPs, GPU_mem (GB), forward (ms),
        backward (ms), input shape, output shape]``, or None when the op failed (its error is logged).
    """
    from utils.torch_utils import select_device

    device = device if isinstance(device, torch.device) else select_device("" if device is None else device)
    LOGGER.info(f"{'Params':>12s}{'GFLOPs':>12s}{'GPU_mem (GB)':>14s}{'forward (ms)':>14s}{'backward (ms)':>14s}"
                f"{'input':>24s}{'output':>24s}")
    results: list[list | None] = []
    for x in input if isinstance(input, list) else [input]:
        x = x.detach().to(device)
        if x.is_floating_point():
            x.requires_grad_(True)
        for m in ops if isinstance(ops, list) else [ops]:
            m = m.to(device) if hasattr(m, "to") else m
            m = m.half() if hasattr(m, "half") and x.dtype is torch.float16 else m
            try:
                gflops = _gflops(m, x)
                tf, tb, y = _time(m, x, n, device)
                mem = torch.cuda.memory_reserved(device) / 1e9 if device.type == "cuda" else 0.0
                p = sum(q.numel() for q in m.parameters()) if isinstance(m, nn.Module) else 0
                s_in, s_out = _shape(x), _shape(y)
                LOGGER.info(f"{p:12}{gflops:12.4g}{mem:>14.3f}{tf:14.4g}{tb:14.4g}{str(s_in):>24s}{str(s_out):>24s}")
                results.append([p, gflops, mem, tf, tb, s_in, s_out])
            except Exception as e:  # one failing op does not stop the table
                LOGGER.info(e)
                results.append(None)
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return results
