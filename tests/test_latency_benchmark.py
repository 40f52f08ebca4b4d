"""benchmarks/latency.py (CPU path, options, skipped backends) and the timing helpers it shares with ablate.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import ablate
from tests.conftest import benchmark_script
from utils.general import InputError
from utils.profiling import batch_latency_ms, device_median_ms, synced

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore:.*deprecated:FutureWarning")]  # torch >= 2.9 on TorchScript
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: the GPU timing path is not run")


latency = benchmark_script("latency")
QUICK = dict(img=[64], warmup=1, runs=2, rounds=1, pause=0.0, threads=1)


def test_cpu_rows_and_table_at_batch_1(capsys):
    rows = latency.run(cfgs=["yolov5n", "yolov5n-SimAM"], backends=["pytorch", "torchscript"], **QUICK)
    assert [(r["cfg"], r["img"], r["batch"]) for r in rows] == [("yolov5n", 64, 1), ("yolov5n-SimAM", 64, 1)]
    base, simam = rows
    assert set(base["ms"]) == {"pytorch", "torchscript"} and min(base["ms"].values()) > 0
    assert simam["params"] == base["params"] and simam["attn_ms"] > 0 and base["attn_ms"] == 0.0
    assert simam["gflops"] is None or simam["gflops"] >= base["gflops"]
    out = capsys.readouterr().out.splitlines()
    i = out.index("| model | img | params | GFLOPs | pytorch ms | torchscript ms | pytorch +% | torchscript +% "
                  "| attn ms | attn % |")  # batch 1 on the CPU: the table as it always was
    assert out[i - 2].startswith("Latency, batch 1, CPU x1 threads, median of 2 after 1 warm-up")
    assert out[i + 1] == "|" + "---|" * 10
    over = (simam["ms"]["pytorch"] / base["ms"]["pytorch"] - 1) * 100
    assert out[i + 3].startswith(f"| yolov5n-SimAM | 64 | {simam['params']:,} |") and f"| {over:+.1f} |" in out[i + 3]
    assert not any("skipped" in line for line in out)


def test_cpu_batch_sizes_get_a_batch_column(capsys):
    rows = latency.run(cfgs=["yolov5n"], backends=["pytorch", "onnx"], batch_size=[1, 2], **QUICK)
    assert [r["batch"] for r in rows] == [1, 2] and all(set(r["ms"]) == {"pytorch", "onnx"} for r in rows)
    out = capsys.readouterr().out
    assert "Latency, batch 1 and 2, CPU x1 threads" in out and "| model | img | batch | params |" in out
    assert f"| yolov5n | 64 | 2 | {rows[1]['params']:,} |" in out


def test_tensorrt_on_the_cpu_is_skipped_with_its_reason(capsys):
    why = latency.backend_unavailable("engine", torch.device("cpu"))
    assert why and ("CUDA" in why or "does not export" in why)
    rows = latency.run(cfgs=["yolov5n"], backends=["pytorch", "engine"], **QUICK)
    assert set(rows[0]["ms"]) == {"pytorch"} and rows[0]["skipped"] == {"engine": why}
    out = capsys.readouterr().out
    assert f"engine: skipped ({why})" in out and "engine ms" not in out


def test_the_exported_path_runs_through_export_and_detect_multi_backend(tmp_path, yolo_log):
    """The CUDA code path (export.run + DetectMultiBackend per size and batch), exercised on the CPU."""
    model = latency.build("yolov5n")
    fns = latency.prepare_exported_backends(model, 64, ["pytorch", "torchscript", "onnx", "engine"], tmp_path, "n", 2,
                                            torch.device("cpu"), half=False)
    assert list(fns) == ["pytorch", "torchscript", "onnx"]  # engine: export refused on the CPU, logged, left out
    assert any("engine at img 64 batch 2" in line for line in yolo_log)
    with torch.no_grad():
        ref = fns["pytorch"]()[0]
        for b in ("torchscript", "onnx"):
            y = fns[b]()
            assert y.shape == ref.shape == (2, 252, 85)  # batch 2 at 64 px: 3 anchors x (8² + 4² + 2²) cells
            torch.testing.assert_close(y, ref, atol=1e-3, rtol=1e-4)
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".onnx", ".pt", ".torchscript"]


def test_options_are_checked():
    with pytest.raises(InputError, match="--half.*CUDA"):
        latency.check_opt(latency.parse_opt(["--half"]))
    with pytest.raises(InputError, match="--batch-size"):
        latency.check_opt(latency.parse_opt(["--batch-size", "0"]))
    with pytest.raises(InputError, match="--device tpu"):
        latency.check_opt(latency.parse_opt(["--device", "tpu"]))
    with pytest.raises(SystemExit):  # argparse: not a backend
        latency.parse_opt(["--backends", "tflite"])
    opt = latency.parse_opt([])
    assert latency.check_opt(opt) == torch.device("cpu") and opt.batch_size == [1] and opt.backends is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal of a machine without CUDA")
def test_a_cuda_device_without_cuda_is_refused():
    for dev in ("0", "cuda:0"):
        with pytest.raises(InputError, match="no such CUDA device"):
            latency.parse_device(dev)


def test_shared_timing_on_the_cpu():
    f = lambda: 7  # noqa: E731
    assert synced(f, "cpu") is f  # nothing added on the CPU: CPU numbers are those of interleaved_median_ms
    assert set(device_median_ms({"a": f, "b": f}, "cpu", warmup=1, runs=2, rounds=2, pause=0)) == {"a", "b"}
    net = nn.Sequential(nn.Conv2d(3, 4, 3)).eval()
    ms = batch_latency_ms({"n": net}, 16, (1, 3), "cpu", half=False, warmup=1, runs=2, rounds=1)
    assert set(ms["n"]) == {1, 3} and min(ms["n"].values()) > 0
    assert next(net.parameters()).dtype == torch.float32  # copies are timed, the model is left alone


def test_ablate_gpu_latency_keeps_its_keys_through_the_shared_helper(monkeypatch):
    seen = {}

    def fake(models, img, batch_sizes, device, half, warmup, runs, rounds):
        seen.update(img=img, batch_sizes=tuple(batch_sizes), device=device, half=half, timing=(warmup, runs, rounds))
        return {k: {bs: 10.0 * bs for bs in batch_sizes} for k in models}

    monkeypatch.setattr(ablate, "batch_latency_ms", fake)
    out = ablate.gpu_latency({"baseline": nn.Identity(), "SimAM": nn.Identity()}, 320, 10, 30, 5)
    assert out == {"baseline": {"gpu_fp16_b1": 10.0, "gpu_fp16_b32": 320.0},
                   "SimAM": {"gpu_fp16_b1": 10.0, "gpu_fp16_b32": 320.0}}
    assert seen == {"img": 320, "batch_sizes": (1, 32), "device": "cuda", "half": True, "timing": (10, 30, 5)}


@CUDA
def test_cuda_fp16_rows():
    rows = latency.run(cfgs=["yolov5n"], backends=["pytorch"], device="0", half=True, batch_size=[1, 2], **QUICK)
    assert [r["batch"] for r in rows] == [1, 2] and all(r["ms"]["pytorch"] > 0 for r in rows)


@CUDA
def test_cuda_shared_timing_is_synchronised_fp16():
    net = nn.Sequential(nn.Conv2d(3, 4, 3)).eval()
    ms = batch_latency_ms({"n": net}, 32, (1, 2), "cuda", half=True, warmup=1, runs=2, rounds=1)
    assert set(ms["n"]) == {1, 2} and min(ms["n"].values()) > 0 and next(net.parameters()).device.type == "cpu"
