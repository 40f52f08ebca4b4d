"""Export one checkpoint to every format export.py makes, validate and time each, and check they agree with PyTorch.

    python benchmarks/formats.py --weights runs/train/exp/weights/best.pt --data data/shapes.yaml --img 320
    python benchmarks/formats.py --weights best.pt --data bccd.yaml --img 320 --device 0 --half --strict

For PyTorch first, then every row of ``models.backends.export_formats()`` in order: the checkpoint (copied into
the run folder ``<project>/<name>``, incremented, so that no export lands next to the user's weights) is exported
with ``export.run`` at ``--img`` (batch 1, static shape), validated with ``val.run(task='benchmark')`` (square
letterboxed batches for every format alike, so that a static export sees the same pixels as PyTorch) and timed:
val's inference ms per image and a batch-1 latency through ``DetectMultiBackend`` (median of ``--runs`` forwards
of a zero image after ``--warmup``, CUDA-synchronised on a GPU). A format that export.py does not export, whose
packages are missing, or that needs CUDA on a CPU machine is ``skipped: <reason>``; one whose export, validation
or timing raises is ``failed: <step>: <error>``; the run goes on either way.

Every format's mAP@.5 and mAP@.5:.95 must equal PyTorch's within ``--tol`` (0.001): a row that differs more is
marked ``MISMATCH``, and ``--strict`` makes the script exit with status 1 on a mismatch or a failure. The table is
logged and written to ``--csv`` (default ``<project>/<name>/formats.csv``); :func:`run` returns its rows.
"""

from __future__ import annotations

import argparse
import csv
import io
import shutil
import sys
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import export  # noqa: E402
import val  # noqa: E402
from models.backends import DetectMultiBackend, ExportFormat, export_formats  # noqa: E402
from utils.format_requirements import format_unavailable  # noqa: E402
from utils.general import (LOGGER, InputError, atomic_write, check_img_size, colorstr, file_size,  # noqa: E402
                           increment_path, print_args, run_cli)
from utils.profiling import median_ms, synced  # noqa: E402
from utils.torch_utils import select_device  # noqa: E402

FIELDS = ["format", "argument", "file", "size_mb", "mAP50", "mAP50_95", "delta_mAP50", "delta_mAP50_95", "val_ms",
          "latency_ms", "status"]  # the CSV columns, in order


def wanted_formats(include: list[str] | tuple[str, ...] | str | None) -> list[ExportFormat]:
    """The export-format rows to benchmark, in table order, PyTorch always first.

    Args:
        include: export.py ``--include`` arguments (``pytorch`` or ``-`` for PyTorch); None or empty: all.

    Raises:
        InputError: an argument that names no format.
    """
    rows = export_formats()
    if not include:
        return rows
    want = {"-" if str(x).lower() in ("pytorch", "pt", "-") else str(x).lower()
            for x in ([include] if isinstance(include, str) else include)}
    unknown = want - {f.argument for f in rows}
    if unknown:
        raise InputError(f"--include {sorted(unknown)}: known formats are pytorch "
                         f"{' '.join(f.argument for f in rows if f.argument != '-')}")
    return [f for f in rows if f.argument == "-" or f.argument in want]


def latency_ms(f: str | Path, device: torch.device, imgsz: int, half: bool, warmup: int, runs: int) -> float:
    """Median batch-1 forward time (ms) of the model file ``f`` through ``DetectMultiBackend`` on a zero image."""
    backend = DetectMultiBackend(f, device=device)
    if half and (backend.pt or backend.jit):
        backend.model.half()
    imgsz = check_img_size(imgsz, s=int(backend.stride))
    x = torch.zeros(1, 3, imgsz, imgsz, device=device, dtype=torch.half if half else torch.float32)
    with torch.no_grad():
        return median_ms(synced(lambda: backend(x), device), warmup, runs)


def runtime_note(argument: str, device: torch.device) -> str:
    """``' (...)'`` when the format ran somewhere else than asked (ONNX Runtime without its CUDA provider on a GPU
    machine runs on the CPU), else ``''``."""
    if argument == "onnx" and device.type == "cuda":
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            return " (ran on the CPU: onnxruntime has no CUDAExecutionProvider; pip install onnxruntime-gpu)"
    return ""


def benchmark_format(fmt: ExportFormat, src: Path, data: str | Path, imgsz: int, batch_size: int,
                     device: torch.device, half: bool, workers: int, save_dir: Path, warmup: int, runs: int) -> dict:
    """Export ``src`` to ``fmt`` (PyTorch: ``src`` itself), validate and time it; one table row."""
    key = "pytorch" if fmt.argument == "-" else fmt.argument
    row: dict[str, Any] = {k: None for k in FIELDS}
    row.update(format=fmt.format, argument=key, file="", status="ok")
    why = format_unavailable(fmt.argument, device, fmt.supported, fmt.format)
    if why:
        row["status"] = f"skipped: {why}"
        return row
    step = "export"
    try:
        if fmt.argument == "-":
            f = src
        else:
            f = Path(export.run(weights=src, imgsz=[imgsz, imgsz], batch_size=1, device=str(device), half=half,
                                include=[fmt.argument])[0])
        row.update(file=str(f), size_mb=round(file_size(f), 2))
        step = "val"
        results, _, t = val.run(data=data, weights=str(f), batch_size=batch_size, imgsz=imgsz, device=str(device),
                                half=half, task="benchmark", workers=workers, plots=False,
                                project=save_dir / "val", name=key, exist_ok=True)
        row.update(mAP50=float(results[2]), mAP50_95=float(results[3]), val_ms=round(t[1], 2))
        step = "latency"
        row["latency_ms"] = round(latency_ms(f, device, imgsz, half, warmup, runs), 2)
        row["status"] = "ok" + runtime_note(fmt.argument, device)
    except ImportError as e:  # a runtime the requirement table does not know about
        row["status"] = f"skipped: {e.name or e} is not installed" if step == "export" else f"failed: {step}: {e}"
    except Exception as e:  # noqa: BLE001 - one format failing leaves the others to run
        LOGGER.warning(f"WARNING: {fmt.format} {step} failed: {type(e).__name__}: {e}")
        row["status"] = f"failed: {step}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return row


def compare_to_pytorch(rows: list[dict], tol: float = 0.001) -> list[dict]:
    """Fill ``delta_mAP50``/``delta_mAP50_95`` (format − PyTorch) and mark ``MISMATCH`` where either exceeds ``tol``.

    Rows without mAP (skipped, failed) and all rows when PyTorch has none are left as they are.

    Returns:
        ``rows``, changed in place.
    """
    base = next((r for r in rows if r["argument"] == "pytorch" and r["mAP50_95"] is not None), None)
    if base is None:
        return rows
    for r in rows:
        if r["mAP50_95"] is None:
            continue
        r["delta_mAP50"] = r["mAP50"] - base["mAP50"]
        r["delta_mAP50_95"] = r["mAP50_95"] - base["mAP50_95"]
        worst = max(abs(r["delta_mAP50"]), abs(r["delta_mAP50_95"]))
        if worst > tol and r["status"].startswith("ok"):
            r["status"] = f"MISMATCH: mAP differs from PyTorch by {worst:.4f} > {tol}"
    return rows


def table_text(rows: list[dict]) -> str:
    """The rows as a markdown table (file names only; the CSV has the paths)."""
    def num(x: Any, fmt: str) -> str:
        return "" if x is None else format(x, fmt)

    lines = ["| format | file | size MB | mAP@.5 | mAP@.5:.95 | Δ mAP@.5:.95 | ms/img (val) | b1 latency ms | "
             "status |", "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['format']} | {Path(r['file']).name if r['file'] else ''} | {num(r['size_mb'], '.2f')} | "
                     f"{num(r['mAP50'], '.4f')} | {num(r['mAP50_95'], '.4f')} | {num(r['delta_mAP50_95'], '+.4f')} | "
                     f"{num(r['val_ms'], '.2f')} | {num(r['latency_ms'], '.2f')} | {r['status']} |")
    return "\n".join(lines)


def write_csv(rows: list[dict], path: str | Path) -> Path:
    """``rows`` as CSV (columns :data:`FIELDS`, empty cells for None), written atomically."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=FIELDS, extrasaction="ignore")
    w.writeheader()
    w.writerows({k: ("" if r.get(k) is None else r[k]) for k in FIELDS} for r in rows)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: f.write(buf.getvalue().encode()))
    return path


def run(weights: str | Path = ROOT / "yolov5s.pt", data: str | Path = ROOT / "data/shapes.yaml", imgsz: int = 640,
        batch_size: int = 1, device: str = "cpu", half: bool = False, include: list[str] | None = None,
        workers: int = 8, project: str | Path = ROOT / "runs/benchmarks", name: str = "exp", exist_ok: bool = False,
        csv: str | Path | None = None, tol: float = 0.001, warmup: int = 10, runs: int = 50,
        **_: Any) -> list[dict]:
    """Benchmark ``weights`` in every format; log the table, write the CSV and return the rows (keys :data:`FIELDS`).

    Raises:
        InputError: ``weights`` is not a ``.pt`` file, ``half`` on the CPU, or an unknown ``include`` format.
        FileNotFoundError: ``weights`` does not exist.
    """
    weights = Path(weights)
    if weights.suffix != ".pt":
        raise InputError(f"--weights {weights}: give a PyTorch .pt checkpoint (it is exported to the other formats)")
    if not weights.is_file():
        raise FileNotFoundError(f"--weights {weights}: file not found")
    formats = wanted_formats(include)
    dev = select_device(device, batch_size=batch_size)
    if half and dev.type == "cpu":
        raise InputError("--half: fp16 exports and inference need a CUDA device (--device 0); drop --half on the CPU")
    save_dir = increment_path(Path(project) / name, exist_ok=exist_ok, mkdir=True)
    src = save_dir / weights.name
    if src.resolve() != weights.resolve():
        shutil.copy2(weights, src)  # exports are written next to their source: keep them in the run folder
    rows = [benchmark_format(f, src, data, imgsz, batch_size, dev, half, workers, save_dir, warmup, runs)
            for f in formats]
    compare_to_pytorch(rows, tol)
    f = write_csv(rows, csv or save_dir / "formats.csv")
    LOGGER.info(f"\n{colorstr('Benchmarks:')} {weights} on {data} at {imgsz} px, {dev.type}"
                f"{' fp16' if half else ''} (val batch {batch_size}; latency batch 1, median of {runs})\n"
                f"{table_text(rows)}\nResults saved to {colorstr('bold', save_dir)}, table {f}")
    return rows


def parse_opt(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="export to every format, validate, time, compare with PyTorch")
    parser.add_argument("--weights", type=str, default=ROOT / "yolov5s.pt", help="model.pt path")
    parser.add_argument("--data", type=str, default=ROOT / "data/shapes.yaml", help="dataset.yaml path")
    parser.add_argument("--imgsz", "--img", "--img-size", type=int, default=640, help="inference size (pixels)")
    parser.add_argument("--batch-size", type=int, default=1, help="val batch size (static exports run batch 1)")
    parser.add_argument("--device", default="cpu", help="cuda device, i.e. 0, or cpu")
    parser.add_argument("--half", action="store_true", help="FP16 export and inference (CUDA only)")
    parser.add_argument("--include", nargs="+", default=None, help="formats to benchmark (default: all); "
                        "PyTorch always runs")
    parser.add_argument("--workers", type=int, default=8, help="val dataloader workers")
    parser.add_argument("--project", default=ROOT / "runs/benchmarks", help="save to project/name")
    parser.add_argument("--name", default="exp", help="save to project/name")
    parser.add_argument("--exist-ok", action="store_true", help="existing project/name ok, do not increment")
    parser.add_argument("--csv", default=None, help="CSV path (default: <project>/<name>/formats.csv)")
    parser.add_argument("--tol", type=float, default=0.001, help="largest mAP difference from PyTorch")
    parser.add_argument("--strict", action="store_true", help="exit 1 on a MISMATCH or a failed format")
    parser.add_argument("--warmup", type=int, default=10, help="untimed forwards before the latency runs")
    parser.add_argument("--runs", type=int, default=50, help="timed batch-1 forwards (median)")
    opt = parser.parse_args(argv)
    print_args("formats", opt)
    return opt


def main(opt: argparse.Namespace) -> list[dict]:
    rows = run(**vars(opt))
    bad = [r["format"] for r in rows if r["status"].startswith(("MISMATCH", "failed"))]
    if bad and opt.strict:
        LOGGER.error(f"formats.py --strict: {', '.join(bad)} did not reproduce PyTorch (see the table)")
        raise SystemExit(1)
    return rows


if __name__ == "__main__":
    run_cli(main, parse_opt, "formats.py")
