"""Wall-clock timing helpers shared by the benchmarks and ``ablate.py``.

Timing belongs in benchmarks and reports, never in pass/fail tests: these functions measure, they do not judge.
"""

from __future__ import annotations

import random
import statistics
import time
from typing import Any, Callable, Hashable



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
