"""benchmarks/formats.py: every format exported, validated and timed; mAP equal to PyTorch's; skips and mismatches."""

from __future__ import annotations

import csv
import sys

import pytest
import torch
import torch.nn as nn

from models.yolo import Model
from tests.conftest import ROOT, benchmark_script
from utils.general import InputError
from utils.synthetic import SHAPES

pytest.importorskip("onnxruntime", reason="onnxruntime is not importable: the ONNX row cannot run")
pytest.importorskip("onnx", reason="onnx is not importable: the ONNX row cannot run")

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore:.*deprecated:FutureWarning")]  # torch >= 2.9 on TorchScript


formats = benchmark_script("formats")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A random yolov5n checkpoint for the 5 shape classes, saved as v6.1 does (fp16 model, epoch -1).

    BatchNorm statistics are calibrated on a random batch and Detect's biases zeroed (weights scaled by 0.1): the
    objectness and class scores then spread around 0.5 (std about 0.05) and depend on the image. Left at their
    initialisation, every score sits at v6.1's prior, under val's 0.001 confidence (mAP 0 in every format), and
    with the biases alone zeroed the scores differ by 1e-7, so that rounding reorders them and mAP is noise.
    """
    torch.manual_seed(3)
    model = Model(ROOT / "models" / "yolov5n.yaml", nc=len(SHAPES))
    model.names = list(SHAPES)
    with torch.no_grad():
        for conv in model.model[-1].m:
            conv.bias.zero_()
            conv.weight.mul_(0.1)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None  # running stats = the batch's
        model.train()
        model(torch.rand(4, 3, 64, 64))
    f = tmp_path_factory.mktemp("weights") / "tiny.pt"
    torch.save({"epoch": -1, "best_fitness": None, "model": model.eval().half(), "ema": None, "updates": None,
                "optimizer": None}, f)
    return f


@pytest.fixture(scope="module")
def bench(ckpt, tiny_data, tmp_path_factory):
    """One run of PyTorch, TorchScript, ONNX and TensorRT on the tiny set at 64 px; (rows, run folder)."""
    project = tmp_path_factory.mktemp("bench")
    rows = formats.run(weights=ckpt, data=tiny_data, imgsz=64, batch_size=8, device="cpu",
                       include=["torchscript", "onnx", "engine"], workers=0, project=project, name="exp",
                       warmup=1, runs=3)
    return rows, project / "exp"


def test_every_runnable_format_reproduces_pytorch(bench, ckpt):
    rows, save_dir = bench
    by = {r["argument"]: r for r in rows}
    assert list(by) == ["pytorch", "torchscript", "onnx", "engine"]  # PyTorch first, then export_formats order
    pt = by["pytorch"]
    assert pt["mAP50"] > 0.001 and pt["mAP50_95"] > 0  # a real measurement, not 0 == 0
    for k in ("pytorch", "torchscript", "onnx"):
        r = by[k]
        assert r["status"] == "ok", r
        assert r["size_mb"] > 0 and r["val_ms"] > 0 and r["latency_ms"] > 0
        assert abs(r["mAP50_95"] - pt["mAP50_95"]) <= 0.001 and abs(r["mAP50"] - pt["mAP50"]) <= 0.001
        assert r["mAP50_95"] == pytest.approx(pt["mAP50_95"], abs=1e-4)  # in fact closer: mAP here is ~0.002
        assert r["delta_mAP50_95"] == pytest.approx(r["mAP50_95"] - pt["mAP50_95"], abs=1e-5)
        assert str(save_dir) in r["file"]  # artefacts in the run folder ...
    assert sorted(p.name for p in ckpt.parent.iterdir()) == ["tiny.pt"]  # ... never next to the user's weights
    assert by["pytorch"]["delta_mAP50_95"] == 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the skip of a machine without CUDA")
def test_engine_without_cuda_is_skipped_with_its_reason(bench):
    engine = next(r for r in bench[0] if r["argument"] == "engine")
    assert engine["status"].startswith("skipped: ") and engine["file"] == "" and engine["mAP50_95"] is None
    assert "CUDA" in engine["status"] or "does not export" in engine["status"] or "not installed" in engine["status"]


def test_csv_holds_the_rows(bench):
    rows, save_dir = bench
    with open(save_dir / "formats.csv") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == formats.FIELDS
    assert [t["argument"] for t in table] == [r["argument"] for r in rows]
    for t, r in zip(table, rows):
        assert t["status"] == r["status"]
        if r["mAP50_95"] is not None:
            assert float(t["mAP50_95"]) == r["mAP50_95"] and float(t["size_mb"]) == r["size_mb"]
        else:
            assert t["mAP50_95"] == "" and t["file"] == ""


def test_a_difference_over_the_tolerance_is_a_mismatch():
    def row(arg, m50, m, status="ok"):
        return {**{k: None for k in formats.FIELDS}, "format": arg, "argument": arg, "mAP50": m50, "mAP50_95": m,
                "status": status}

    rows = [row("pytorch", 0.5, 0.3), row("torchscript", 0.5, 0.3009), row("onnx", 0.5, 0.2985),
            row("openvino", 0.4985, 0.3), row("engine", None, None, "skipped: no CUDA")]
    formats.compare_to_pytorch(rows, tol=0.001)
    assert [r["status"][:8] for r in rows] == ["ok", "ok", "MISMATCH", "MISMATCH", "skipped:"]
    assert rows[2]["delta_mAP50_95"] == pytest.approx(-0.0015) and rows[3]["delta_mAP50"] == pytest.approx(-0.0015)
    assert rows[1]["delta_mAP50_95"] == pytest.approx(0.0009) and rows[4]["delta_mAP50_95"] is None
    formats.compare_to_pytorch(rows2 := [row("pytorch", 0.5, 0.3), row("onnx", 0.5, 0.2985)], tol=0.002)
    assert rows2[1]["status"] == "ok"
    text = formats.table_text(rows)
    assert text.count("\n") == 1 + len(rows) and "| -0.0015 |" in text


def test_strict_exits_non_zero_on_a_mismatch(monkeypatch):
    rows = [{"format": "PyTorch", "status": "ok"}, {"format": "ONNX", "status": "MISMATCH: mAP differs"}]
    monkeypatch.setattr(formats, "run", lambda **kw: rows)
    monkeypatch.setattr(sys, "argv", ["formats.py"])
    assert formats.main(formats.parse_opt([])) == rows  # reported, not fatal
    with pytest.raises(SystemExit) as e:
        formats.main(formats.parse_opt(["--strict"]))
    assert e.value.code == 1


def test_bad_requests_are_refused_before_anything_is_written(ckpt, tmp_path):
    with pytest.raises(InputError, match="--half"):
        formats.run(weights=ckpt, data="unused.yaml", device="cpu", half=True, project=tmp_path)
    with pytest.raises(InputError, match=r"\.pt"):
        formats.run(weights=ckpt.with_suffix(".onnx"), data="unused.yaml", project=tmp_path)
    with pytest.raises(InputError, match="known formats"):
        formats.run(weights=ckpt, data="unused.yaml", include=["onnx", "tensorrt"], project=tmp_path)
    assert list(tmp_path.iterdir()) == []
