"""Bookkeeping for ``ablate.py``: the resumable state file, per-run metrics and the summary rows.

Nothing here builds models or trains; ``ablate.py`` does that and hands plain numbers to these functions. The
outputs made from the summary rows live in :mod:`utils.ablation_report` (Markdown tables, CSV, the report) and
:mod:`utils.ablation_plots` (figures); their old names here are lazy re-exports (see :func:`__getattr__`).

Metrics of one run come from its ``results.csv``: the row of the best epoch, i.e. the last row with the highest
fitness 0.1·mAP@.5 + 0.9·mAP@.5:.95 (train.py saves ``best.pt`` at that epoch, ties included). A resumed run may
repeat an epoch row (killed between writing the row and ``last.pt``); the later row of an epoch wins.
"""

from __future__ import annotations

import csv
import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Sequence

from utils.general import LOGGER, atomic_write
from utils.metrics import fitness

BASELINE = "baseline"
METRIC_COLUMNS = {"P": "metrics/precision", "R": "metrics/recall", "mAP50": "metrics/mAP_0.5",
                  "mAP50_95": "metrics/mAP_0.5:0.95"}


# ------------------------------------------------------------------------------------------------------ state
def load_state(path: str | Path) -> dict:
    """The ablation state (``{"settings", "variants", "runs"}``), or an empty one when ``path`` does not exist."""
    path = Path(path)
    if not path.exists():
        return {"version": 1, "settings": None, "variants": {}, "runs": {}}
    with open(path) as f:
        state = json.load(f)
    for k, v in (("variants", {}), ("runs", {}), ("settings", None)):
        state.setdefault(k, v)
    return state


def save_state(state: dict, path: str | Path) -> None:
    """Write ``state`` as JSON atomically (temporary file, then rename): a crash never leaves half a file."""
    state["updated"] = datetime.now().isoformat(timespec="seconds")
    text = json.dumps(state, indent=1, sort_keys=False)
    atomic_write(path, lambda f: f.write(text.encode()), durable=True)


def settings_diff(old: dict | None, new: dict) -> list[str]:
    """Human-readable differences between the training settings an ablation folder was made with and ``new``."""
    if not old:
        return []
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]


def run_key(variant: str, seed: int) -> str:
    """The name of one training run: ``<variant>_s<seed>`` (also its run folder and log file name)."""
    return f"{variant}_s{seed}"


# ---------------------------------------------------------------------------------------------------- metrics
def best_epoch_metrics(results_csv: str | Path) -> dict | None:
    """P, R, mAP@.5 and mAP@.5:.95 of the best epoch in a train.py ``results.csv`` (see the module docstring).

    Returns:
        ``{"epoch", "epochs", "P", "R", "mAP50", "mAP50_95", "fitness"}`` (``epochs``: distinct epochs logged),
        or None when the file is missing or has no complete row.
    """
    f = Path(results_csv)
    if not f.is_file():
        return None
    with open(f, newline="") as fh:
        rows = [[c.strip() for c in r] for r in csv.reader(fh) if r]
    if len(rows) < 2:
        return None
    head = rows[0]
    try:
        cols = {k: head.index(v) for k, v in METRIC_COLUMNS.items()}
        ep = head.index("epoch")
    except ValueError:
        LOGGER.warning(f"WARNING: {f} does not have train.py's results.csv header")
        return None
    by_epoch: dict[int, dict] = {}
    for r in rows[1:]:
        try:
            m = {k: float(r[i]) for k, i in cols.items()}
            e = int(float(r[ep]))
        except (ValueError, IndexError):  # a row cut short by a crash
            continue
        by_epoch[e] = m  # a repeated epoch (resume) keeps its later row
    if not by_epoch:
        return None
    best_e, best = None, None
    for e in sorted(by_epoch):
        m = by_epoch[e]
        m["fitness"] = float(fitness([[m["P"], m["R"], m["mAP50"], m["mAP50_95"]]])[0])  # train.py's best.pt rule
        if best is None or m["fitness"] >= best["fitness"]:  # '>=': train.py rewrites best.pt on a tie
            best_e, best = e, m
    return {"epoch": best_e, "epochs": len(by_epoch), **best}


def mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (n-1); std is None for fewer than two values, both None for none."""
    v = [float(x) for x in values]
    if not v:
        return None, None
    m = sum(v) / len(v)
    if len(v) < 2:
        return m, None
    return m, math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))


def summarize(variants: dict[str, dict], runs: dict[str, dict], seeds: Iterable[int],
              baseline: str = BASELINE) -> list[dict]:
    """One summary row per variant (in ``variants`` order) from the measurements and finished runs.

    Args:
        variants: ``{name: {"cfg", "params", "gflops", "latency_ms"}}``.
        runs: the state's runs, ``{run_key: {"variant", "seed", "status", "metrics"}}``; only ``status == "done"``
            runs of the requested ``seeds`` count.
        seeds: the seeds of this ablation.
        baseline: the variant the deltas are taken against.

    Returns:
        Rows with ``variant, cfg, params, gflops, latency_ms, n, seeds, per_seed`` and, for ``k`` in
        ``mAP50, mAP50_95, P, R``: ``k_mean``, ``k_std`` and ``d_k`` (mean minus the baseline's mean; None when
        either is missing).
    """
    seeds = list(seeds)
    rows = []
    for name, v in variants.items():
        per_seed = {}
        for s in seeds:
            r = runs.get(run_key(name, s))
            if r and r.get("status") == "done" and r.get("metrics"):
                per_seed[s] = r["metrics"]
        row = {"variant": name, "cfg": v.get("cfg"), "params": v.get("params"), "gflops": v.get("gflops"),
               "latency_ms": v.get("latency_ms"), "n": len(per_seed), "seeds": sorted(per_seed),
               "per_seed": per_seed}
        for k in METRIC_COLUMNS:
            row[f"{k}_mean"], row[f"{k}_std"] = mean_std([m[k] for m in per_seed.values()])
        rows.append(row)
    base = next((r for r in rows if r["variant"] == baseline), None)
    for r in rows:
        for k in METRIC_COLUMNS:
            a, b = r[f"{k}_mean"], base[f"{k}_mean"] if base else None
            r[f"d_{k}"] = None if a is None or b is None else a - b
    return rows


# ------------------------------------------------------------------------------------ backward compatibility
_MOVED = {"markdown_table": "utils.ablation_report", "write_csv": "utils.ablation_report",
          "write_markdown": "utils.ablation_report", "plot_map_vs_latency": "utils.ablation_plots"}


def __getattr__(name: str) -> Any:
    """Lazy re-exports of the output functions that moved out of this module, for callers of the old names.

    ``from utils.ablation import write_csv`` still works: the name is looked up in :mod:`utils.ablation_report`
    or :mod:`utils.ablation_plots` on first use. They are not imported at the top because both import
    :data:`BASELINE` from here; new code imports them from their own modules.
    """
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
