"""The CUDA check: one prepared run that proves the GPU paths and writes everything to one folder.

    bash benchmarks/gpu_check.sh                       # on a machine with a CUDA device (about 5 minutes on an H100)
    bash benchmarks/gpu_check.sh --dry-run             # the same steps on the CPU, tiny: checks the script itself

Steps (each logged to ``<out>/logs/<step>.log``, timed, and summarised in ``<out>/summary.md`` and ``summary.json``):

1. environment: GPU, driver, CUDA, cuDNN, torch, onnxruntime providers, missing packages;
2. training with AMP (fp16 autocast + GradScaler, after the AMP check) of yolov5n, -NAM, -SimAM and -CoTA on BCCD,
   3 epochs at 320, with train and val images/s; every loss and metric must be finite;
3. the same trainings on the CPU in fp32 (the reference): per-epoch train losses compared with the GPU runs';
4. ``val.py --half`` and fp32 on each GPU best.pt (mAP of both);
5. export of yolov5n's best.pt to ONNX on the GPU and ``val.py`` of the .onnx;
6. OpenVINO (CPU) and TensorRT fp16 (GPU) exports of that best.pt, ``detect.py`` (TensorRT) and ``val.py`` on them,
   their mAP compared with the .pt's (benchmarks/gpu_check_exports.py; a package pip cannot install is a skip);
7. GPU latency, fused fp16, batch 1 and 32, with synchronisation and warm-up.

``--dry-run`` runs every step on the CPU at 64 px, 1 epoch, on a generated 32-image dataset, with bf16 autocast
standing in for fp16, for two models (TensorRT skipped); it fails (exit 1) when a step fails.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.gpu_check_exports import openvino_steps, tensorrt_steps  # noqa: E402

MODELS = ["yolov5n", "yolov5n-NAM", "yolov5n-SimAM", "yolov5n-CoTA"]
LOSS_TOL = 0.25  # largest relative difference of a GPU train loss from the CPU run's before it is flagged


def parse_opt() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry-run", action="store_true", help="every step on the CPU, tiny, to check this script")
    p.add_argument("--out", default=str(ROOT / "runs" / "gpu_check"), help="the one folder for all results")
    p.add_argument("--data", default="", help="dataset yaml (default: gpu_data/bccd/bccd.yaml, ../shared's bccd)")
    p.add_argument("--models", nargs="+", default=None, help=f"model yamls under models/ (default {MODELS})")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--img", type=int, default=320)
    p.add_argument("--no-cpu-ref", action="store_true", help="skip the CPU reference trainings")
    p.add_argument("--timed-train", default="", help=argparse.SUPPRESS)  # internal: one timed training (json)
    return p.parse_args()


def sh(cmd: list[str], log: Path, timeout: int = 900) -> tuple[int, float]:
    """Run ``cmd`` in the repository root, output to ``log``; returns (exit status, seconds)."""
    t = time.time()
    with open(log, "w") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        try:
            rc = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            f.write(f"\nTIMEOUT after {timeout} s\n")
            rc = 124
    return rc, time.time() - t


def environment(dry: bool) -> dict[str, Any]:
    """What this machine is: GPU, driver, CUDA, torch and the packages the project needs."""
    env: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                           "cuda_available": torch.cuda.is_available(), "torch_cuda": torch.version.cuda,
                           "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        env.update(gpu=p.name, gpu_memory_gb=round(p.total_memory / 2**30, 1), sm_count=p.multi_processor_count)
    try:
        q = "--query-gpu=driver_version,name,clocks.max.sm"
        env["nvidia_smi"] = subprocess.run(["nvidia-smi", q, "--format=csv,noheader"], capture_output=True,
                                           text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        env["nvidia_smi"] = "not available"
    missing = []
    for name in ("torchvision", "cv2", "yaml", "thop", "onnx", "onnxruntime", "pandas", "matplotlib", "tqdm"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    env["missing_packages"] = missing  # thop only affects the GFLOPs column; the others are needed
    try:
        import onnxruntime

        env["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        pass
    env["dry_run"] = dry
    return env


def timed_train(spec: str) -> None:
    """Train once in this process with timing hooks (called by :func:`train_step` in a subprocess)."""
    import train
    from utils.callbacks import Callbacks

    a = json.loads(spec)
    out, cb = Path(a.pop("timing")), Callbacks()
    cuda = str(a.get("device", "")) not in ("cpu",)
    sync = torch.cuda.synchronize if cuda and torch.cuda.is_available() else (lambda: None)
    ep: dict[str, Any] = {"train": [], "val": [], "t": 0.0, "n": 0, "first": None}

    def batch_end(ni, model, imgs, *args):
        if ep["first"] is None:
            sync()
            ep["first"] = time.time()  # images/s counted from the end of each epoch's first batch
        else:
            ep["n"] += imgs.shape[0]

    def train_end(epoch):
        sync()
        ep["train"].append(ep["n"] / max(time.time() - ep["first"], 1e-9))
        ep["t"], ep["first"], ep["n"] = time.time(), None, 0

    def fit_end(*args):
        ep["val"].append(time.time() - ep["t"])

    cb.register_action("on_train_batch_end", callback=batch_end)
    cb.register_action("on_train_epoch_end", callback=train_end)
    cb.register_action("on_fit_epoch_end", callback=fit_end)
    opt = train.parse_opt(True)
    for k, v in a.items():
        setattr(opt, k, v)
    train.main(opt, cb)
    out.write_text(json.dumps({"train_img_s": ep["train"], "val_s": ep["val"]}))


def train_step(cfg: str, device: str, amp: str, o: argparse.Namespace, data: str, out: Path, tag: str,
               **extra: Any) -> dict:
    """One training run as a subprocess (``extra``: more train.py options); returns its status, timing, rows."""
    name = f"{cfg}_{tag}"
    spec = dict(cfg=str(ROOT / "models" / f"{cfg}.yaml"), weights="", data=data, imgsz=o.img, epochs=o.epochs,
                batch_size=16, device=device, workers=0 if o.dry_run else 8, amp=amp, project=str(out / "train"),
                name=name, exist_ok=True, timing=str(out / "train" / f"{name}_timing.json"), **extra)
    (out / "train").mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / "train" / name, ignore_errors=True)  # a rerun into the same --out starts clean
    rc, secs = sh([sys.executable, __file__, "--timed-train", json.dumps(spec)], out / "logs" / f"train_{name}.log")
    res: dict[str, Any] = {"step": f"train {name}", "ok": rc == 0, "seconds": round(secs, 1),
                           "run": str(out / "train" / name)}
    csv_file = out / "train" / name / "results.csv"
    if csv_file.is_file():
        with open(csv_file) as f:
            rows = [{k.strip(): float(v) for k, v in r.items()} for r in csv.DictReader(f)]
        res["rows"] = rows
        res["finite"] = all(math.isfinite(v) for r in rows for v in r.values())
        res["ok"] &= res["finite"]
    timing = Path(spec["timing"])
    if timing.is_file():
        t = json.loads(timing.read_text())
        later = t["train_img_s"][1:] or t["train_img_s"]  # epoch 0 includes warm-up
        res["train_img_s"] = round(sum(later) / max(len(later), 1), 1)
        val_s = t["val_s"][1:] or t["val_s"]
        res["val_img_s"] = round(count_images(data, "val") * len(val_s) / max(sum(val_s), 1e-9), 1)
    return res


def determinism_step(cfg: str, device: str, amp: str, o: argparse.Namespace, data: str, out: Path) -> dict:
    """Two 1-epoch ``--deterministic`` runs of seed 0: identical results.csv? and the ops PyTorch warned about."""
    one = argparse.Namespace(**{**vars(o), "epochs": 1})
    runs = [train_step(cfg, device, amp, one, data, out, f"det{k}", deterministic=True, seed=0) for k in "ab"]
    res: dict[str, Any] = {"step": f"deterministic repeat {cfg}", "seconds": sum(r["seconds"] for r in runs)}
    files = [Path(r["run"]) / "results.csv" for r in runs]
    res["identical"] = all(f.is_file() for f in files) and files[0].read_bytes() == files[1].read_bytes()
    det = Path(runs[0]["run"]) / "determinism.json"
    res["nondeterministic_ops"] = json.loads(det.read_text())["nondeterministic_ops"] if det.is_file() else None
    res["ok"] = all(r["ok"] for r in runs) and det.is_file()  # a difference is reported, not a failure
    return res


def count_images(data: str, split: str) -> int:
    """Number of images of a dataset split."""
    from utils.dataset_yaml import check_dataset
    from utils.labels import img_files_from_path

    return len(img_files_from_path(check_dataset(data)[split]))


def compare_losses(gpu: dict, cpu: dict) -> dict:
    """Largest relative difference of the per-epoch train losses (box, obj, cls) of a GPU run from its CPU run."""
    keys = ("train/box_loss", "train/obj_loss", "train/cls_loss")
    worst = 0.0
    for g, c in zip(gpu.get("rows", []), cpu.get("rows", [])):
        for k in keys:
            worst = max(worst, abs(g[k] - c[k]) / max(abs(c[k]), 1e-9))
    ok = bool(gpu.get("rows")) and len(gpu["rows"]) == len(cpu.get("rows", [])) and worst <= LOSS_TOL
    return {"step": f"losses {Path(gpu['run']).name} vs CPU", "ok": ok, "max_rel_diff": round(worst, 4)}


def val_step(weights: str, data: str, o: argparse.Namespace, device: str, half: bool, out: Path, tag: str) -> dict:
    """``val.py`` of one model; returns mAP@.5 and mAP@.5:.95 parsed from its 'all' line."""
    cmd = [sys.executable, "val.py", "--weights", weights, "--data", data, "--img", str(o.img), "--device", device,
           "--project", str(out / "val"), "--name", tag, "--exist-ok", "--workers", "0" if o.dry_run else "8"]
    cmd += ["--half"] if half else []
    log = out / "logs" / f"val_{tag}.log"
    rc, secs = sh(cmd, log)
    res = {"step": f"val {tag}", "ok": rc == 0, "seconds": round(secs, 1)}
    for line in log.read_text().splitlines():
        parts = line.split()
        if len(parts) == 7 and parts[0] == "all":
            res.update(map50=float(parts[5]), map=float(parts[6]))
    res["ok"] &= "map" in res
    return res


def export_step(weights: str, o: argparse.Namespace, device: str, out: Path) -> dict:
    cmd = [sys.executable, "export.py", "--weights", weights, "--include", "onnx", "--img", str(o.img),
           "--device", device, "--dynamic"]
    rc, secs = sh(cmd, out / "logs" / "export_onnx.log")
    return {"step": "export onnx", "ok": rc == 0, "seconds": round(secs, 1)}


@torch.no_grad()
def latency(cfgs: list[str], device: str, img: int, batches: tuple[int, ...], dry: bool) -> list[dict]:
    """Median ms per forward of fused models (fp16 on CUDA, fp32 on the CPU), per batch size."""
    from models.yolo import Model
    from utils.profiling import median_ms

    dev = torch.device("cpu" if device == "cpu" else f"cuda:{device}")
    half = dev.type == "cuda"
    rows = []
    for cfg in cfgs:
        m = Model(ROOT / "models" / f"{cfg}.yaml").to(dev).fuse().eval()
        m = m.half() if half else m
        for bs in batches:
            x = torch.zeros(bs, 3, img, img, device=dev, dtype=torch.float16 if half else torch.float32)
            sync = torch.cuda.synchronize if half else (lambda: None)

            def fwd():
                m(x)
                sync()

            ms = median_ms(fwd, runs=3 if dry else 50, warmup=1 if dry else 10)
            rows.append({"model": cfg, "batch": bs, "ms": round(ms, 2), "img_s": round(bs * 1000 / ms, 1),
                         "dtype": "fp16" if half else "fp32"})
    return rows


def dry_data(out: Path) -> str:
    """A generated 32 + 16 image dataset for --dry-run; returns its yaml."""
    from utils.synthetic import tiny_dataset

    return str(tiny_dataset(out / "data"))


def default_data() -> str:
    for f in (ROOT / "gpu_data" / "bccd" / "bccd.yaml", ROOT.parent / "shared" / "data" / "bccd" / "bccd.yaml"):
        if f.is_file():
            return str(f)
    raise SystemExit("gpu_check: no dataset: copy ../shared/data/bccd to gpu_data/bccd (git-ignored) or pass --data")


def write_summary(out: Path, env: dict, steps: list[dict], lat: list[dict], seconds: float) -> bool:
    """``summary.json`` and a Markdown ``summary.md``; returns True when every step passed."""
    ok = all(s["ok"] for s in steps)
    (out / "summary.json").write_text(json.dumps({"ok": ok, "seconds": round(seconds, 1), "environment": env,
                                                  "steps": [{k: v for k, v in s.items() if k != "rows"} for s in steps],
                                                  "latency": lat}, indent=1))
    cols = ("ok", "seconds", "train_img_s", "val_img_s", "max_rel_diff", "map50", "map", "map_vs_pt", "images",
            "identical", "nondeterministic_ops", "skipped")
    lines = [f"# GPU check ({'dry run, CPU' if env['dry_run'] else env.get('gpu', 'no GPU')}): "
             f"{'PASS' if ok else 'FAIL'} in {seconds:.0f} s", "",
             "| " + " | ".join(f"{k}: {v}" for k, v in env.items() if k != "dry_run") + " |", "",
             "| step | " + " | ".join(cols) + " |", "| --- " * (len(cols) + 1) + "|"]
    lines += ["| " + s["step"] + " | " + " | ".join(str(s.get(c, "")) for c in cols) + " |" for s in steps]
    lines += ["", "| model | batch | dtype | ms | img/s |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r['model']} | {r['batch']} | {r['dtype']} | {r['ms']} | {r['img_s']} |" for r in lat]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return ok


def main(o: argparse.Namespace) -> int:
    if o.timed_train:
        timed_train(o.timed_train)
        return 0
    t0 = time.time()
    out = Path(o.out)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    env = environment(o.dry_run)
    if not o.dry_run and not env["cuda_available"]:
        raise SystemExit("gpu_check: no CUDA device here; use --dry-run to check the script on the CPU")
    if o.dry_run:
        o.img, o.epochs = 64, 1
    models = o.models or (["yolov5n-NAM"] if o.dry_run else MODELS)
    data = o.data or (dry_data(out) if o.dry_run else default_data())
    device, amp = ("cpu", "bf16") if o.dry_run else ("0", "auto")
    steps: list[dict] = []
    for cfg in models:
        gpu = train_step(cfg, device, amp, o, data, out, "gpu")
        steps.append(gpu)
        if not o.no_cpu_ref:
            cpu = train_step(cfg, "cpu", "off", o, data, out, "cpu")
            steps += [cpu, compare_losses(gpu, cpu)]
        best = Path(gpu["run"]) / "weights" / "best.pt"
        if best.is_file():
            if not o.dry_run:  # --half is CUDA only
                steps.append(val_step(str(best), data, o, device, True, out, f"{cfg}_half"))
            steps.append(val_step(str(best), data, o, device, False, out, f"{cfg}_fp32"))
    steps.append(determinism_step(models[0], device, amp, o, data, out))
    best = out / "train" / f"{models[0]}_gpu" / "weights" / "best.pt"
    if best.is_file():
        steps.append(export_step(str(best), o, device, out))
        if steps[-1]["ok"]:
            steps.append(val_step(str(best.with_suffix(".onnx")), data, o, device, False, out, "onnx"))
        vals = {s["step"]: s for s in steps}
        steps += openvino_steps(best, data, o, out, vals.get(f"val {models[0]}_fp32"), sh, val_step)
        steps += tensorrt_steps(best, data, o, out, vals.get(f"val {models[0]}_half"), sh, val_step)
    lat = latency(models, device, o.img, (1, 32) if not o.dry_run else (1, 2), o.dry_run)
    return 0 if write_summary(out, env, steps, lat, time.time() - t0) else 1


if __name__ == "__main__":
    sys.exit(main(parse_opt()))
