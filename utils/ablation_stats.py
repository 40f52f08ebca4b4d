"""Paired comparisons of an ablation's variants against its baseline, from the runs' per-image records.

Each ``train.py`` run keeps the per-image evaluation records of its best epoch in ``<run>/records/best.npz`` (the
epoch whose metrics the ablation table reports). For every variant, the runs of each seed are paired with the
baseline run of the same seed and compared by the paired bootstrap of ``utils.bootstrap``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from utils.ablation import BASELINE, run_key
from utils.bootstrap import paired_bootstrap
from utils.eval_records import EvalRecords
from utils.general import LOGGER

RECORDS = Path("records") / "best.npz"


def run_records(run: dict | None) -> EvalRecords | None:
    """The best epoch's records of a finished run (a state record ``{"status", "dir", "metrics"}``), or None.

    None (with a warning) too when the file is missing or unreadable, or holds another epoch than the run's
    reported best (a run killed between saving ``best.pt`` and its records, then resumed).
    """
    if not run or run.get("status") != "done":
        return None
    f = Path(run["dir"]) / RECORDS
    name = Path(run["dir"]).name
    if not f.is_file():
        LOGGER.warning(f"WARNING: {f} not found (a run trained before per-image records existed?): "
                       f"{name} is left out of the paired comparison")
        return None
    try:
        rec = EvalRecords.load(f)
    except Exception as e:  # a damaged file must not stop the report
        LOGGER.warning(f"WARNING: cannot read {f} ({type(e).__name__}: {e}); {name} is left out of the paired "
                       f"comparison")
        return None
    epoch, best = rec.meta.get("epoch"), (run.get("metrics") or {}).get("epoch")
    if epoch is not None and best is not None and epoch != best:
        LOGGER.warning(f"WARNING: {f} holds epoch {epoch} but the run's best epoch is {best}; {name} is left out "
                       f"of the paired comparison")
        return None
    return rec


_CACHE: dict = {}  # resampled scores of records files, across the reports of one ablate.py process


def paired_results(runs: dict[str, dict], variants: Iterable[str], seeds: Iterable[int], n: int = 1000,
                   seed: int = 0, baseline: str = BASELINE) -> dict[str, dict | None]:
    """Paired bootstrap of every variant against ``baseline``, pooled over the seeds where both runs finished.

    Args:
        runs: the ablation state's runs (``{run_key: {"status", "dir", "metrics", ...}}``).
        variants: the variant names (the baseline among them is skipped).
        seeds: the ablation's seeds.
        n: resamples per seed; 0 turns the comparison off.
        seed: the resampling seed.
        baseline: the reference variant.

    Returns:
        ``{variant: {"mAP50": {...}, "mAP50_95": {...}, "per_seed": {seed: {"mAP50": ..., "mAP50_95": ...}}} or
        None}`` (None: no seed with both records, or ``n`` 0). Each metric dict is
        ``utils.bootstrap.PairedDelta.to_dict()`` (delta, lo, hi, win, verdict, sizes).
    """
    seeds = list(seeds)
    base = {s: run_records(runs.get(run_key(baseline, s))) for s in seeds} if n > 0 else {}
    out = {}
    for v in variants:
        if v == baseline:
            continue
        pairs, used = [], []
        for s in seeds:
            r = run_records(runs.get(run_key(v, s))) if base.get(s) is not None else None
            if r is None:
                continue
            try:
                r.reordered(base[s].images)  # the same validation images, or this seed is left out
            except ValueError as e:
                LOGGER.warning(f"WARNING: {run_key(v, s)}: left out of the paired comparison ({e})")
                continue
            pairs.append((base[s], r))
            used.append(s)
        res = paired_bootstrap(pairs, n=n, seed=seed, cache=_CACHE) if pairs else None
        out[v] = {k: d.to_dict() for k, d in res.items()} if res else None
        if out[v]:  # each seed alone too (its scores are cached): do the seeds agree?
            out[v]["per_seed"] = {s: {k: d.to_dict() for k, d in
                                      paired_bootstrap([p], n=n, seed=seed, cache=_CACHE).items()}
                                  for s, p in zip(used, pairs)}
    return out
