"""The OpenVINO and TensorRT steps of the CUDA check (benchmarks/gpu_check.py), on the first model's best.pt.

* OpenVINO (CPU): ``export.py --include openvino --dynamic``, then ``val.py`` of the folder; its mAP@.5:.95 must be
  within :data:`OPENVINO_TOL` of the .pt's fp32 val.
* TensorRT (GPU): ``export.py --include engine --half --dynamic --batch-size 32 --device 0`` (fp16, batches up to
  val.py's 32), ``detect.py`` on the val images and ``val.py --half`` of the engine; its mAP@.5:.95 must be within
  :data:`TENSORRT_TOL` of the .pt's ``--half`` val.

A missing ``openvino`` or ``tensorrt`` is installed with pip on the GPU machine (not in a dry run); when that
fails (no registry, no wheel for this platform) the format's steps are reported as skipped, not failed. The dry
run (CPU) skips TensorRT.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Callable

OPENVINO_TOL = 0.005  # |mAP@.5:.95 OpenVINO - mAP .pt fp32|: same arithmetic on another runtime (GPU TF32 vs CPU)
TENSORRT_TOL = 0.01  # |mAP@.5:.95 TensorRT fp16 - mAP .pt --half|: other fp16 kernels


def ensure_package(name: str, dry: bool, sh: Callable, log: Path) -> str | None:
    """None when ``name`` can be imported (after ``pip install name`` when missing, except in a dry run);
    otherwise the reason its steps are skipped."""
    if importlib.util.find_spec(name):
        return None
    if dry:
        return f"{name} is not installed (a dry run installs nothing)"
    rc, _ = sh([sys.executable, "-m", "pip", "install", "--timeout", "30", "--retries", "1", name], log, timeout=900)
    importlib.invalidate_caches()
    if rc != 0 or not importlib.util.find_spec(name):
        return f"pip install {name} failed (exit {rc}; see logs/{log.name})"
    return None


def vs_pt(step: dict, ref: dict | None, tol: float) -> dict:
    """Add ``map_vs_pt`` (|Δ mAP@.5:.95| from the .pt's val ``ref``) to a val step; fail it beyond ``tol``."""
    if ref and "map" in step and "map" in ref:
        step["map_vs_pt"] = round(abs(step["map"] - ref["map"]), 4)
        step["ok"] &= step["map_vs_pt"] <= tol
    else:
        step["ok"] = False  # no .pt val to compare with, or no mAP parsed
    return step


def detect_step(weights: str, data: str, o: argparse.Namespace, out: Path, tag: str, sh: Callable) -> dict:
    """``detect.py --half`` of ``weights`` on the val images; ok when it ran and logged every image."""
    from utils.dataset_yaml import check_dataset

    src = check_dataset(data)["val"]
    src = src[0] if isinstance(src, (list, tuple)) else src
    log = out / "logs" / f"detect_{tag}.log"
    cmd = [sys.executable, "detect.py", "--weights", weights, "--source", str(src), "--img", str(o.img),
           "--device", "0", "--half", "--project", str(out / "detect"), "--name", tag, "--exist-ok", "--nosave"]
    rc, secs = sh(cmd, log)
    n = sum(line.startswith("image ") for line in log.read_text(errors="replace").splitlines())
    return {"step": f"detect {tag}", "ok": rc == 0 and n > 0, "seconds": round(secs, 1), "images": n}


def openvino_steps(best: Path, data: str, o: argparse.Namespace, out: Path, ref: dict | None, sh: Callable,
                   val_step: Callable) -> list[dict]:
    """Export ``best`` to OpenVINO (dynamic, CPU) and validate it against the .pt's fp32 val ``ref``."""
    why = ensure_package("openvino", o.dry_run, sh, out / "logs" / "pip_openvino.log")
    if why:
        return [{"step": "openvino", "ok": True, "skipped": why}]
    cmd = [sys.executable, "export.py", "--weights", str(best), "--include", "openvino", "--img", str(o.img),
           "--dynamic"]
    rc, secs = sh(cmd, out / "logs" / "export_openvino.log")
    steps = [{"step": "export openvino", "ok": rc == 0, "seconds": round(secs, 1)}]
    if rc == 0:
        folder = best.with_name(f"{best.stem}_openvino_model")
        steps.append(vs_pt(val_step(str(folder), data, o, "cpu", False, out, "openvino"), ref, OPENVINO_TOL))
    return steps


def tensorrt_steps(best: Path, data: str, o: argparse.Namespace, out: Path, ref_half: dict | None, sh: Callable,
                   val_step: Callable) -> list[dict]:
    """Export ``best`` to an fp16 TensorRT engine, run detect.py and val.py on it (against ``ref_half``)."""
    if o.dry_run:
        return [{"step": "tensorrt", "ok": True, "skipped": "dry run: TensorRT needs CUDA"}]
    why = ensure_package("tensorrt", o.dry_run, sh, out / "logs" / "pip_tensorrt.log")
    if why:
        return [{"step": "tensorrt", "ok": True, "skipped": why}]
    cmd = [sys.executable, "export.py", "--weights", str(best), "--include", "engine", "--img", str(o.img),
           "--device", "0", "--half", "--dynamic", "--batch-size", "32"]
    rc, secs = sh(cmd, out / "logs" / "export_engine.log")
    steps = [{"step": "export engine fp16", "ok": rc == 0, "seconds": round(secs, 1)}]
    if rc == 0:
        engine = str(best.with_suffix(".engine"))
        steps.append(detect_step(engine, data, o, out, "engine_fp16", sh))
        steps.append(vs_pt(val_step(engine, data, o, "0", True, out, "engine_fp16"), ref_half, TENSORRT_TOL))
    return steps
