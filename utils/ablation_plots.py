"""The figures of ``ablate.py``: accuracy against latency with a forest plot of the paired deltas, and the sweep.

Both take the summary rows described in :mod:`utils.ablation_report` (missing keys count as None). matplotlib is
used through its Agg canvas without pyplot (:func:`utils.figures.new_figure`).

Colours of a paired verdict (mAP@.5:.95): green ``better`` (the whole interval above 0), red ``worse`` (below 0),
grey ``no detectable difference``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from utils.ablation import BASELINE
from utils.ablation_report import ci_level, paired_of, row_latency, sweep_rows
from utils.figures import new_figure
from utils.general import LOGGER

VERDICT_COLORS = {"better": "#2ca02c", "worse": "#d62728", "no detectable difference": "#7f7f7f"}


def _interval(ax: Any, pos: float, d: dict, vertical: bool = False, cap: float = 7, **style: Any) -> None:
    """Draw a paired delta: the interval ``lo..hi`` as a line with caps and the point ``delta`` on it.

    The interval is drawn from its own ends (the pooled percentiles need not be centred on, or even contain, the
    mean of the seeds' full-set deltas).
    """
    ends, mid = [d["lo"], d["hi"]], d["delta"]
    xs, ys = ([pos, pos], ends) if vertical else (ends, [pos, pos])
    color, lw = style.pop("color", None), style.pop("lw", 1.5)
    ax.plot(xs, ys, "-", color=color, lw=lw, alpha=style.get("alpha", 1.0))
    ax.plot(xs, ys, "_" if vertical else "|", color=color, markersize=cap, alpha=style.get("alpha", 1.0))
    ax.plot(pos if vertical else mid, mid if vertical else pos, "o", color=color, **style)


# ---------------------------------------------------------------------------------------------------- ablation
def _draw_map_vs_latency(ax: Any, rows: Sequence[dict]) -> None:
    """mAP@.5:.95 (mean ± std over seeds) against CPU latency, one labelled point per variant, baseline a square."""
    pts = [r for r in rows if row_latency(r) is not None and r.get("mAP50_95_mean") is not None]
    if not pts:
        ax.text(0.5, 0.5, "no variant has both a latency\nand a finished run yet", ha="center", va="center",
                transform=ax.transAxes, color="grey")
        ax.set_xticks([]), ax.set_yticks([])
        return
    for r in pts:
        base = r["variant"] == BASELINE
        x = row_latency(r)
        ax.errorbar(x, r["mAP50_95_mean"], yerr=r.get("mAP50_95_std") or 0.0, fmt="s" if base else "o",
                    color="black" if base else None, capsize=4, markersize=7)
        ax.annotate(f"{r['variant']} (n={r.get('n', 0)})", (x, r["mAP50_95_mean"]), textcoords="offset points",
                    xytext=(6, 6), fontsize=8)
    ax.set_xlabel("CPU latency, fp32, batch 1, fused (ms)")
    ax.set_ylabel("mAP@.5:.95 (mean ± std over seeds)")
    ax.set_title("Accuracy vs latency", fontsize=10)
    ax.grid(alpha=0.3)


def _draw_forest(ax: Any, rows: Sequence[dict]) -> None:
    """One line per variant with paired data: Δ mAP@.5:.95 and its interval, Δ mAP@.5 hollow, verdict at right."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator
    from matplotlib.transforms import blended_transform_factory

    forest = [r for r in rows if r["variant"] != BASELINE and paired_of(r)]
    ax.set_title(f"Paired Δ vs {BASELINE} ({ci_level(rows)} interval)", fontsize=10)
    if not forest:
        ax.text(0.5, 0.5, "no paired data yet", ha="center", va="center", transform=ax.transAxes, color="grey",
                fontsize=11)
        ax.set_xticks([]), ax.set_yticks([])
        return
    right = blended_transform_factory(ax.transAxes, ax.transData)
    ys = list(range(len(forest)))[::-1]  # the first variant on top
    for y, r in zip(ys, forest):
        a, b = paired_of(r), paired_of(r, "mAP50")
        c = VERDICT_COLORS.get(a["verdict"], VERDICT_COLORS["no detectable difference"])
        _interval(ax, y + 0.12, a, color=c, lw=2, markersize=7)
        if b:
            _interval(ax, y - 0.18, b, cap=5, color=c, mfc="white", markersize=6, lw=1, alpha=0.8)
        ax.text(1.02, y, a["verdict"], transform=right, color=c, va="center", fontsize=8, clip_on=False)
    ax.axvline(0, ls="--", color="black", lw=1)
    ax.set_yticks(ys, [r["variant"] for r in forest])
    ax.set_ylim(-0.7, len(forest) - 0.3)
    ax.set_xlabel("Δ = variant − baseline")
    ax.xaxis.set_major_locator(MaxNLocator(6))
    ax.grid(axis="x", alpha=0.3)
    handles = [Line2D([], [], marker="o", color="black", lw=2, label="Δ mAP@.5:.95"),
               Line2D([], [], marker="o", color="black", mfc="white", lw=1, label="Δ mAP@.5")]
    ax.legend(handles=handles, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)


def plot_ablation(rows: Sequence[dict], path: str | Path, title: str = "") -> Path | None:
    """One PNG, two panels: mAP@.5:.95 against CPU latency (left), forest plot of the paired deltas (right).

    Args:
        rows: the summary rows (:mod:`utils.ablation_report`).
        path: the PNG to write.
        title: figure title.

    Returns:
        ``path``, or None (a logged warning) when no variant has a latency and a finished run, nor paired data.
    """
    has_pts = any(row_latency(r) is not None and r.get("mAP50_95_mean") is not None for r in rows)
    n_forest = sum(1 for r in rows if r["variant"] != BASELINE and paired_of(r))
    if not has_pts and not n_forest:
        LOGGER.warning("WARNING: nothing to plot yet (no variant has both a latency and a finished run)")
        return None
    fig = new_figure((13.0, max(4.8, 2.2 + 0.5 * n_forest)))
    _draw_map_vs_latency(fig.add_subplot(1, 2, 1), rows)
    _draw_forest(fig.add_subplot(1, 2, 2), rows)
    if title:
        fig.suptitle(title, fontsize=11)
    path = Path(path)
    fig.savefig(path, dpi=150)
    return path


def plot_map_vs_latency(rows: Sequence[dict], path: str | Path, title: str = "") -> Path | None:
    """The former name of :func:`plot_ablation`, kept for existing callers."""
    return plot_ablation(rows, path, title)


# ---------------------------------------------------------------------------------------------------- sweep
def _draw_sweep_delta(ax: Any, sweep: Sequence[dict], x_of: dict, colors: dict) -> None:
    """Top panel: Δ mAP@.5:.95 per position and module (interval when paired; hollow mean Δ otherwise)."""
    from matplotlib.lines import Line2D

    unpaired = False
    for mod, c in colors.items():
        pts = []
        for r in (r for r in sweep if r["module"] == mod):
            d, x = paired_of(r), x_of[(mod, r["at"][0])]
            if d is not None:
                _interval(ax, x, d, vertical=True, color=c, markersize=6, lw=1.5)
                pts.append((x, d["delta"]))
            elif r.get("d_mAP50_95") is not None:
                ax.plot(x, r["d_mAP50_95"], "o", color=c, mfc="white", markersize=6)
                pts.append((x, r["d_mAP50_95"]))
                unpaired = True
        if pts:
            ax.plot(*zip(*pts), color=c, lw=1, alpha=0.35)
    ax.axhline(0, color="black", lw=1)
    ax.set_ylabel(f"Δ mAP@.5:.95 vs {BASELINE}\n(paired, {ci_level(sweep)} interval)")
    ax.grid(axis="y", alpha=0.3)
    handles = [Line2D([], [], marker="o", color=c, label=m) for m, c in colors.items()]
    if unpaired:
        handles.append(Line2D([], [], marker="o", ls="", color="grey", mfc="white", label="mean Δ, no paired data"))
    ax.legend(handles=handles, fontsize=8, loc="best")
    ax.tick_params(labelbottom=False)


def _draw_sweep_cost(ax: Any, sweep: Sequence[dict], x_of: dict, colors: dict, base: dict | None,
                     width: float) -> None:
    """Bottom panel: CPU latency per position and module, the baseline's as a dashed line; added params (bars)."""
    from matplotlib.patches import Patch

    twin = ax.twinx()
    ax.set_zorder(twin.get_zorder() + 1)  # markers above the bars of the twin axis
    ax.patch.set_visible(False)
    base_params = (base or {}).get("params")
    for mod, c in colors.items():
        rs = [r for r in sweep if r["module"] == mod]
        lat = [(x_of[(mod, r["at"][0])], row_latency(r)) for r in rs if row_latency(r) is not None]
        if lat:
            ax.plot(*zip(*lat), "o-", color=c, markersize=5, lw=1, label=f"{mod} CPU ms")
        if base_params is not None:
            added = [(x_of[(mod, r["at"][0])], (r["params"] - base_params) / 1e3) for r in rs
                     if r.get("params") is not None]
            if added:
                twin.bar(*zip(*added), width=width, color=c, alpha=0.2)
    if base is not None and row_latency(base) is not None:
        ax.axhline(row_latency(base), ls="--", color="black", lw=1, label=f"{BASELINE} CPU ms")
    ax.set_ylabel("CPU latency, fp32, batch 1 (ms)")
    twin.set_ylabel("params added over baseline (thousands)" if base_params is not None else "")
    if base_params is None:
        twin.set_yticks([])
    handles, labels = ax.get_legend_handles_labels()
    if base_params is not None:
        handles.append(Patch(color="grey", alpha=0.3, label="params added (bars, right axis)"))
    ax.legend(handles=handles, fontsize=8, loc="best")
    ax.grid(axis="y", alpha=0.3)


def plot_sweep(rows: Sequence[dict], path: str | Path, title: str = "") -> Path | None:
    """The placement sweep: Δ mAP@.5:.95 (top) and CPU latency with added params (bottom) per insertion point.

    Only rows with a ``module`` at a single ``at`` position are drawn; the positions form a categorical x axis in
    ascending order, labelled with the layer index and ``stage``; modules are dodged side by side.

    Args:
        rows: the summary rows (:mod:`utils.ablation_report`); the baseline row gives the reference lines.
        path: the PNG to write.
        title: figure title.

    Returns:
        ``path``, or None (a logged warning) when no row is a sweep row.
    """
    sweep = sweep_rows(rows)
    if not sweep:
        LOGGER.warning("WARNING: no placement-sweep rows to plot (a module at a single position)")
        return None
    positions = sorted({r["at"][0] for r in sweep})
    stages = {r["at"][0]: r.get("stage") for r in sweep}
    modules = list(dict.fromkeys(r["module"] for r in sweep))
    colors = {m: f"C{i % 10}" for i, m in enumerate(modules)}
    step = min(0.15, 0.6 / len(modules))
    x_of = {(m, p): positions.index(p) + (i - (len(modules) - 1) / 2) * step for i, m in enumerate(modules)
            for p in positions}
    base = next((r for r in rows if r["variant"] == BASELINE), None)

    fig = new_figure((max(6.4, 2.5 + 1.2 * len(positions)), 7.6))
    top = fig.add_subplot(2, 1, 1)
    bottom = fig.add_subplot(2, 1, 2, sharex=top)
    _draw_sweep_delta(top, sweep, x_of, colors)
    _draw_sweep_cost(bottom, sweep, x_of, colors, base, width=step * 0.9)
    bottom.set_xticks(range(len(positions)), [f"{p}\n{stages[p]}" if stages[p] else str(p) for p in positions])
    bottom.set_xlim(-0.6, len(positions) - 0.4)
    bottom.set_xlabel("module inserted after layer")
    top.set_title(title or "Placement sweep", fontsize=11)
    path = Path(path)
    fig.savefig(path, dpi=150)
    return path
