"""ablate.py --sweep-at: one variant per position, stages, exact weight transfer, and a real tiny sweep."""

from __future__ import annotations

import csv
import json
import shlex
import subprocess
import sys

import torch
import yaml

import ablate
from models.transfer import transfer_state_dict
from models.yolo import Model
from tests.conftest import ROOT

MODELS = ROOT / "models"


def test_sweep_variants_are_one_module_per_position_with_stage_labels(tmp_path):
    specs = ablate.variant_specs(["SimAM", "NAMAttention"], [23], [9, 2, 9, 17])
    assert specs == {"SimAM@9": ("SimAM", [9]), "SimAM@2": ("SimAM", [2]), "SimAM@17": ("SimAM", [17]),
                     "NAMAttention@9": ("NAMAttention", [9]), "NAMAttention@2": ("NAMAttention", [2]),
                     "NAMAttention@17": ("NAMAttention", [17])}
    cfgs = ablate.write_cfgs(MODELS / "yolov5n.yaml", specs, tmp_path)
    m = Model(cfgs["SimAM@9"])
    assert type(m.model[10]).__name__ == "SimAM" and m.model[-1].f == [18, 21, 24]
    stages = ablate.layer_stages(MODELS / "yolov5n.yaml", [2, 4, 6, 9, 13, 17, 20, 23])
    assert stages == {2: "P2 backbone", 4: "P3 backbone", 6: "P4 backbone", 9: "P5 backbone", 13: "P4 neck",
                      17: "P3 neck", 20: "P4 neck", 23: "P5 neck"}


def test_every_sweep_variant_receives_all_pretrained_weights(tmp_path):
    """--weights: each position's variant gets every tensor of the base checkpoint (the exact transfer)."""
    torch.manual_seed(0)
    base = Model(MODELS / "yolov5n.yaml")
    src = base.state_dict()
    cfgs = ablate.write_cfgs(MODELS / "yolov5n.yaml", ablate.variant_specs(["NAMAttention"], [], [2, 9, 13, 23]),
                             tmp_path)
    for v, f in cfgs.items():
        dst = Model(f)
        csd, _ = transfer_state_dict(src, base.yaml, dst.state_dict(), dst.yaml)
        assert len(csd) == len(src), v  # nothing of the base is lost, whatever the position
        p = int(v.split("@")[1]) if "@" in v else None
        if p is not None:  # the layer after the insertion got the base's next layer's weights
            k = f"model.{p + 2}.conv.weight" if f"model.{p + 2}.conv.weight" in csd else None
            if k:
                assert torch.equal(csd[k], src[f"model.{p + 1}.conv.weight"])


def test_real_tiny_sweep_writes_report_table_and_plot(tmp_path):
    """Three real train.py runs (baseline + SimAM after 2 positions, 1 epoch, 64 px): the sweep table and plot, the
    paired columns, the report's sections, then a rerun that trains nothing."""
    from utils.synthetic import generate_dataset

    ds = generate_dataset(tmp_path / "ds", train=8, val=4, img_size=64, size_jitter=0, max_objects=2)
    (tmp_path / "ds.yaml").write_text(yaml.safe_dump({"path": str(ds), "train": "images/train", "val": "images/val",
                                                      "nc": 5, "names": ["circle", "square", "triangle", "star",
                                                                         "ellipse"]}))
    cmd = [sys.executable, "ablate.py", "--modules", "SimAM", "--sweep-at", "2", "23", "--data",
           str(tmp_path / "ds.yaml"), "--epochs", "1", "--img", "64", "--batch", "4", "--workers", "0", "--device",
           "cpu", "--seeds", "1", "--project", str(tmp_path), "--name", "sw", "--lat-runs", "2", "--lat-warmup", "1",
           "--lat-rounds", "1", "--threads", "1", "--bootstrap", "50"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    d = tmp_path / "sw"
    with open(d / "ablation.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["variant"] for r in table] == ["baseline", "SimAM@2", "SimAM@23"]
    assert all(r["latency_gpu_fp16_b1_ms"] == "" for r in table) or torch.cuda.is_available()
    assert all(int(r["params"]) == int(table[0]["params"]) > 0 for r in table)  # SimAM has no parameters
    assert all(float(r["gflops"]) > float(table[0]["gflops"]) for r in table[1:]) and float(table[0]["latency_ms"]) > 0
    assert all(r["n_seeds"] == "1" and r["paired_seeds"] in ("", "1") for r in table)
    assert "| SimAM@23 |" in out.stdout and "Δ mAP@.5:.95 [95% CI]" in out.stdout
    md = (d / "ablation.md").read_text()
    for head in ("## Command", "## Data", "## Paired comparison", "## Placement sweep", "## Latency", "## Plots"):
        assert head in md, head
    sweep = md.split("## Placement sweep")[1].split("\n## ")[0]
    lines = [x for x in sweep.splitlines() if x.startswith("| SimAM")]
    assert [x.split("|")[2].strip() for x in lines] == ["2", "23"]
    assert [x.split("|")[3].strip() for x in lines] == ["P2 backbone", "P5 neck"]
    assert (d / "sweep.png").stat().st_size > 10_000 and "![" in md and "sweep.png" in md
    for v in ("baseline", "SimAM@2"):
        assert (d / "runs" / f"{v}_s0" / "weights" / "best.pt").is_file() and (d / "logs" / f"{v}_s0.log").is_file()
        assert (d / "runs" / f"{v}_s0" / "records" / "best.npz").is_file()
        assert json.loads((d / "runs" / f"{v}_s0" / "determinism.json").read_text())["flags"]["warn_only"]
    state = json.loads((d / "ablation.json").read_text())
    assert state["settings"]["sweep_at"] == [2, 23] and state["settings"]["deterministic"] is True
    out2 = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)  # rerun: nothing to do
    assert out2.returncode == 0 and "Finished runs kept, not retrained: baseline_s0, SimAM@2_s0" in out2.stderr


def test_report_command_line_reproduces_the_options(tiny_data):
    from utils.ablation_info import report_info

    argv = ["--modules", "SimAM", "--sweep-at", "2", "6", "--seeds", "3", "--no-deterministic", "--img", "64",
            "--bootstrap", "50", "--data", str(tiny_data), "--train-args=--cos-lr"]
    parser = ablate.build_parser()
    opt = parser.parse_args(argv)
    ablate.check_options(opt)
    assert opt.seeds == [0, 1, 2]
    state = {"variants": {"baseline": {"latency_at": {"img": 64, "threads": 1, "warmup": 1, "runs": 2, "rounds": 1}}},
             "runs": {}}
    info = report_info(opt, state, [], "swept", parser, ROOT)
    cmd = info.command.split()
    assert cmd[:2] == ["python", "ablate.py"] and "--seeds 3" in info.command and "--no-deterministic" in cmd
    again = parser.parse_args(shlex.split(info.command)[2:])
    ablate.check_options(again)
    assert vars(again) == vars(opt)
    assert info.data["nc"] == 5 and info.data["val_images"] == 16 and info.sweep


def test_old_ablation_folders_keep_their_mode_and_seeds_must_differ(tmp_path, yolo_log):
    import argparse

    import pytest

    old = {"base": "b", "at": [23], "epochs": 3}  # made before --deterministic existed: v6.1's mode
    opt = argparse.Namespace(deterministic=True)
    settings = {"base": "b", "at": [23], "epochs": 3, "deterministic": True}
    ablate.keep_legacy(opt, old, settings, tmp_path)
    assert opt.deterministic is False and settings["deterministic"] is False and old["deterministic"] is False
    assert any("was made before --deterministic existed" in x for x in yolo_log)
    opt = argparse.Namespace(deterministic=True)
    new = {"deterministic": True}
    ablate.keep_legacy(opt, {"deterministic": True}, new, tmp_path)  # a folder that has the key: untouched
    assert opt.deterministic is True
    with pytest.raises(SystemExit, match="different seeds"):
        ablate.seed_list([3, 3])


def test_run_records_refuse_another_epoch_and_missing_files(tmp_path, yolo_log):
    from tests.test_eval_records import fake_records
    from utils.ablation_stats import paired_results, run_records

    rec = fake_records(n_images=10)
    rec.meta["epoch"] = 4
    rec.save(tmp_path / "a" / "records" / "best.npz")
    run = {"status": "done", "dir": str(tmp_path / "a"), "metrics": {"epoch": 4}}
    assert run_records(run).meta == {"epoch": 4} and run_records(run).source
    assert run_records({**run, "metrics": {"epoch": 5}}) is None  # best.pt is from epoch 5: stale records
    assert any("holds epoch 4 but the run's best epoch is 5" in x for x in yolo_log)
    assert run_records({**run, "dir": str(tmp_path / "b")}) is None and run_records({**run, "status": "failed"}) is None
    runs = {"baseline_s0": run, "SimAM_s0": run, "SimAM_s1": {**run, "dir": str(tmp_path / "b")}}
    res = paired_results(runs, ["baseline", "SimAM"], [0, 1], n=20)
    assert res["SimAM"]["mAP50_95"]["n_seeds"] == 1 and res["SimAM"]["mAP50_95"]["delta"] == 0.0
    assert list(res["SimAM"]["per_seed"]) == [0] and res["SimAM"]["per_seed"][0]["mAP50"]["n_resamples"] == 20
