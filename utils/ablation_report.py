"""The written output of ``ablate.py``: Markdown tables, the CSV, and a report a reviewer can read on its own.

Every function takes the summary rows of :func:`utils.ablation.summarize`, extended by ``ablate.py`` with
``latency`` (``{"cpu_fp32_b1", "gpu_fp16_b1", "gpu_fp16_b32"}``, ms or None), ``paired`` (None or
``{"mAP50": d, "mAP50_95": d}``, ``d`` a ``utils.bootstrap.PairedDelta.to_dict()``), ``module`` (None for the
baseline), ``at`` (the layers the module was inserted after) and ``stage`` (e.g. ``"P4 backbone"``). A key that is
missing counts as None, so rows written before these keys existed still work. Values that are not known are
written as ``n/a``, never left out, so the columns of a report do not depend on the machine that made it.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import yaml

from utils.ablation import BASELINE, METRIC_COLUMNS

LATENCIES = ("cpu_fp32_b1", "gpu_fp16_b1", "gpu_fp16_b32")
VERDICTS = ("better", "worse", "no detectable difference")


# ---------------------------------------------------------------------------------------------------- row access
def _pm(mean: float | None, std: float | None, nd: int = 4) -> str:
    if mean is None:
        return "n/a"
    return f"{mean:.{nd}f}" + (f" ± {std:.{nd}f}" if std is not None else "")


def _num(x: Any, fmt: str) -> str:
    return "n/a" if x is None else format(x, fmt)


def row_latency(row: dict, key: str = "cpu_fp32_b1") -> float | None:
    """One latency (ms) of a row, ``key`` in :data:`LATENCIES`; the CPU one falls back to ``latency_ms``."""
    v = (row.get("latency") or {}).get(key)
    return row.get("latency_ms") if v is None and key == "cpu_fp32_b1" else v


def paired_of(row: dict, metric: str = "mAP50_95") -> dict | None:
    """The paired-bootstrap result of ``metric`` (``mAP50`` or ``mAP50_95``) for a row, or None."""
    return (row.get("paired") or {}).get(metric)


def sweep_rows(rows: Sequence[dict]) -> list[dict]:
    """The rows of a placement sweep (a ``module`` at one ``at`` position), sorted by module, then position."""
    out = [r for r in rows if r.get("module") and len(r.get("at") or []) == 1]
    return sorted(out, key=lambda r: (r["module"], r["at"][0]))


def ci_text(d: dict | None) -> str:
    """``+0.0123 [+0.0040, +0.0210]``: a paired delta with its interval, or ``n/a``."""
    return "n/a" if d is None else f"{d['delta']:+.4f} [{d['lo']:+.4f}, {d['hi']:+.4f}]"


def ci_level(rows: Sequence[dict]) -> str:
    """``95%``: the interval coverage of the first row with paired data (95% when none has any)."""
    d = next((paired_of(r) for r in rows if paired_of(r)), None)
    return f"{(d or {}).get('level', 0.95) * 100:g}%"


# ---------------------------------------------------------------------------------------------------- tables
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


def latency_table(rows: Sequence[dict]) -> str:
    """Size and speed per variant: params, GFLOPs, CPU fp32 and GPU fp16 latencies (``n/a`` where not measured)."""
    lines = ["| variant | params | GFLOPs | CPU fp32 b1 ms | GPU fp16 b1 ms | GPU fp16 b32 ms |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        cpu, g1, g32 = (row_latency(r, k) for k in LATENCIES)
        lines.append(f"| {r['variant']} | {_num(r.get('params'), ',')} | {_num(r.get('gflops'), '.2f')} | "
                     f"{_num(cpu, '.1f')} | {_num(g1, '.2f')} | {_num(g32, '.2f')} |")
    return "\n".join(lines)


def per_seed_table(rows: Sequence[dict], seeds: Iterable[int]) -> str:
    """One line per variant and seed: best epoch (index ``of`` epochs logged), P, R, mAP@.5, mAP@.5:.95, and the
    paired Δ mAP@.5:.95 of that seed alone against the baseline of the same seed (``paired_per_seed``)."""
    lines = ["| variant | seed | best epoch | P | R | mAP@.5 | mAP@.5:.95 | Δ mAP@.5:.95 [CI], this seed | verdict |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    seeds = list(seeds)
    for r in rows:
        for s in seeds:
            m = (r.get("per_seed") or {}).get(s)
            if not m:
                lines.append(f"| {r['variant']} | {s} | not finished | n/a | n/a | n/a | n/a | n/a | |")
                continue
            ep = _num(m.get("epoch"), "") + (f" of {m['epochs']}" if m.get("epochs") is not None else "")
            d = ((r.get("paired_per_seed") or {}).get(s) or {}).get("mAP50_95")
            pair = "—" if r["variant"] == BASELINE else ci_text(d)
            lines.append(f"| {r['variant']} | {s} | {ep} | " + " | ".join(_num(m.get(k), ".4f") for k in
                                                                         ("P", "R", "mAP50", "mAP50_95"))
                         + f" | {pair} | {d['verdict'] if d else ''} |")
    return "\n".join(lines)


def paired_table(rows: Sequence[dict]) -> str:
    """Paired bootstrap per variant: Δ and interval, win rate, for both mAPs; verdict (mAP@.5:.95); sizes.

    The baseline is skipped; a variant without paired data gets a line of ``n/a``.
    """
    lv = ci_level(rows)
    lines = [f"| variant | Δ mAP@.5:.95 [{lv} CI] | wins | Δ mAP@.5 [{lv} CI] | wins | verdict | "
             "pairs × resamples |",
             "| --- | ---: | ---: | ---: | ---: | --- | ---: |"]
    for r in rows:
        if r["variant"] == BASELINE:
            continue
        a, b = paired_of(r, "mAP50_95"), paired_of(r, "mAP50")
        if a is None:
            lines.append(f"| {r['variant']} | n/a | n/a | n/a | n/a | n/a | n/a |")
            continue
        per = a["n_resamples"] // max(a["n_seeds"], 1)
        wb = f"{b['win'] * 100:.1f}%" if b else "n/a"
        lines.append(f"| {r['variant']} | {ci_text(a)} | {a['win'] * 100:.1f}% | {ci_text(b)} | {wb} | "
                     f"{a['verdict']} | {a['n_seeds']} × {per} |")
    return "\n".join(lines)


def sweep_table(rows: Sequence[dict]) -> str:
    """The placement sweep: one line per module and insertion point (sorted), size, speed and paired Δ."""
    lines = ["| module | after layer | stage | params | GFLOPs | CPU ms | "
             f"Δ mAP@.5:.95 [{ci_level(rows)} CI] | verdict |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: | --- |"]
    for r in sweep_rows(rows):
        d = paired_of(r)
        if d is not None:
            delta, verdict = ci_text(d), d["verdict"]
        else:  # no per-image records: the difference of means, without an interval
            delta, verdict = _num(r.get("d_mAP50_95"), "+.4f"), "n/a (no paired data)"
        lines.append(f"| {r['module']} | {r['at'][0]} | {r.get('stage') or 'n/a'} | {_num(r.get('params'), ',')} | "
                     f"{_num(r.get('gflops'), '.2f')} | {_num(row_latency(r), '.1f')} | {delta} | {verdict} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- files
def write_markdown(rows: Sequence[dict], path: str | Path, notes: Sequence[str] = ()) -> Path:
    """Write ``# Ablation``, the ``notes`` (one bullet each) and :func:`markdown_table` to ``path``."""
    path = Path(path)
    text = "# Ablation\n\n" + "".join(f"- {n}\n" for n in notes) + ("\n" if notes else "") + markdown_table(rows)
    path.write_text(text + "\n")
    return path


def _csv_value(x: Any) -> Any:
    return "" if x is None else (f"{x:.6g}" if isinstance(x, float) else x)


def write_csv(rows: Sequence[dict], seeds: Iterable[int], path: str | Path) -> Path:
    """Write the summary rows, latencies, paired results and every seed's metrics and best epoch to a CSV file.

    Columns: variant, cfg, params, gflops, latency_ms, n_seeds; ``<k>_mean``, ``<k>_std``, ``delta_<k>`` for k in
    P, R, mAP50, mAP50_95; ``latency_<cpu_fp32_b1|gpu_fp16_b1|gpu_fp16_b32>_ms``; ``paired_<m>_<delta|lo|hi|win>``
    for m in mAP50, mAP50_95, ``verdict`` (of mAP@.5:.95), ``paired_seeds``, ``paired_resamples`` (pooled);
    then ``<k>_s<seed>``, ``best_epoch_s<seed>`` and that seed's own paired Δ mAP@.5:.95
    (``paired_mAP50_95_<delta|lo|hi>_s<seed>``) per seed. Unknown values are empty cells.
    """
    path = Path(path)
    seeds = list(seeds)
    keys = list(METRIC_COLUMNS)
    head = ["variant", "cfg", "params", "gflops", "latency_ms", "n_seeds"]
    head += [f"{k}_{s}" for k in keys for s in ("mean", "std")] + [f"delta_{k}" for k in keys]
    head += [f"latency_{k}_ms" for k in LATENCIES]
    head += [f"paired_{m}_{f}" for m in ("mAP50", "mAP50_95") for f in ("delta", "lo", "hi", "win")]
    head += ["verdict", "paired_seeds", "paired_resamples"]
    head += [f"{k}_s{s}" for s in seeds for k in (*keys, "best_epoch", "paired_mAP50_95_delta", "paired_mAP50_95_lo",
                                                 "paired_mAP50_95_hi")]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(head)
        for r in rows:
            out = [r["variant"], r.get("cfg"), _csv_value(r.get("params")), _csv_value(r.get("gflops")),
                   _csv_value(r.get("latency_ms")), r.get("n", 0)]
            out += [_csv_value(r.get(f"{k}_{s}")) for k in keys for s in ("mean", "std")]
            out += [_csv_value(r.get(f"d_{k}")) for k in keys]
            out += [_csv_value(row_latency(r, k)) for k in LATENCIES]
            for m in ("mAP50", "mAP50_95"):
                d = paired_of(r, m) or {}
                out += [_csv_value(d.get(x)) for x in ("delta", "lo", "hi", "win")]
            d = paired_of(r) or {}
            out += [d.get("verdict", ""), _csv_value(d.get("n_seeds")), _csv_value(d.get("n_resamples"))]
            for s in seeds:
                m = (r.get("per_seed") or {}).get(s)
                out += [_csv_value(m.get(k)) if m else "" for k in keys] + [m.get("epoch", "") if m else ""]
                d = ((r.get("paired_per_seed") or {}).get(s) or {}).get("mAP50_95") or {}
                out += [_csv_value(d.get(x)) for x in ("delta", "lo", "hi")]
            w.writerow(out)
    return path


# ---------------------------------------------------------------------------------------------------- report
@dataclass
class ReportInfo:
    """Everything the report says besides the rows.

    Attributes:
        command: the exact command line of the ablation.
        code_version: e.g. the git commit and whether the tree had local changes.
        data: ``yaml``, ``nc``, ``names``, ``train_images``, ``val_images`` and ``val_labels`` (``{class name:
            count}``); any may be None (unknown).
        hyp: the training hyperparameters.
        seeds: the ablation's seeds.
        settings: bullet lines on training and timing.
        environment: ``{name: value}``, e.g. python, torch, CUDA, CPU and GPU.
        plots: image files relative to the report.
        nondeterministic_ops: ``{run key: [ops PyTorch warned were non-deterministic]}``.
        method: a paragraph on the paired bootstrap.
        sweep: whether the ablation is a placement sweep (adds the sweep section).
    """

    command: str
    code_version: str = "unknown"
    data: dict = field(default_factory=dict)
    hyp: dict = field(default_factory=dict)
    seeds: list[int] = field(default_factory=list)
    settings: list[str] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    plots: list[str] = field(default_factory=list)
    nondeterministic_ops: dict[str, list[str]] = field(default_factory=dict)
    method: str = ""
    sweep: bool = False


def summary_paragraph(rows: Sequence[dict]) -> str:
    """One paragraph: which variants are better, worse, or not detectably different by the paired verdict."""
    groups: dict[str | None, list[str]] = {v: [] for v in (*VERDICTS, None)}
    for r in rows:
        if r["variant"] != BASELINE:
            d = paired_of(r)
            groups[d["verdict"] if d else None].append(f"{r['variant']} ({d['delta']:+.4f})" if d else r["variant"])
    if not any(groups[v] for v in VERDICTS):
        text = "No variant has a paired comparison with the baseline yet."
    else:
        parts = [f"{v}: {', '.join(groups[v]) or 'none'}" for v in VERDICTS]
        text = (f"Against the `{BASELINE}`, by the paired bootstrap of mAP@.5:.95 ({ci_level(rows)} interval of "
                f"Δ = variant − baseline; point estimates in parentheses): " + "; ".join(parts) + ".")
    if groups[None]:
        text += f" Without paired data (not compared): {', '.join(groups[None])}."
    return text


def _fmt(x: Any) -> str:
    if x is None:
        return "n/a"
    return f"{x:,}" if isinstance(x, int) else str(x)


def _data_section(data: dict) -> list[str]:
    names = data.get("names")
    names = ", ".join(map(str, names.values() if isinstance(names, dict) else names)) if names else None
    out = [f"- dataset yaml: `{data['yaml']}`" if data.get("yaml") else "- dataset yaml: n/a",
           f"- classes (nc): {_fmt(data.get('nc'))}", f"- names: {names or 'n/a'}",
           f"- images: {_fmt(data.get('train_images'))} train, {_fmt(data.get('val_images'))} val"]
    labels = data.get("val_labels")
    if labels:
        out += ["", "Validation labels per class:", "", "| class | labels |", "| --- | ---: |"]
        out += [f"| {k} | {_fmt(v)} |" for k, v in labels.items()]
        out.append(f"| **all** | {_fmt(sum(v for v in labels.values() if v))} |")
    else:
        out.append("- validation labels per class: n/a")
    return out


def _training_section(info: ReportInfo) -> list[str]:
    out = [f"- {s}" for s in info.settings] + [f"- seeds: {', '.join(map(str, info.seeds)) or 'n/a'}"]
    ops = {k: v for k, v in info.nondeterministic_ops.items() if v}
    if not ops:
        out.append("- non-deterministic ops PyTorch warned about: none")
    else:
        out.append("- non-deterministic ops PyTorch warned about (these runs are not bit-for-bit repeatable):")
        out += [f"  - {k}: {', '.join(v)}" for k, v in ops.items()]
    return out


def report_text(rows: Sequence[dict], info: ReportInfo) -> str:
    """The report as Markdown (see :func:`write_report` for its sections)."""
    env = [f"- code version: {info.code_version}"] + [f"- {k}: {v}" for k, v in info.environment.items()]
    hyp = yaml.safe_dump(info.hyp, sort_keys=False).rstrip() if info.hyp else "# not recorded"
    s = [("# Ablation", [summary_paragraph(rows)]),
         ("## Command", ["```sh", info.command, "```"]),
         ("## Code and environment", env),
         ("## Data", _data_section(info.data or {})),
         ("## Training", _training_section(info)),
         ("## Results", ["mAP: best epoch of each run, mean ± sample std over seeds; Δ = variant mean − baseline "
                         "mean; latency: CPU fp32, batch 1.", "", markdown_table(rows)]),
         ("## Paired comparison", [info.method or "Paired bootstrap over validation images.", "",
                                   paired_table(rows)])]
    if info.sweep:
        s.append(("## Placement sweep", [sweep_table(rows)]))
    s += [("## Latency", [latency_table(rows)]),
          ("## Per seed", ["Best epoch: its index in results.csv (counted from 0) \"of\" the number of epochs "
                           "logged.", "",
                           per_seed_table(rows, info.seeds)]),
          ("## Plots", ["\n\n".join(f"![{Path(p).stem}]({p})" for p in info.plots) or "none"]),
          ("## Hyperparameters", ["```yaml", hyp, "```"])]
    return "\n\n".join(head + "\n\n" + "\n".join(body) for head, body in s) + "\n"


def write_report(path: str | Path, rows: Sequence[dict], info: ReportInfo) -> Path:
    """Write the full ablation report (Markdown) to ``path``; returns ``path``.

    Sections, in order: ``# Ablation`` with a one-paragraph summary of the paired verdicts, ``## Command``,
    ``## Code and environment``, ``## Data``, ``## Training``, ``## Results`` (:func:`markdown_table`),
    ``## Paired comparison`` (``info.method`` and :func:`paired_table`), ``## Placement sweep`` (only when
    ``info.sweep``; :func:`sweep_table`), ``## Latency`` (:func:`latency_table`), ``## Per seed``
    (:func:`per_seed_table`), ``## Plots`` and ``## Hyperparameters`` (``info.hyp`` as yaml).
    """
    path = Path(path)
    path.write_text(report_text(rows, info))
    return path
