"""Wall-clock timing helpers shared by the benchmarks and ``ablate.py``.

Timing belongs in benchmarks and reports, never in pass/fail tests: these functions measure, they do not judge.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import torch
import torch.nn as nn


def median_ms(fn: Callable[[], Any], warmup: int = 10, runs: int = 30) -> float:
    """Median wall time of ``fn()`` in milliseconds.

    Args:
        fn: the call to time (no arguments; its result is discarded).
        warmup: untimed calls first (thread pools, allocator and caches settle).
        runs: timed calls; the median of these is returned.

    Returns:
        The median duration of one call, in ms.

    Raises:
        ValueError: ``runs`` < 1.
    """
    if runs < 1:
        raise ValueError(f"median_ms needs at least one timed run, got runs={runs}")
    for _ in range(warmup):
        fn()
    t = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        t.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(t)


def cpu_latency_ms(model: nn.Module, img_size: int, warmup: int = 10, runs: int = 30, threads: int | None = None,
                   ch: int = 3) -> float:
    """Median CPU latency of one batch-1 forward of ``model`` on a zero ``img_size``² image, in ms.

    The model is put in eval mode and run under ``torch.no_grad()``; fuse it first if deployment fuses it (as
    ``attempt_load`` does). The torch thread count is set to ``threads`` for the measurement and restored after.

    Args:
        model: a module on the CPU taking a ``(1, ch, img_size, img_size)`` float tensor.
        img_size: image side in pixels.
        warmup: untimed forwards first.
        runs: timed forwards (median).
        threads: torch intra-op threads while timing; None keeps the current setting.
        ch: input channels.

    Returns:
        Median milliseconds per forward.
    """
    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        model.eval()
        p = next(model.parameters(), None)
        x = torch.zeros(1, ch, img_size, img_size, dtype=p.dtype if p is not None else torch.float32)
        with torch.no_grad():
            return median_ms(lambda: model(x), warmup, runs)
    finally:
        torch.set_num_threads(old)
