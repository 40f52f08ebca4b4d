"""Inference latency of model configs × backends × image sizes × batch sizes, and each attention config's overhead.

    python benchmarks/latency.py                                   # yolov5n/s and their NAM/SimAM/CoTA twins
    python benchmarks/latency.py --cfgs yolov5n yolov5n-CotLayer --img 320 --backends pytorch onnx
    python benchmarks/latency.py --device 0 --half --batch-size 1 32   # CUDA fp16; TensorRT too when it can

Models are built from their yamls with random weights, fused (as attempt_load deploys them) and timed on a zero
batch. Three PyTorch rows: ``pytorch`` (eager, NCHW, as YOLOv5 v6.1 runs), ``pytorch_cl`` (eager, channels-last:
detect.py's and val.py's default) and ``compiled`` (``--compile auto``: oneDNN Graph on the CPU, torch.compile
on CUDA; see ``models/compiled.py``). Timing is the median of ``--runs`` forwards after ``--warmup``; with
``--rounds R`` every (config, size, batch, backend) is timed R times, in a shuffled order each round, and the
median of the R medians is reported, so that slow drift of the machine's speed does not land on one config. Overhead of ``<base>-<Attention>`` is relative to
``<base>`` with the same backend, size and batch. 'attn ms' times the attention layers alone (:func:`attention_ms`).

On the CPU (the default) the exports are made in-process from the fused model; ``--half`` is refused (fp16 is a
CUDA measurement). With ``--device 0`` every timed call is CUDA-synchronised (``utils.profiling``, the same timing
``ablate.py`` uses), models and inputs are fp16 with ``--half``, and the exports (TorchScript, ONNX, TensorRT
``engine``) go through ``export.run`` at each size and batch and run through ``DetectMultiBackend``. A backend that
cannot run here (TensorRT without CUDA or without ``tensorrt``; ONNX on CUDA without onnxruntime's CUDA provider)
is listed as skipped, with the reason, under the table. Timing belongs here, never in pass/fail tests.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from copy import deepcopy
from pathlib import Path
from typing import Any, Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import export  # noqa: E402
from export import export_onnx, export_torchscript, prepare_for_export  # noqa: E402
from models.attention_vis import attention_layers  # noqa: E402
from models.backends import DetectMultiBackend, export_formats, export_metadata  # noqa: E402
from models.compiled import CompiledModel, resolve_compile_mode  # noqa: E402
from models.yolo import Model  # noqa: E402
from utils.flops import model_gflops  # noqa: E402
from utils.format_requirements import format_unavailable  # noqa: E402
from utils.general import LOGGER, InputError, run_cli  # noqa: E402
from utils.memory_format import set_memory_format, to_input_format  # noqa: E402
from utils.profiling import device_median_ms, median_ms, synced  # noqa: E402
from utils.recording import Recorder  # noqa: E402

DEFAULT_CFGS = ["yolov5n", "yolov5n-NAM", "yolov5n-SimAM", "yolov5n-CoTA",
                "yolov5s", "yolov5s-NAM", "yolov5s-SimAM", "yolov5s-CoTA"]
BACKENDS = {"pytorch": "-", "pytorch_cl": "-", "compiled": "-", "torchscript": "torchscript", "onnx": "onnx",
            "engine": "engine"}  # -> export.py format
PYTORCH_BACKENDS = ("pytorch", "pytorch_cl", "compiled")  # eager NCHW, eager NHWC, --compile auto (NHWC)


def pytorch_backends(model: Model, x: torch.Tensor, backends: list[str]) -> dict[str, Callable]:
    """The PyTorch rows: ``pytorch`` (eager, NCHW: v6.1's way), ``pytorch_cl`` (eager, channels-last weights and
    input: detect.py's and val.py's default) and ``compiled`` (``--compile auto`` on ``x``'s device, channels-last;
    built and checked on its first call, which the warm-up absorbs)."""
    out: dict[str, Callable] = {}
    if "pytorch" in backends:
        out["pytorch"] = lambda: model(x)
    if "pytorch_cl" in backends or "compiled" in backends:
        cl = set_memory_format(deepcopy(model))
        xc = to_input_format(x, True)
        if "pytorch_cl" in backends:
            out["pytorch_cl"] = lambda: cl(xc)
        if "compiled" in backends:
            cm = CompiledModel(cl, resolve_compile_mode("auto", x.device))
            out["compiled"] = lambda: cm(xc)
    return out


def build(cfg: str) -> Model:
    f = ROOT / "models" / (cfg if cfg.endswith(".yaml") else f"{cfg}.yaml")
    return Model(f).eval().fuse()


def prepare_backends(model: Model, img: int, backends: list[str], tmp: Path, tag: str, bs: int = 1
                     ) -> dict[str, Callable]:
    """CPU: one zero-argument callable per backend that runs a batch-``bs`` forward of ``model`` at ``img``."""
    x = torch.zeros(bs, 3, img, img)
    tag = f"{tag}_{img}" if bs == 1 else f"{tag}_{img}_b{bs}"
    out = pytorch_backends(model, x, backends)
    meta = export_metadata(int(model.stride.max()), list(model.names))
    em = prepare_for_export(deepcopy(model))
    with torch.no_grad():
        em(x)  # dry run (fills Detect grids)
    if "torchscript" in backends:
        f = export_torchscript(em, x, tmp / tag, meta)
        if f is not None:
            ts = torch.jit.load(str(f))
            out["torchscript"] = lambda: ts(x)
    if "onnx" in backends:
        import onnxruntime as ort

        f = export_onnx(em, x, tmp / tag, meta)
        if f is not None:
            sess = ort.InferenceSession(str(f), providers=["CPUExecutionProvider"])
            name, xn = sess.get_inputs()[0].name, x.numpy()
            out["onnx"] = lambda: sess.run(None, {name: xn})
    return out


def prepare_exported_backends(model: Model, img: int, backends: list[str], tmp: Path, tag: str, bs: int,
                              device: torch.device, half: bool) -> dict[str, Callable]:
    """The CUDA path: the PyTorch model moved to ``device`` (fp16 with ``half``) and every other backend exported
    by ``export.run`` from a checkpoint of ``model`` at this size and batch, loaded with ``DetectMultiBackend``.

    It runs on any device (the tests use the CPU). A backend whose export or loading fails is logged and left
    out (its cells read n/a).
    """
    dtype = torch.half if half else torch.float32
    x = torch.zeros(bs, 3, img, img, device=device, dtype=dtype)
    out = pytorch_backends(deepcopy(model).to(device, dtype), x, backends)
    exports = [b for b in backends if b not in PYTORCH_BACKENDS]
    if not exports:
        return out
    ckpt = tmp / f"{tag}_{img}_b{bs}.pt"
    torch.save({"epoch": -1, "best_fitness": None, "model": deepcopy(model).float(), "ema": None, "updates": None,
                "optimizer": None}, ckpt)
    for b in exports:
        try:
            f = export.run(weights=ckpt, imgsz=[img, img], batch_size=bs, device=str(device), half=half,
                           include=[BACKENDS[b]])[0]
            backend = DetectMultiBackend(f, device=device)
        except Exception as e:  # noqa: BLE001 - one backend failing leaves the others to time
            LOGGER.warning(f"WARNING: {b} at img {img} batch {bs}: {type(e).__name__}: {e}; not timed")
            continue
        out[b] = lambda backend=backend: backend(x)
    return out


def backend_unavailable(backend: str, device: torch.device) -> str | None:
    """Why ``backend`` cannot be timed on ``device`` (export.py cannot make it, a package or CUDA is missing)."""
    fmt = BACKENDS[backend]
    row = next(f for f in export_formats() if f.argument == fmt)
    why = format_unavailable(fmt, device, row.supported, row.format)
    if why is None and backend == "onnx" and device.type == "cuda":
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            why = "onnxruntime has no CUDAExecutionProvider (pip install onnxruntime-gpu): it would time the CPU"
    return why


def attention_ms(model: Model, img: int, runs: int, device: torch.device | str = "cpu", half: bool = False) -> float:
    """PyTorch time of the model's attention layers alone, each on a tensor of its real input shape at ``img``.

    End-to-end differences of a few percent drown in run-to-run noise on a small CPU model; timing the added
    layers by themselves (many repetitions, median) gives the cost they add, which the end-to-end numbers bound.
    The layers are those of :func:`models.attention_vis.attention_layers` (a yaml row with ``n > 1``, an
    ``nn.Sequential`` of attention modules, is one layer); their input shapes are recorded in one forward.
    On CUDA a copy of the model is timed (fp16 with ``half``), each call synchronised.
    """
    dev, dtype = torch.device(device), torch.half if half else torch.float32
    if dev.type != "cpu":
        model = deepcopy(model).to(dev, dtype)
    layers = attention_layers(model)
    if not layers:
        return 0.0
    with torch.no_grad():
        with Recorder(layers) as rec:
            model(torch.zeros(1, 3, img, img, device=dev, dtype=dtype))
        total = 0.0
        for r in rec:
            x = torch.randn(r.inputs[0].shape).to(dev, dtype)
            total += median_ms(synced(lambda m=r.module, x=x: m(x), dev), 10, runs)
    return total


def parse_device(device: str) -> torch.device:
    """``'cpu'``/``''`` -> CPU; ``'0'`` or ``'cuda:0'`` -> that CUDA device, which must exist.

    Raises:
        InputError: a CUDA device that is not there, or an unreadable ``device``.
    """
    s = str(device).strip().lower()
    if s in ("", "cpu"):
        return torch.device("cpu")
    i = s.replace("cuda:", "")
    if not i.isdigit():
        raise InputError(f"--device {device}: give cpu, a CUDA index (0) or cuda:0")
    if not torch.cuda.is_available() or int(i) >= torch.cuda.device_count():
        raise InputError(f"--device {device}: no such CUDA device here ({torch.cuda.device_count()} visible); "
                         f"use --device cpu")
    return torch.device(f"cuda:{i}")


def check_opt(opt: argparse.Namespace) -> torch.device:
    """The timing device after checking the options.

    Raises:
        InputError: ``--half`` on the CPU, a batch size below 1, an unknown backend or device.
    """
    device = parse_device(opt.device)
    if opt.half and device.type != "cuda":
        raise InputError("--half times fp16 on CUDA only (CPU fp16 convolutions are not what deployments run); "
                         "use --device 0 --half, or drop --half for the CPU's fp32")
    if not opt.batch_size or min(opt.batch_size) < 1:
        raise InputError(f"--batch-size {opt.batch_size}: give one or more sizes >= 1")
    unknown = [b for b in (opt.backends or []) if b not in BACKENDS]
    if unknown:
        raise InputError(f"--backends {unknown}: known backends are {list(BACKENDS)}")
    return device


def measure(opt: argparse.Namespace, device: torch.device, backends: list[str]) -> list[dict]:
    """Build, export and time every (config, size, batch, backend); one row per (config, size, batch)."""
    rows, calls, models = {}, {}, {}
    with tempfile.TemporaryDirectory() as d:
        for cfg in opt.cfgs:
            model = models[cfg] = build(cfg)
            params = sum(p.numel() for p in model.parameters())
            for img in opt.img:
                gflops = model_gflops(model, img)
                for bs in opt.batch_size:
                    rows[(cfg, img, bs)] = {"cfg": cfg, "img": img, "batch": bs, "params": params, "gflops": gflops,
                                            "ms": {}}
                    if device.type == "cuda":
                        fns = prepare_exported_backends(model, img, backends, Path(d), Path(cfg).stem, bs,
                                                        device, opt.half)
                    else:
                        fns = prepare_backends(model, img, backends, Path(d), Path(cfg).stem, bs)
                    for b, fn in fns.items():
                        calls[(cfg, img, bs, b)] = fn
        with torch.no_grad():  # shuffled interleaved rounds: no config profits from its place in the order
            timed = device_median_ms(calls, device, opt.warmup, opt.runs, opt.rounds, opt.pause)
        for (cfg, img, bs, b), ms in timed.items():
            rows[(cfg, img, bs)]["ms"][b] = ms
        attn = {(cfg, img): attention_ms(models[cfg], img, 10 * opt.runs, device, opt.half)
                for cfg in opt.cfgs for img in opt.img}
    for r in rows.values():
        r["attn_ms"] = attn[(r["cfg"], r["img"])]
    return list(rows.values())


def print_table(rows: list[dict], opt: argparse.Namespace, device: torch.device, backends: list[str],
                skipped: dict[str, str]) -> None:
    """The markdown table (and the skipped backends with their reasons) on stdout."""
    where = f"CPU x{opt.threads} threads" if device.type == "cpu" else \
        f"{torch.cuda.get_device_name(device)} {'fp16' if opt.half else 'fp32'}, CUDA-synchronised"
    show_b = list(opt.batch_size) != [1]
    print(f"\nLatency, batch {' and '.join(map(str, opt.batch_size))}, {where}, median of {opt.runs} after "
          f"{opt.warmup} warm-up, median over {opt.rounds} interleaved round(s) "
          f"(fused models; ms). Overhead vs the config without its attention suffix, same backend and size. "
          f"'attn ms': the attention layers alone in PyTorch on their real input shapes (median of "
          f"{10 * opt.runs}); 'attn %': that as a share of the base config's PyTorch time.\n")
    head = " | ".join(f"{b} ms" for b in backends) + " | " + " | ".join(f"{b} +%" for b in backends)
    print(f"| model | img | {'batch | ' if show_b else ''}params | GFLOPs | {head} | attn ms | attn % |")
    print("|" + "---|" * (6 + show_b + 2 * len(backends)))
    by_key = {(r["cfg"], r["img"], r["batch"]): r for r in rows}
    for r in rows:
        cfg, img, ms = r["cfg"], r["img"], r["ms"]
        base = by_key.get((cfg.split("-")[0], img, r["batch"])) if "-" in cfg else None
        base_ms = base["ms"] if base else {}
        over = [f"{(ms[b] / base_ms[b] - 1) * 100:+.1f}" if base and b in ms and b in base_ms else ""
                for b in backends]
        cols = " | ".join(f"{ms[b]:.1f}" if b in ms else "n/a" for b in backends)
        g = f"{r['gflops']:.2f}" if r["gflops"] is not None else "n/a"
        a = r["attn_ms"]
        share = f"{a / base_ms['pytorch'] * 100:.2f}" if base and a and "pytorch" in base_ms else ""
        bcol = f"{r['batch']} | " if show_b else ""
        print(f"| {cfg} | {img} | {bcol}{r['params']:,} | {g} | {cols} | {' | '.join(over)} | {a:.3f} | {share} |")
    for b, why in skipped.items():
        print(f"{b}: skipped ({why})")


def parse_opt(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cfgs", nargs="+", default=DEFAULT_CFGS)
    ap.add_argument("--img", nargs="+", type=int, default=[320, 640])
    ap.add_argument("--backends", nargs="+", default=None, choices=list(BACKENDS),
                    help="default: pytorch pytorch_cl compiled torchscript onnx, and engine (TensorRT) on CUDA")
    ap.add_argument("--device", default="cpu", help="cpu, or a CUDA device: 0 or cuda:0")
    ap.add_argument("--half", action="store_true", help="fp16 models and inputs (CUDA only)")
    ap.add_argument("--batch-size", nargs="+", type=int, default=[1], help="batch sizes to time, e.g. 1 32")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--runs", type=int, default=30, help="timed forwards per round (median)")
    ap.add_argument("--rounds", type=int, default=1, help="interleaved rounds over all configs (median of rounds)")
    ap.add_argument("--pause", type=float, default=0.3, help="seconds of idle before each measurement")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--verbose", action="store_true", help="log model builds and exports")
    return ap.parse_args(argv)


def main(opt: argparse.Namespace) -> list[dict]:
    """Time, print the table, and return its rows (``cfg, img, batch, params, gflops, ms: {backend: ms},
    attn_ms``; a ``skipped: {backend: reason}`` entry is on every row)."""
    device = check_opt(opt)
    backends = list(opt.backends or [*PYTORCH_BACKENDS, "torchscript", "onnx"] +
                    (["engine"] if device.type == "cuda" else []))
    skipped = {b: why for b in backends if (why := backend_unavailable(b, device))}
    active = [b for b in backends if b not in skipped]
    torch.set_num_threads(opt.threads)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    log = logging.getLogger("yolov5")
    old = log.level
    log.setLevel(logging.INFO if opt.verbose else logging.WARNING)
    try:
        rows = measure(opt, device, active)
    finally:
        log.setLevel(old)
    print_table(rows, opt, device, active, skipped)
    for r in rows:
        r["skipped"] = dict(skipped)
    return rows


def run(**kwargs: Any) -> list[dict]:
    """``latency.run(cfgs=['yolov5n'], img=[64], backends=['pytorch'], runs=3)``: :func:`main` with the CLI
    defaults for the options not given."""
    opt = parse_opt([])
    for k, v in kwargs.items():
        setattr(opt, k, v)
    return main(opt)


if __name__ == "__main__":
    run_cli(main, parse_opt, "latency.py")
