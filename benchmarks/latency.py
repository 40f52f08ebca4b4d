"""Inference latency of model configs × backends × image sizes, and each attention config's overhead.

    python benchmarks/latency.py                                   # yolov5n/s and their NAM/SimAM/CoTA twins
    python benchmarks/latency.py --cfgs yolov5n yolov5n-CotLayer --img 320 --backends pytorch onnx

Models are built from their yamls with random weights, fused (as attempt_load deploys them) and timed at batch 1
on a zero image: the median of ``--runs`` forwards after ``--warmup``; with ``--rounds R`` every (config, size,
backend) is timed R times, in a shuffled order each round, and the median of the R medians is reported, so that
slow drift of the machine's speed does not land on one config. Overhead of ``<base>-<Attention>`` is relative to
``<base>`` with the same backend and size. 'attn ms' times the attention layers alone (:func:`attention_ms`).
Timing belongs here, never in pass/fail tests.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from copy import deepcopy
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from export import export_onnx, export_torchscript, prepare_for_export  # noqa: E402
from models.attention_vis import attention_layers  # noqa: E402
from models.backends import export_metadata  # noqa: E402
from models.yolo import Model  # noqa: E402
from utils.flops import model_gflops  # noqa: E402
from utils.profiling import interleaved_median_ms, median_ms  # noqa: E402
from utils.recording import Recorder  # noqa: E402

DEFAULT_CFGS = ["yolov5n", "yolov5n-NAM", "yolov5n-SimAM", "yolov5n-CoTA",
                "yolov5s", "yolov5s-NAM", "yolov5s-SimAM", "yolov5s-CoTA"]


def build(cfg: str) -> Model:
    f = ROOT / "models" / (cfg if cfg.endswith(".yaml") else f"{cfg}.yaml")
    return Model(f).eval().fuse()


def prepare_backends(model: Model, img: int, backends: list[str], tmp: Path, tag: str) -> dict[str, Callable]:
    """One zero-argument callable per backend that runs a batch-1 forward of ``model`` at ``img``."""
    x = torch.zeros(1, 3, img, img)
    out: dict[str, Callable] = {}
    if "pytorch" in backends:
        out["pytorch"] = lambda: model(x)
    meta = export_metadata(int(model.stride.max()), list(model.names))
    em = prepare_for_export(deepcopy(model))
    with torch.no_grad():
        em(x)  # dry run (fills Detect grids)
    if "torchscript" in backends:
        f = export_torchscript(em, x, tmp / f"{tag}_{img}", meta)
        if f is not None:
            ts = torch.jit.load(str(f))
            out["torchscript"] = lambda: ts(x)
    if "onnx" in backends:
        import onnxruntime as ort

        f = export_onnx(em, x, tmp / f"{tag}_{img}", meta)
        if f is not None:
            sess = ort.InferenceSession(str(f), providers=["CPUExecutionProvider"])
            name, xn = sess.get_inputs()[0].name, x.numpy()
            out["onnx"] = lambda: sess.run(None, {name: xn})
    return out


def attention_ms(model: Model, img: int, runs: int) -> float:
    """PyTorch time of the model's attention layers alone, each on a tensor of its real input shape at ``img``.

    End-to-end differences of a few percent drown in run-to-run noise on a small CPU model; timing the added
    layers by themselves (many repetitions, median) gives the cost they add, which the end-to-end numbers bound.
    The layers are those of :func:`models.attention_vis.attention_layers` (a yaml row with ``n > 1``, an
    ``nn.Sequential`` of attention modules, is one layer); their input shapes are recorded in one forward.
    """
    layers = attention_layers(model)
    if not layers:
        return 0.0
    with torch.no_grad():
        with Recorder(layers) as rec:
            model(torch.zeros(1, 3, img, img))
        total = 0.0
        for r in rec:
            x = torch.randn(r.inputs[0].shape)
            total += median_ms(lambda m=r.module, x=x: m(x), 10, runs)
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cfgs", nargs="+", default=DEFAULT_CFGS)
    ap.add_argument("--img", nargs="+", type=int, default=[320, 640])
    ap.add_argument("--backends", nargs="+", default=["pytorch", "torchscript", "onnx"])
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--runs", type=int, default=30, help="timed forwards per round (median)")
    ap.add_argument("--rounds", type=int, default=1, help="interleaved rounds over all configs (median of rounds)")
    ap.add_argument("--pause", type=float, default=0.3, help="seconds of idle before each measurement")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--verbose", action="store_true", help="log model builds and exports")
    opt = ap.parse_args()
    torch.set_num_threads(opt.threads)
    logging.getLogger("yolov5").setLevel(logging.INFO if opt.verbose else logging.WARNING)

    rows, calls, models = {}, {}, {}
    with tempfile.TemporaryDirectory() as d:
        for cfg in opt.cfgs:
            model = models[cfg] = build(cfg)
            params = sum(p.numel() for p in model.parameters())
            for img in opt.img:
                rows[(cfg, img)] = (params, model_gflops(model, img), {})
                for b, fn in prepare_backends(model, img, opt.backends, Path(d), Path(cfg).stem).items():
                    calls[(cfg, img, b)] = fn
        with torch.no_grad():  # shuffled interleaved rounds: no config profits from its place in the order
            timed = interleaved_median_ms(calls, opt.warmup, opt.runs, opt.rounds, opt.pause)
        for (cfg, img, b), ms in timed.items():
            rows[(cfg, img)][2][b] = ms
        attn = {(cfg, img): attention_ms(models[cfg], img, 10 * opt.runs) for cfg, img in rows}

    print(f"\nLatency, batch 1, CPU x{opt.threads} threads, median of {opt.runs} after {opt.warmup} warm-up, "
          f"median over {opt.rounds} interleaved round(s) "
          f"(fused models; ms). Overhead vs the config without its attention suffix, same backend and size. "
          f"'attn ms': the attention layers alone in PyTorch on their real input shapes (median of "
          f"{10 * opt.runs}); 'attn %': that as a share of the base config's PyTorch time.\n")
    head = " | ".join(f"{b} ms" for b in opt.backends) + " | " + " | ".join(f"{b} +%" for b in opt.backends)
    print(f"| model | img | params | GFLOPs | {head} | attn ms | attn % |")
    print("|" + "---|" * (6 + 2 * len(opt.backends)))
    for (cfg, img), (params, gflops, ms) in rows.items():
        base = rows.get((cfg.split("-")[0], img)) if "-" in cfg else None
        over = []
        for b in opt.backends:
            if base and b in ms and b in base[2]:
                over.append(f"{(ms[b] / base[2][b] - 1) * 100:+.1f}")
            else:
                over.append("")
        cols = " | ".join(f"{ms[b]:.1f}" if b in ms else "n/a" for b in opt.backends)
        g = f"{gflops:.2f}" if gflops is not None else "n/a"
        a = attn[(cfg, img)]
        share = f"{a / base[2]['pytorch'] * 100:.2f}" if base and a and "pytorch" in base[2] else ""
        print(f"| {cfg} | {img} | {params:,} | {g} | {cols} | {' | '.join(over)} | {a:.3f} | {share} |")


if __name__ == "__main__":
    main()
