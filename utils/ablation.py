"""Bookkeeping for ``ablate.py``: the resumable state file, per-run metrics, the summary table, CSV and plot.

Nothing here builds models or trains; ``ablate.py`` does that and hands plain numbers to these functions.

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


# ---------------------------------------------------------------------------------------------------- outputs
def _pm(mean: float | None, std: float | None, nd: int = 4) -> str:
    if mean is None:
        return "n/a"
    return f"{mean:.{nd}f}" + (f" ± {std:.{nd}f}" if std is not None else "")


def _num(x: Any, fmt: str) -> str:
    return "n/a" if x is None else format(x, fmt)


def markdown_table(rows: Sequence[dict]) -> str:
    """The ablation table in Markdown: variant, params, GFLOPs, latency, mAPs (mean ± std), Δ mAP@.5:.95, n."""
    lines = ["| variant | params | GFLOPs | latency ms | mAP@.5 | mAP@.5:.95 | Δ mAP@.5:.95 | seeds |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        d = r.get("d_mAP50_95")
        delta = "n/a" if d is None else ("—" if r["variant"] == BASELINE else f"{d:+.4f}")
        lines.append(f"| {r['variant']} | {_num(r['params'], ',')} | {_num(r['gflops'], '.2f')} | "
                     f"{_num(r['latency_ms'], '.1f')} | {_pm(r['mAP50_mean'], r['mAP50_std'])} | "
                     f"{_pm(r['mAP50_95_mean'], r['mAP50_95_std'])} | {delta} | {r['n']} |")
    return "\n".join(lines)


def write_markdown(rows: Sequence[dict], path: str | Path, notes: Sequence[str] = ()) -> Path:
    """Write ``# Ablation``, the ``notes`` (one bullet each) and :func:`markdown_table` to ``path``."""
    path = Path(path)
    text = "# Ablation\n\n" + "".join(f"- {n}\n" for n in notes) + ("\n" if notes else "") + markdown_table(rows)
    path.write_text(text + "\n")
    return path


def write_csv(rows: Sequence[dict], seeds: Iterable[int], path: str | Path) -> Path:
    """Write the summary rows and every seed's P, R, mAP@.5, mAP@.5:.95 and best epoch to a CSV file."""
    path = Path(path)
    seeds = list(seeds)
    keys = list(METRIC_COLUMNS)
    head = ["variant", "cfg", "params", "gflops", "latency_ms", "n_seeds"]
    head += [f"{k}_{s}" for k in keys for s in ("mean", "std")] + [f"delta_{k}" for k in keys]
    head += [f"{k}_s{s}" for s in seeds for k in (*keys, "best_epoch")]
    blank = lambda x: "" if x is None else (f"{x:.6g}" if isinstance(x, float) else x)  # noqa: E731
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(head)
        for r in rows:
            out = [r["variant"], r["cfg"], blank(r["params"]), blank(r["gflops"]), blank(r["latency_ms"]), r["n"]]
            out += [blank(r[f"{k}_{s}"]) for k in keys for s in ("mean", "std")]
            out += [blank(r[f"d_{k}"]) for k in keys]
            for s in seeds:
                m = r["per_seed"].get(s)
                out += [blank(m.get(k)) if m else "" for k in keys] + [m.get("epoch", "") if m else ""]
            w.writerow(out)
    return path


def plot_map_vs_latency(rows: Sequence[dict], path: str | Path, title: str = "") -> Path | None:
    """mAP@.5:.95 (mean, error bar = std over seeds) against CPU latency, one labelled point per variant.

    Returns the file written, or None (logged) when no variant has both a latency and a finished run.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    pts = [r for r in rows if r["latency_ms"] is not None and r["mAP50_95_mean"] is not None]
    if not pts:
        LOGGER.warning("WARNING: nothing to plot yet (no variant has both a latency and a finished run)")
        return None
    fig = Figure(figsize=(6.4, 4.8), tight_layout=True)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for r in pts:
        base = r["variant"] == BASELINE
        ax.errorbar(r["latency_ms"], r["mAP50_95_mean"], yerr=r["mAP50_95_std"] or 0.0, fmt="s" if base else "o",
                    color="black" if base else None, capsize=4, markersize=7)
        ax.annotate(f"{r['variant']} (n={r['n']})", (r["latency_ms"], r["mAP50_95_mean"]),
                    textcoords="offset points", xytext=(6, 6), fontsize=9)
    ax.set_xlabel("CPU latency, batch 1, fused (ms)")
    ax.set_ylabel("mAP@.5:.95 (mean ± std over seeds)")
    ax.set_title(title or "Ablation: accuracy vs latency", fontsize=10)
    ax.grid(alpha=0.3)
    path = Path(path)
    fig.savefig(path, dpi=150)
    return path
