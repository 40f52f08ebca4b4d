"""Wall-clock timing helpers shared by the benchmarks and ``ablate.py``.

Timing belongs in benchmarks and reports, never in pass/fail tests: these functions measure, they do not judge.
"""

from __future__ import annotations

import random
import statistics
import time
from copy import deepcopy
from typing import Any, Callable, Hashable, Iterable, Mapping

import torch
import torch.nn as nn


def synced(fn: Callable[[], Any], device: torch.device | str = "cpu") -> Callable[[], Any]:
    """``fn`` followed by ``torch.cuda.synchronize`` when ``device`` is a CUDA device, else ``fn`` itself.

    CUDA kernels run asynchronously: without the synchronisation a timer measures the launch, not the work.

    Args:
        fn: the call to wrap (no arguments).
        device: where ``fn`` runs its work.

    Returns:
        A zero-argument callable returning ``fn()``'s result.
    """
    dev = torch.device(device)
    if dev.type != "cuda":
        return fn

    def call() -> Any:
        y = fn()
        torch.cuda.synchronize(dev)  # the kernels' time, not the launch's
        return y

    return call


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


def interleaved_median_ms(calls: dict[Hashable, Callable[[], Any]], warmup: int = 10, runs: int = 30,
                          rounds: int = 5, pause: float = 0.3, seed: int = 0) -> dict[Hashable, float]:
    """Time several calls against each other: per call, the median over ``rounds`` of :func:`median_ms`.

    Each round visits every call in a fresh (seeded) random order, after ``pause`` seconds of idle, so slow drift
    in the machine's speed and thread pools still spinning from the previous call land on every call alike. On a
    small CPU, timing one model after another instead gives differences of ±10% between identical models.

    Args:
        calls: key -> zero-argument callable.
        warmup: untimed calls of each before the first round.
        runs: timed calls per round (median).
        rounds: interleaved rounds (median of the round medians).
        pause: seconds of sleep before each measurement.
        seed: order shuffling seed.

    Returns:
        key -> milliseconds.
    """
    for fn in calls.values():
        median_ms(fn, warmup, 1)
    samples: dict[Hashable, list[float]] = {k: [] for k in calls}
    rng = random.Random(seed)
    for _ in range(max(rounds, 1)):
        keys = list(calls)
        rng.shuffle(keys)
        for k in keys:
            time.sleep(pause)
            samples[k].append(median_ms(calls[k], 2, runs))
    return {k: statistics.median(v) for k, v in samples.items()}


def device_median_ms(calls: Mapping[Hashable, Callable[[], Any]], device: torch.device | str = "cpu",
                     warmup: int = 10, runs: int = 30, rounds: int = 5, pause: float = 0.3,
                     seed: int = 0) -> dict[Hashable, float]:
    """:func:`interleaved_median_ms` of calls that run on ``device``, each synchronised (:func:`synced`).

    The one timing path of ``benchmarks/latency.py`` and ``ablate.py``: on the CPU it is exactly
    :func:`interleaved_median_ms`; on CUDA every timed call waits for its kernels.

    Returns:
        key -> milliseconds.
    """
    return interleaved_median_ms({k: synced(fn, device) for k, fn in calls.items()}, warmup, runs, rounds, pause,
                                 seed)


def batch_latency_ms(models: Mapping[Hashable, nn.Module], img: int, batch_sizes: Iterable[int] = (1, 32),
                     device: torch.device | str = "cuda", half: bool = True, warmup: int = 10, runs: int = 30,
                     rounds: int = 5) -> dict[Hashable, dict[int, float]]:
    """Forward time of every model on a zero batch, per batch size, all models interleaved (:func:`device_median_ms`).

    For each batch size a copy of every model is moved to ``device`` (fp16 when ``half``), timed on a
    ``(bs, 3, img, img)`` zero input, then freed (with the CUDA cache) before the next batch size.

    Args:
        models: key -> model (left unchanged: copies are timed).
        img: square input size.
        batch_sizes: batch sizes to time.
        device: where to time (``'cuda'``: the current CUDA device).
        half: fp16 weights and input.
        warmup, runs, rounds: as :func:`interleaved_median_ms`.

    Returns:
        ``{key: {batch size: ms per forward}}``.
    """
    dev = torch.device(device)
    dtype = torch.half if half else torch.float32
    out: dict[Hashable, dict[int, float]] = {k: {} for k in models}
    for bs in batch_sizes:
        x = torch.zeros(bs, 3, img, img, device=dev, dtype=dtype)
        copies = {k: deepcopy(m).to(dev, dtype) for k, m in models.items()}
        with torch.no_grad():
            timed = device_median_ms({k: (lambda g=g: g(x)) for k, g in copies.items()}, dev, warmup, runs, rounds)
        for k, ms in timed.items():
            out[k][bs] = ms
        del copies
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return out
