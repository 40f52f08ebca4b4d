"""ablate.py: variant yamls, best-epoch metrics, table math, outputs, and resuming after a crash (fake training)."""

from __future__ import annotations

import csv
import math
import shlex
import sys
from pathlib import Path

import pytest
import torch
import yaml

import ablate
from models.yolo import Model
from tests.conftest import ROOT
from utils.ablation import best_epoch_metrics, mean_std, summarize
from utils.ablation_report import markdown_table, write_csv
from utils.loggers import csv_header, csv_row
from utils.profiling import interleaved_median_ms, median_ms

MODELS = ROOT / "models"


def _layers(f: Path) -> list:
    d = yaml.safe_load(Path(f).read_text())
    return d["backbone"] + d["head"]


def _write_results(f: Path, rows: list[tuple[int, float, float]], append: bool = False) -> None:
    """results.csv rows in train.py's exact format: (epoch, mAP@.5, mAP@.5:.95), P = R = 0.5, losses 0.1."""
    f.parent.mkdir(parents=True, exist_ok=True)
    with open(f, "a" if append else "w") as fh:
        if not append or not f.stat().st_size:
            fh.write(csv_header() + "\n")
        for e, m50, m in rows:
            fh.write(csv_row(e, [0.1, 0.1, 0.1, 0.5, 0.5, m50, m, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01]) + "\n")


# ----------------------------------------------------------------------------------------------- variant yamls
def test_variants_match_ready_made_yamls_and_build(tmp_path):
    specs = ablate.variant_specs(["NAMAttention", "SimAM", "CoTAttention"], [23], None)
    cfgs = ablate.write_cfgs(MODELS / "yolov5n.yaml", specs, tmp_path)
    assert list(cfgs) == ["baseline", "NAMAttention", "SimAM", "CoTAttention"]
    assert cfgs["baseline"].read_text() == (MODELS / "yolov5n.yaml").read_text()
    # --at 23 = after layer 23: the same model as the hand-written yamls (attention at 24, Detect reads 24)
    assert _layers(cfgs["NAMAttention"]) == _layers(MODELS / "yolov5n-NAM.yaml")
    assert _layers(cfgs["SimAM"]) == _layers(MODELS / "yolov5n-SimAM.yaml")
    for name, f in list(cfgs.items())[1:]:
        m = Model(f)
        assert type(m.model[24]).__name__ == name and m.model[-1].f == [17, 20, 24]
    with pytest.raises(SystemExit, match="different model"):  # a resumed ablation must not change its models
        ablate.write_cfgs(MODELS / "yolov5n.yaml", ablate.variant_specs(["SimAM"], [20], None), tmp_path)


def test_several_insertion_points_and_bad_index(tmp_path):
    f = ablate.write_cfgs(MODELS / "yolov5n.yaml", ablate.variant_specs(["SimAM"], [20, 17], None), tmp_path)
    f = f["SimAM"]
    rows = _layers(f)
    assert [r[2] for r in rows].count("SimAM") == 2 and rows[18][2] == "SimAM" and rows[22][2] == "SimAM"
    assert rows[-1][0] == [18, 22, 25]  # Detect reads both attention layers and the shifted P5 output
    assert Model(f).model[-1].f == [18, 22, 25] and rows[23][0] == -1  # P5 conv reads the P4 attention
    with pytest.raises(ValueError, match="out of range"):
        ablate.write_cfgs(MODELS / "yolov5n.yaml", ablate.variant_specs(["SimAM"], [24], None),  # 24 is Detect
                          tmp_path / "x")


# ----------------------------------------------------------------------------------------------- metrics, table
def test_best_epoch_is_the_last_max_fitness_row_and_resume_duplicates_resolve(tmp_path):
    f = tmp_path / "results.csv"
    _write_results(f, [(0, 0.10, 0.02), (1, 0.30, 0.05), (2, 0.20, 0.04)])
    m = best_epoch_metrics(f)
    assert m["epoch"] == 1 and m["epochs"] == 3 and m["mAP50"] == 0.3 and m["mAP50_95"] == 0.05
    assert m["fitness"] == pytest.approx(0.1 * 0.3 + 0.9 * 0.05) and m["P"] == 0.5
    _write_results(f, [(2, 0.30, 0.05), (3, 0.01, 0.01)], append=True)  # epoch 2 redone after a resume: a tie
    with open(f, "a") as fh:
        fh.write("   4,  0.1,")  # a row cut short by a kill
    m = best_epoch_metrics(f)
    assert m["epoch"] == 2 and m["epochs"] == 4  # the later row of a tie wins (train.py rewrites best.pt)
    assert best_epoch_metrics(tmp_path / "missing.csv") is None


def test_mean_std_summary_deltas_markdown_and_csv(tmp_path):
    assert mean_std([]) == (None, None) and mean_std([0.3]) == (0.3, None)
    m, s = mean_std([0.1, 0.2, 0.6])
    assert m == pytest.approx(0.3) and s == pytest.approx(math.sqrt(0.07))  # sample std (n - 1)

    def met(m50, m):
        return {"P": 0.5, "R": 0.4, "mAP50": m50, "mAP50_95": m, "epoch": 2}

    variants = {"baseline": {"cfg": "baseline.yaml", "params": 1872157, "gflops": 1.05, "latency_ms": 10.0},
                "SimAM": {"cfg": "SimAM.yaml", "params": 1872157, "gflops": 1.06, "latency_ms": 11.0},
                "CoTAttention": {"cfg": "CoTAttention.yaml", "params": 2000000, "gflops": 1.2, "latency_ms": 20.0}}
    runs = {"baseline_s0": {"status": "done", "metrics": met(0.30, 0.10)},
            "baseline_s1": {"status": "done", "metrics": met(0.40, 0.11)},
            "SimAM_s0": {"status": "done", "metrics": met(0.50, 0.14)},
            "SimAM_s1": {"status": "done", "metrics": met(0.60, 0.12)},
            "SimAM_s7": {"status": "done", "metrics": met(0.90, 0.90)},  # a seed outside this ablation: ignored
            "CoTAttention_s0": {"status": "failed", "metrics": None},
            "CoTAttention_s1": {"status": "done", "metrics": met(0.2, 0.08)}}
    rows = summarize(variants, runs, [0, 1])
    b, s, c = rows
    assert (b["n"], s["n"], c["n"]) == (2, 2, 1) and c["seeds"] == [1]
    assert b["mAP50_95_mean"] == pytest.approx(0.105) and b["mAP50_95_std"] == pytest.approx(0.01 / math.sqrt(2))
    assert s["d_mAP50_95"] == pytest.approx(0.025) and s["d_mAP50"] == pytest.approx(0.2)
    assert c["mAP50_95_std"] is None and c["d_mAP50_95"] == pytest.approx(0.08 - 0.105)
    assert b["d_mAP50_95"] == 0.0

    md = markdown_table(rows).splitlines()
    assert md[0].startswith("| variant | params | GFLOPs | latency ms | mAP@.5 | mAP@.5:.95 | Δ mAP@.5:.95 |")
    assert md[2] == "| baseline | 1,872,157 | 1.05 | 10.0 | 0.3500 ± 0.0707 | 0.1050 ± 0.0071 | — | 2 |"
    assert md[3] == "| SimAM | 1,872,157 | 1.06 | 11.0 | 0.5500 ± 0.0707 | 0.1300 ± 0.0141 | +0.0250 | 2 |"
    assert md[4] == "| CoTAttention | 2,000,000 | 1.20 | 20.0 | 0.2000 | 0.0800 | -0.0250 | 1 |"

    with open(write_csv(rows, [0, 1], tmp_path / "a.csv")) as f:
        table = list(csv.DictReader(f))
    assert [r["variant"] for r in table] == ["baseline", "SimAM", "CoTAttention"]
    assert float(table[1]["mAP50_95_mean"]) == pytest.approx(0.13) and float(table[1]["delta_mAP50_95"]) == \
        pytest.approx(0.025)
    assert table[1]["mAP50_95_s0"] == "0.14" and table[1]["mAP50_s1"] == "0.6" and table[1]["best_epoch_s0"] == "2"
    assert table[2]["mAP50_95_s0"] == "" and table[2]["mAP50_95_std"] == "" and table[2]["n_seeds"] == "1"


def test_median_ms_and_interleaved_rounds():
    calls = []
    assert median_ms(lambda: calls.append(1), warmup=3, runs=5) >= 0 and len(calls) == 8
    with pytest.raises(ValueError):
        median_ms(lambda: None, runs=0)
    order = []
    out = interleaved_median_ms({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, warmup=1, runs=2,
                                rounds=4, pause=0)
    assert set(out) == {"a", "b"} and all(v >= 0 for v in out.values())
    assert order.count("a") == order.count("b") == 2 + 4 * (2 + 2)  # warm-up (1 + 1) + rounds x (2 warm + 2 timed)
    firsts = {order[4 + 8 * r] for r in range(4)}  # who went first in each round: shuffled, not fixed
    assert firsts == {"a", "b"}


# ----------------------------------------------------------------------------------------------- resume (fake train)
class Crash(BaseException):
    """Stands for the ablation being killed while a run trains."""


class FakeTrain:
    """Replaces the train.py subprocess: writes results.csv and last.pt like train.py, per-run behaviours.

    Behaviours: ``ok``; ``fail`` (exit 1 after one results row, no checkpoint); ``crash_mid`` (epoch 0 done,
    last.pt at epoch 0, then the ablation is killed); ``crash_end`` (training finished and stripped, then killed).
    """

    E = 3
    FINAL = {"baseline": 0.10, "SimAM": 0.12}

    def __init__(self, behaviour: dict[str, str]):
        self.behaviour, self.calls = behaviour, []

    def _finish(self, run_dir: Path, variant: str, seed: int, start: int, append: bool, last_epoch: int = -1):
        m = self.FINAL[variant] + 0.01 * seed
        end = self.E if last_epoch == -1 else last_epoch + 1
        _write_results(run_dir / "results.csv", [(e, 2 * m * (e + 1) / self.E, m * (e + 1) / self.E)
                                                 for e in range(start, end)], append=append)
        (run_dir / "weights").mkdir(parents=True, exist_ok=True)
        torch.save({"epoch": last_epoch, "model": None}, run_dir / "weights" / "last.pt")

    def __call__(self, cmd: list[str], log: Path) -> int:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(shlex.join(cmd))
        if "--resume" in cmd:
            last = Path(cmd[cmd.index("--resume") + 1])
            run_dir = last.parent.parent
            key = run_dir.name
            self.calls.append(("resume", key))
            variant, seed = key.rsplit("_s", 1)
            start = torch.load(last)["epoch"] + 1
            self._finish(run_dir, variant, int(seed), start, append=True)
            return 0
        a = {k: cmd[cmd.index(k) + 1] for k in ("--project", "--name", "--seed", "--cfg", "--epochs", "--img")}
        key = a["--name"]
        run_dir = Path(a["--project"]) / key
        assert not run_dir.exists(), "a fresh run must start in a clean folder"
        assert int(a["--epochs"]) == self.E and a["--img"] == "64" and "--exist-ok" in cmd
        self.calls.append(("train", key))
        variant, seed = Path(a["--cfg"]).stem, int(a["--seed"])
        assert key == f"{variant}_s{seed}"
        todo = self.behaviour.pop(key, "ok")
        if todo == "fail":
            _write_results(run_dir / "results.csv", [(0, 0.9, 0.9)])  # stale row that must not survive a retry
            return 1
        if todo == "crash_mid":
            self._finish(run_dir, variant, seed, 0, append=False, last_epoch=0)
            raise Crash(key)
        self._finish(run_dir, variant, seed, 0, append=False)
        if todo == "crash_end":
            raise Crash(key)
        return 0


def test_rerun_after_crashes_trains_only_unfinished_runs(tmp_path, monkeypatch, yolo_log):
    measured = []

    def fake_measure(cfgs, img, nc, warmup, runs, threads, rounds):
        out = {}
        for v, cfg in cfgs.items():
            measured.append(cfg.stem)
            other = cfg.stem != "baseline"
            out[v] = {"params": 100 + 10 * other, "gflops": 1.0, "latency_ms": 5.0 + other,
                      "latency_at": {"img": img, "threads": threads, "warmup": warmup, "runs": runs, "rounds": rounds,
                                     "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}}
        return out

    fake = FakeTrain({"SimAM_s0": "fail", "baseline_s1": "crash_end", "SimAM_s1": "crash_mid"})
    monkeypatch.setattr(ablate, "train_subprocess", fake)
    monkeypatch.setattr(ablate, "measure", fake_measure)
    monkeypatch.setattr(ablate, "layer_channels", lambda cfg, idx: {i: 256 for i in idx})  # yolov5n: P5 has 256
    kw = dict(modules=["SimAM"], at=[23], epochs=3, imgsz=64, seeds=[0, 1], project=str(tmp_path), name="abl",
              workers=0, device="cpu", lat_runs=1, lat_warmup=0, lat_rounds=1, threads=1)
    d = tmp_path / "abl"

    with pytest.raises(Crash):  # 1: baseline_s0 ok, SimAM_s0 fails (reported, goes on), killed after baseline_s1
        ablate.run(**kw)
    assert fake.calls == [("train", "baseline_s0"), ("train", "SimAM_s0"), ("train", "baseline_s1")]
    assert measured == ["baseline", "SimAM"]
    assert any("SimAM_s0 failed (exit code 1); see " + str(d / "logs" / "SimAM_s0.log") in x for x in yolo_log)
    assert not (d / ".lock").exists()

    fake.calls.clear()
    with pytest.raises(Crash):  # 2: failed SimAM_s0 retried from scratch, baseline_s1 collected, killed in SimAM_s1
        ablate.run(**kw)
    assert fake.calls == [("train", "SimAM_s0"), ("train", "SimAM_s1")]
    assert any("baseline_s1: training had finished before the interruption" in x for x in yolo_log)

    fake.calls.clear()
    rows, failed = ablate.run(**kw)  # 3: SimAM_s1 resumes from its last.pt; nothing else runs
    assert fake.calls == [("resume", "SimAM_s1")] and failed == [] and measured == ["baseline", "SimAM"]
    assert any("Finished runs kept, not retrained: baseline_s0, SimAM_s0, baseline_s1" in x for x in yolo_log)

    base, simam = rows
    assert base["n"] == simam["n"] == 2
    assert base["mAP50_95_mean"] == pytest.approx(0.105) and simam["d_mAP50_95"] == pytest.approx(0.02)
    assert simam["per_seed"][0]["mAP50_95"] == pytest.approx(0.12)  # not the stale 0.9 of the failed attempt
    assert simam["per_seed"][1]["epoch"] == 2 and simam["latency_ms"] == 6.0 and simam["params"] == 110
    for f in ("ablation.md", "ablation.csv", "ablation.png", "ablation.json", "cfgs/SimAM.yaml"):
        assert (d / f).is_file(), f
    md = (d / "ablation.md").read_text()
    assert "| SimAM | 110 | 1.00 | 6.0 | 0.2500 ± 0.0141 | 0.1250 ± 0.0071 | +0.0200 | 2 |" in md

    fake.calls.clear()
    ablate.run(**kw, remeasure=True)  # everything finished: nothing trains, latency is re-timed
    assert fake.calls == [] and measured == ["baseline", "SimAM"] * 2
    with pytest.raises(SystemExit, match="other settings"):
        ablate.run(**{**kw, "epochs": 5})


# ----------------------------------------------------------------------------------------------- end to end
def test_train_command_line_is_understood_by_train_py(monkeypatch, tmp_path):
    import train

    opt = ablate.parse_opt(True)
    for k, v in dict(data="d.yaml", hyp="h.yaml", weights="", epochs=3, imgsz=320, batch_size=8, workers=2,
                     device="cpu", train_args="--cos-lr --patience 5").items():
        setattr(opt, k, v)
    cmd = ablate.train_args(opt, tmp_path / "cfgs" / "SimAM.yaml", 1, tmp_path / "runs", "SimAM_s1")
    assert Path(cmd[1]) == ROOT / "train.py"
    monkeypatch.setattr(sys, "argv", cmd[1:])
    t = train.parse_opt()
    assert (t.cfg, t.weights, t.data, t.hyp) == (str(tmp_path / "cfgs" / "SimAM.yaml"), "", "d.yaml", "h.yaml")
    assert (t.epochs, t.imgsz, t.batch_size, t.workers, t.seed, t.device) == (3, 320, 8, 2, 1, "cpu")
    assert (t.project, t.name, t.exist_ok, t.cos_lr, t.patience) == (str(tmp_path / "runs"), "SimAM_s1", True, True, 5)


def test_seeds_is_a_count_or_a_list():
    assert ablate.seed_list([2]) == [0, 1]  # the issue's `--seeds 2`
    assert ablate.seed_list([0, 5]) == [0, 5] and ablate.seed_list(3) == [0, 1, 2]
    with pytest.raises(SystemExit, match="number of seeds"):
        ablate.seed_list([0])
