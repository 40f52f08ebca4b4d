"""utils.ablation_report and utils.ablation_plots: tables, CSV, the full report and the two figures (fake rows)."""

from __future__ import annotations

import csv

import pytest

from utils.ablation import BASELINE
from utils.ablation_plots import plot_ablation, plot_map_vs_latency, plot_sweep
from utils.ablation_report import (ReportInfo, latency_table, paired_table, per_seed_table, sweep_table, write_csv,
                                   write_report)

SEEDS = [0, 1]
SECTIONS = ["# Ablation", "## Command", "## Code and environment", "## Data", "## Training", "## Results",
            "## Paired comparison", "## Placement sweep", "## Latency", "## Per seed", "## Plots",
            "## Hyperparameters"]


def _d(metric: str, delta: float, lo: float, hi: float, win: float, seeds: int = 2, per: int = 1000) -> dict:
    """A ``PairedDelta.to_dict()`` as utils.bootstrap writes it."""
    verdict = "better" if lo > 0 else "worse" if hi < 0 else "no detectable difference"
    return {"metric": metric, "delta": delta, "lo": lo, "hi": hi, "win": win, "n_resamples": seeds * per,
            "n_seeds": seeds, "n_images": 128, "level": 0.95, "verdict": verdict}


def _row(variant: str, m: float, params: int, cpu: float, gpu: tuple | None = None, paired: dict | None = None,
         module: str | None = None, at: tuple = (), stage: str | None = None, base: float = 0.30) -> dict:
    """A summary row as utils.ablation.summarize and ablate.py make it; seed 1 only for the baseline and SE."""
    per_seed = {0: {"epoch": 7, "epochs": 10, "P": 0.6, "R": 0.5, "mAP50": 2 * m, "mAP50_95": m, "fitness": m}}
    if variant in (BASELINE, "SE"):
        per_seed[1] = {"epoch": 9, "epochs": 10, "P": 0.62, "R": 0.52, "mAP50": 2 * m + 0.02, "mAP50_95": m + 0.01,
                       "fitness": m}
    row = {"variant": variant, "cfg": f"{variant}.yaml", "params": params, "gflops": 4.5, "latency_ms": cpu,
           "n": len(per_seed), "seeds": sorted(per_seed), "per_seed": per_seed,
           "latency": {"cpu_fp32_b1": cpu, "gpu_fp16_b1": gpu[0] if gpu else None,
                       "gpu_fp16_b32": gpu[1] if gpu else None},
           "paired": paired, "module": module, "at": list(at), "stage": stage}
    for k, v in (("mAP50", 2 * m), ("mAP50_95", m), ("P", 0.6), ("R", 0.5)):
        row[f"{k}_mean"], row[f"{k}_std"] = v, None
        row[f"d_{k}"] = v - (2 * base if k == "mAP50" else base if k == "mAP50_95" else v)
    return row


@pytest.fixture
def rows() -> list[dict]:
    se = {"mAP50_95": _d("mAP50_95", 0.0123, 0.0040, 0.0210, 0.992), "mAP50": _d("mAP50", 0.02, -0.001, 0.041, 0.968)}
    worse = {"mAP50_95": _d("mAP50_95", -0.02, -0.03, -0.01, 0.01), "mAP50": _d("mAP50", -0.03, -0.05, -0.01, 0.02)}
    same = {"mAP50_95": _d("mAP50_95", 0.004, -0.006, 0.013, 0.71), "mAP50": _d("mAP50", 0.001, -0.01, 0.012, 0.55)}
    return [_row(BASELINE, 0.30, 1_872_157, 50.0, gpu=(2.5, 20.0)),
            _row("SE", 0.31, 1_900_000, 52.5, gpu=(2.6, 21.25), paired=se, module="SE", at=(17, 20, 23)),
            _row("CoT", 0.29, 2_100_000, 80.0, module="CoTAttention", at=(23,), stage="P5 head"),
            _row("SimAM@9", 0.28, 1_872_157, 55.0, paired=worse, module="SimAM", at=(9,), stage="P5 backbone"),
            _row("SimAM@4", 0.305, 1_872_157, 60.0, paired=same, module="SimAM", at=(4,), stage="P3 backbone"),
            _row("SimAM@6", 0.30, 1_872_157, 57.0, module="SimAM", at=(6,), stage="P4 backbone")]


def _info(**kw) -> ReportInfo:
    base = dict(command="python ablate.py --modules SE SimAM --data 'my data.yaml' --seeds 2", code_version="abc1234",
                data={"yaml": "data/voc.yaml", "nc": 2, "names": ["cat", "dog"], "train_images": 1000,
                      "val_images": 128, "val_labels": {"cat": 300, "dog": 211}},
                hyp={"lr0": 0.01, "momentum": 0.937}, seeds=SEEDS, settings=["10 epochs, img 320, batch 16"],
                environment={"python": "3.11.7", "torch": "2.2.0"}, plots=["ablation.png", "sweep.png"],
                nondeterministic_ops={"SE_s0": [], "SE_s1": []}, method="Paired bootstrap over 128 images.",
                sweep=True)
    return ReportInfo(**{**base, **kw})


# ---------------------------------------------------------------------------------------------------- tables
def test_paired_table_lines(rows):
    lines = paired_table(rows).splitlines()
    assert lines[0] == ("| variant | Δ mAP@.5:.95 [95% CI] | wins | Δ mAP@.5 [95% CI] | wins | verdict | "
                        "pairs × resamples |")
    assert lines[2] == ("| SE | +0.0123 [+0.0040, +0.0210] | 99.2% | +0.0200 [-0.0010, +0.0410] | 96.8% | better | "
                        "2 × 1000 |")
    assert lines[3] == "| CoT | n/a | n/a | n/a | n/a | n/a | n/a |"  # no paired data: n/a, not left out
    assert lines[4].endswith("| worse | 2 × 1000 |") and "no detectable difference" in lines[5]
    assert not any(x.startswith(f"| {BASELINE} |") for x in lines)


def test_latency_table_writes_na_without_cuda(rows):
    lines = latency_table(rows).splitlines()
    assert lines[0] == "| variant | params | GFLOPs | CPU fp32 b1 ms | GPU fp16 b1 ms | GPU fp16 b32 ms |"
    assert lines[2] == "| baseline | 1,872,157 | 4.50 | 50.0 | 2.50 | 20.00 |"
    assert lines[4] == "| CoT | 2,100,000 | 4.50 | 80.0 | n/a | n/a |"
    old = {k: v for k, v in rows[0].items() if k not in ("latency", "paired", "module", "at", "stage")}
    assert latency_table([old]).splitlines()[2] == "| baseline | 1,872,157 | 4.50 | 50.0 | n/a | n/a |"  # an old row


def test_sweep_table_order_and_stage(rows):
    lines = sweep_table(rows).splitlines()[2:]
    assert [x.split(" | ")[:3] for x in lines] == [["| CoTAttention", "23", "P5 head"], ["| SimAM", "4", "P3 backbone"],
                                                   ["| SimAM", "6", "P4 backbone"], ["| SimAM", "9", "P5 backbone"]]
    assert lines[1].endswith("| +0.0040 [-0.0060, +0.0130] | no detectable difference |")
    assert lines[2].endswith("| +0.0000 | n/a (no paired data) |")  # mean Δ, no interval
    assert "SE" not in sweep_table(rows)  # several positions: not a sweep row


def test_per_seed_table(rows):
    lines = per_seed_table(rows, SEEDS).splitlines()
    assert lines[2] == "| baseline | 0 | 7 of 10 | 0.6000 | 0.5000 | 0.6000 | 0.3000 | — |  |"
    assert lines[3] == "| baseline | 1 | 9 of 10 | 0.6200 | 0.5200 | 0.6200 | 0.3100 | — |  |"
    assert lines[7] == "| CoT | 1 | not finished | n/a | n/a | n/a | n/a | n/a | |" and len(lines) == 2 + 2 * len(rows)
    rows[1]["paired_per_seed"] = {1: {"mAP50_95": {"delta": 0.01, "lo": 0.002, "hi": 0.02, "verdict": "better"}}}
    line = per_seed_table(rows, SEEDS).splitlines()[5]
    assert line.startswith("| SE | 1 |") and line.endswith("| +0.0100 [+0.0020, +0.0200] | better |")


# ---------------------------------------------------------------------------------------------------- files
def test_report_sections_command_and_hyp(rows, tmp_path):
    text = write_report(tmp_path / "report.md", rows, _info()).read_text()
    heads = [x for x in text.splitlines() if x.startswith("#")]
    assert heads == SECTIONS
    assert "```sh\npython ablate.py --modules SE SimAM --data 'my data.yaml' --seeds 2\n```" in text
    assert "```yaml\nlr0: 0.01\nmomentum: 0.937\n```" in text
    summary = text.split("## Command")[0]
    assert "better: SE (+0.0123)" in summary and "worse: SimAM@9 (-0.0200)" in summary
    assert "no detectable difference: SimAM@4 (+0.0040)" in summary and "CoT, SimAM@6" in summary
    assert "- code version: abc1234" in text and "- torch: 2.2.0" in text and "| dog | 211 |" in text
    assert "- images: 1,000 train, 128 val" in text and "warned about: none" in text
    assert "![ablation](ablation.png)" in text and "| SE | +0.0123 [+0.0040, +0.0210] | 99.2%" in text

    info = _info(sweep=False, nondeterministic_ops={"SE_s0": ["aten::index_put_"], "SE_s1": []},
                 data={"yaml": None, "nc": None})
    text = write_report(tmp_path / "r2.md", rows, info).read_text()
    assert [x for x in text.splitlines() if x.startswith("#")] == [s for s in SECTIONS if s != "## Placement sweep"]
    assert "  - SE_s0: aten::index_put_" in text and "SE_s1" not in text
    assert "- dataset yaml: n/a" in text and "- validation labels per class: n/a" in text


def test_csv_new_columns(rows, tmp_path):
    with open(write_csv(rows, SEEDS, tmp_path / "a.csv")) as f:
        table = {r["variant"]: r for r in csv.DictReader(f)}
    se, cot = table["SE"], table["CoT"]
    assert se["latency_cpu_fp32_b1_ms"] == "52.5" and se["latency_gpu_fp16_b32_ms"] == "21.25"
    assert cot["latency_gpu_fp16_b1_ms"] == "" and cot["latency_gpu_fp16_b32_ms"] == ""
    assert (se["paired_mAP50_95_delta"], se["paired_mAP50_95_lo"], se["paired_mAP50_95_hi"],
            se["paired_mAP50_95_win"]) == ("0.0123", "0.004", "0.021", "0.992")
    assert (se["paired_mAP50_delta"], se["paired_mAP50_lo"], se["paired_mAP50_win"]) == ("0.02", "-0.001", "0.968")
    assert se["verdict"] == "better" and se["paired_seeds"] == "2" and se["paired_resamples"] == "2000"
    assert table["SimAM@9"]["verdict"] == "worse" and cot["verdict"] == "" and cot["paired_mAP50_95_lo"] == ""
    assert se["mAP50_95_s1"] == "0.32" and se["best_epoch_s1"] == "9" and cot["best_epoch_s1"] == ""


# ---------------------------------------------------------------------------------------------------- plots
def test_plots_write_png_or_warn(rows, tmp_path, yolo_log):
    for f in (plot_ablation(rows, tmp_path / "a.png", "test"), plot_sweep(rows, tmp_path / "s.png"),
              plot_ablation([r for r in rows if not r["paired"]], tmp_path / "b.png")):  # "no paired data yet"
        assert f is not None and f.stat().st_size > 0 and f.read_bytes()[:4] == b"\x89PNG"
    assert plot_ablation([], tmp_path / "x.png") is None and plot_sweep(rows[:2], tmp_path / "y.png") is None
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "y.png").exists()
    assert sum("WARNING" in x for x in yolo_log) == 2


def test_old_names_still_import_from_utils_ablation():
    from utils import ablation, ablation_report
    from utils.ablation import markdown_table, plot_map_vs_latency as old_plot, write_csv as old_csv, write_markdown

    assert old_plot is plot_map_vs_latency and old_csv is write_csv
    assert markdown_table is ablation_report.markdown_table and write_markdown is ablation_report.write_markdown
    with pytest.raises(AttributeError, match="no_such_name"):
        getattr(ablation, "no_such_name")
