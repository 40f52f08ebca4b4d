"""benchmarks/gpu_check.sh: its --dry-run runs every step on the CPU and checks them; without CUDA it says so."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import ROOT


def test_dry_run_runs_and_checks_every_step(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHON": sys.executable}
    out = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--dry-run", "--out", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=900, env=env)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    s = json.loads((tmp_path / "summary.json").read_text())
    steps = {x["step"]: x for x in s["steps"]}
    assert s["ok"] and s["environment"]["dry_run"] and s["environment"]["torch"] == torch.__version__
    openvino = {"export openvino", "val openvino"} if importlib.util.find_spec("openvino") else {"openvino"}
    assert set(steps) == {"train yolov5n-NAM_gpu", "train yolov5n-NAM_cpu", "losses yolov5n-NAM_gpu vs CPU",
                          "val yolov5n-NAM_fp32", "export onnx", "val onnx", "deterministic repeat yolov5n-NAM",
                          "tensorrt"} | openvino
    assert steps["tensorrt"]["skipped"] == "dry run: TensorRT needs CUDA"
    if "val openvino" in steps:  # same CPU, same fp32 model: the same mAP
        assert steps["val openvino"]["map_vs_pt"] <= 1e-3
    else:
        assert steps["openvino"]["skipped"] == "openvino is not installed (a dry run installs nothing)"
    det = steps["deterministic repeat yolov5n-NAM"]
    assert det["identical"] and det["nondeterministic_ops"] == []  # CPU: same seed, same bytes
    gpu = steps["train yolov5n-NAM_gpu"]
    assert gpu["finite"] and gpu["train_img_s"] > 0 and gpu["val_img_s"] > 0
    assert 0 <= steps["losses yolov5n-NAM_gpu vs CPU"]["max_rel_diff"] <= 0.25  # bf16 vs fp32, same seed
    assert steps["val onnx"]["map"] == pytest.approx(steps["val yolov5n-NAM_fp32"]["map"], abs=1e-3)
    assert [(r["model"], r["batch"]) for r in s["latency"]] == [("yolov5n-NAM", 1), ("yolov5n-NAM", 2)]
    assert (tmp_path / "summary.md").read_text().startswith("# GPU check (dry run, CPU): PASS")
    log = (tmp_path / "logs" / "train_yolov5n-NAM_gpu.log").read_text()
    assert "checks passed" in log and "bfloat16" in log  # the AMP path ran (bf16 autocast on the CPU)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_without_cuda_it_says_so(tmp_path):
    out = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--out", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 1 and "no CUDA device here; use --dry-run" in out.stderr
