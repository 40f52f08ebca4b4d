"""What an ablation report states besides its numbers: the command, code version, data, environment.

A reviewer reading ``ablation.md`` alone must be able to tell exactly what ran: these helpers collect it without
touching the network or the data beyond listing files.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import yaml

from utils.ablation import BASELINE, run_key
from utils.ablation_report import ReportInfo
from utils.ablation_stats import run_records
from utils.general import LOGGER


def command_line(script: str, parser: argparse.ArgumentParser, opt: argparse.Namespace,
                 always: Sequence[str] = ()) -> str:
    """``python <script> ...`` with every option whose value differs from its default (the exact settings), and
    the options named in ``always`` (by ``dest``) even at their default."""
    parts = ["python", script]
    for a in parser._actions:
        if not a.option_strings or a.dest == "help":
            continue
        v = getattr(opt, a.dest, a.default)
        if v == a.default and a.dest not in always or v is None:
            continue
        flag = a.option_strings[0]
        if isinstance(a, argparse.BooleanOptionalAction):
            parts.append(flag if v else f"--no-{flag[2:]}")
        elif a.nargs == 0:  # store_true / store_false
            parts.append(flag)
        elif isinstance(v, (list, tuple)):
            parts += [flag, *map(str, v)]
        elif str(v).startswith("-"):  # a value that looks like a flag must be attached: --train-args=--cos-lr
            parts.append(f"{flag}={v}")
        else:
            parts += [flag, str(v)]
    return shlex.join(parts)


def code_version(root: str | Path) -> str:
    """``git describe --always --dirty`` and the commit date of the repository at ``root``, or ``unknown``."""
    try:
        run = lambda *a: subprocess.run(["git", *a], cwd=root, capture_output=True, text=True,  # noqa: E731
                                        timeout=10).stdout.strip()
        rev, date = run("describe", "--always", "--dirty", "--tags"), run("log", "-1", "--format=%cI")
        return f"{rev} ({date})" if rev else "unknown (not a git checkout)"
    except (OSError, subprocess.SubprocessError):
        return "unknown (git not available)"


def environment() -> dict[str, str]:
    """Python, PyTorch and NumPy versions, the CPU and its threads, and the CUDA device (or none)."""
    env = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
           "os": f"{platform.system()} {platform.release()}",
           "cpu": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                  f"{torch.get_num_threads()} torch threads"}
    if torch.cuda.is_available():
        env["cuda"] = f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda}, cuDNN " \
                      f"{torch.backends.cudnn.version()})"
    else:
        env["cuda"] = "none (no CUDA device)"
    return env


def data_summary(data: str | Path, val_target_cls: Sequence[int] | None = None) -> dict:
    """``{"yaml", "nc", "names", "train_images", "val_images", "val_labels"}`` of a dataset yaml.

    Image counts come from listing the splits (None when a split cannot be listed); ``val_labels`` counts the
    validation labels per class name from ``val_target_cls`` (e.g. a run's evaluation records), else None.
    """
    from utils.dataset_yaml import check_dataset, split_path
    from utils.labels import img_files_from_path

    with open(data, errors="ignore") as f:
        d = yaml.safe_load(f) or {}
    names = d.get("names")
    names = list(names.values()) if isinstance(names, dict) else names
    out = {"yaml": str(data), "nc": d.get("nc", len(names) if names else None), "names": names,
           "train_images": None, "val_images": None, "val_labels": None}
    try:
        resolved = check_dataset(data, autodownload=False)
        for split in ("train", "val"):
            out[f"{split}_images"] = len(img_files_from_path(split_path(resolved, split)))
    except Exception as e:  # a report is still written; it says what it could not count
        LOGGER.warning(f"WARNING: could not count the images of {data} ({type(e).__name__}: {e})")
    if val_target_cls is not None:
        counts = np.bincount(np.asarray(val_target_cls, dtype=np.int64), minlength=len(names or []))
        out["val_labels"] = {(names[i] if names and i < len(names) else str(i)): int(n) for i, n in enumerate(counts)}
    return out


METHOD = (  # the paired bootstrap, in the report's words
    "Paired bootstrap over validation images: for each seed, the variant and the baseline trained with that seed "
    "are scored on the same {n} resamples of the {images} validation images (drawn with replacement, seed {seed}), "
    "from the per-image records of each run's best epoch; the seeds' resampled differences are pooled. Δ is the "
    "mean over seeds of the full-set difference, the interval the {level:.0%} percentile interval of the pooled "
    "differences, and wins the share of resamples where the variant scores higher. Verdict: better / worse when the "
    "interval excludes 0, else no detectable difference. It measures validation-set sampling noise, not training "
    "noise: the seeds cover that, and a verdict from one seed says nothing about another.")


def report_info(opt: argparse.Namespace, state: dict, plots: list[str], where: str, parser: argparse.ArgumentParser,
                root: Path) -> ReportInfo:
    """Everything the report states besides the numbers (see ``utils.ablation_report.ReportInfo``).

    Args:
        opt: ablate.py's options (paths resolved, seeds expanded).
        state: the ablation state (runs, measured variants).
        plots: the plot files written next to the report.
        where: where the modules sit, in words.
        parser: ablate.py's parser (the command line lists the options that differ from its defaults).
        root: the repository (for the code version).
    """
    lat = state["variants"][BASELINE]["latency_at"]
    base_run = next((r for r in (state["runs"].get(run_key(BASELINE, s)) for s in opt.seeds)
                     if r and r.get("status") == "done"), None)
    rec = run_records(base_run)
    n_images = rec.n_images if rec else "the"
    ops = {}
    for k, r in state["runs"].items():
        f = Path(r["dir"]) / "determinism.json"
        if f.is_file():
            ops[k] = json.loads(f.read_text()).get("nondeterministic_ops", [])
    settings = [f"base `{opt.base}`, modules {where}",
                f"{opt.epochs} epochs, img {opt.imgsz}, batch {opt.batch_size}, hyp `{Path(opt.hyp).name}`, weights "
                f"`{opt.weights or 'none (from scratch)'}`, device `{opt.device or 'default'}`",
                "deterministic mode: " + ("on for every seed (train.py --deterministic)" if opt.deterministic else
                                          "off (v6.1's speed-first mode: cuDNN may benchmark)"),
                "mAP: best epoch of each run (max 0.1·mAP@.5 + 0.9·mAP@.5:.95, results.csv), mean ± sample std "
                "over seeds; Δ = variant − baseline",
                f"params and GFLOPs (img {opt.imgsz}) of the model as trained; latency of the fused model: median "
                f"of {lat['rounds']} interleaved rounds of the median of {lat['runs']} forwards after "
                f"{lat['warmup']} warm-up, CPU fp32 batch 1 with {lat['threads']} threads"
                + (f", GPU fp16 batch 1 and 32 on {lat['gpu']}" if lat.get("gpu") else "; no CUDA device: GPU n/a")]
    with open(opt.hyp, errors="ignore") as f:
        hyp = yaml.safe_load(f) or {}
    cli = argparse.Namespace(**vars(opt))  # --seeds as typed: a count (0..N-1) or two or more seeds
    cli.seeds = [len(opt.seeds)] if list(opt.seeds) == list(range(len(opt.seeds))) else list(opt.seeds)
    always = ("base", "modules", "sweep_at" if opt.sweep_at else "at", "data", "epochs", "imgsz", "seeds")
    trained = sorted({r.get("code", "not recorded") for r in state["runs"].values()})
    code = f"{code_version(root)} (this report); runs trained with {', '.join(trained) or 'none yet'}"
    return ReportInfo(command=command_line("ablate.py", parser, cli, always), code_version=code,
                      data=data_summary(opt.data, rec.target_cls if rec else None), hyp=hyp, seeds=list(opt.seeds),
                      settings=settings, environment=environment(), plots=plots, nondeterministic_ops=ops,
                      method=METHOD.format(n=opt.bootstrap, images=n_images, seed=opt.bootstrap_seed, level=0.95),
                      sweep=bool(opt.sweep_at))
