"""Hyperparameter evolution (``train.py --evolve``): mutate the best hyps, train, record, repeat."""

from __future__ import annotations

import argparse
import subprocess
import time
from copy import deepcopy
from pathlib import Path
from typing import Callable

import numpy as np
import yaml

from utils.general import LOGGER, InputError, colorstr
from utils.hyps import load_hyp
from utils.plots import plot_evolve

# key: (mutation gain, lower limit, upper limit)
META = {
    "lr0": (1, 1e-5, 1e-1), "lrf": (1, 0.01, 1.0), "momentum": (0.3, 0.6, 0.98), "weight_decay": (1, 0.0, 0.001),
    "warmup_epochs": (1, 0.0, 5.0), "warmup_momentum": (1, 0.0, 0.95), "warmup_bias_lr": (1, 0.0, 0.2),
    "box": (1, 0.02, 0.2), "cls": (1, 0.2, 4.0), "cls_pw": (1, 0.5, 2.0), "obj": (1, 0.2, 4.0),
    "obj_pw": (1, 0.5, 2.0), "iou_t": (0, 0.1, 0.7), "anchor_t": (1, 2.0, 8.0), "anchors": (2, 2.0, 10.0),
    "fl_gamma": (0, 0.0, 2.0), "hsv_h": (1, 0.0, 0.1), "hsv_s": (1, 0.0, 0.9), "hsv_v": (1, 0.0, 0.9),
    "degrees": (1, 0.0, 45.0), "translate": (1, 0.0, 0.9), "scale": (1, 0.0, 0.9), "shear": (1, 0.0, 10.0),
    "perspective": (0, 0.0, 0.001), "flipud": (1, 0.0, 1.0), "fliplr": (0, 0.0, 1.0), "mosaic": (1, 0.0, 1.0),
    "mixup": (1, 0.0, 1.0), "copy_paste": (1, 0.0, 1.0)}
METRIC_KEYS = ("metrics/precision", "metrics/recall", "metrics/mAP_0.5", "metrics/mAP_0.5:0.95",
               "val/box_loss", "val/obj_loss", "val/cls_loss")


def mutate(hyp: dict, evolve_csv: Path, rng: np.random.Generator) -> dict:
    """A child of the best recorded generations: each gene scaled by a clipped random factor, then limited."""
    hyp = deepcopy(hyp)
    rows = evolve_csv.read_text().splitlines()[1:] if evolve_csv.exists() else []
    if rows:  # a header-only file (a run killed after its first write) has no parents yet
        x = np.loadtxt(rows, ndmin=2, delimiter=",")
        n = min(5, len(x))
        fit = x[:, :7] @ np.array([0.0, 0.0, 0.1, 0.9, 0, 0, 0])
        order = np.argsort(-fit)[:n]  # the top n generations
        x, w = x[order], fit[order] - fit[order].min() + 1e-6  # weights relative to the weakest kept parent
        parent = x[rng.choice(n, p=w / w.sum())]
        keys = list(hyp)
        g = np.array([META[k][0] for k in keys])
        v = np.ones(len(keys))
        while all(v == 1):
            v = (g * (rng.random(len(keys)) < 0.8) * rng.standard_normal(len(keys)) * rng.random() * 0.2 + 1)
            v = v.clip(0.3, 3.0)
        for i, k in enumerate(keys):
            hyp[k] = float(parent[i + 7] * v[i])
    for k, (_, lo, hi) in META.items():
        if k in hyp:
            hyp[k] = round(min(max(hyp[k], lo), hi), 5)
    return hyp


def record(results: tuple, hyp: dict, evolve_csv: Path, evolve_yaml: Path, fixed: dict | None = None,
           prefix: str | None = None) -> None:
    """Append one generation to evolve.csv and rewrite hyp_evolve.yaml with the best hyps so far (plus the ``fixed``
    keys that are not evolved, such as ``iou_type``, so the yaml trains the same recipe); log the generation's
    keys and values after ``prefix`` (default ``evolve: `` in blue bold)."""
    keys = (*METRIC_KEYS, *hyp.keys())
    vals = (*results, *hyp.values())
    if not evolve_csv.exists():
        evolve_csv.write_text(("%20s," * len(keys) % keys).rstrip(",") + "\n")
    with open(evolve_csv, "a") as f:
        f.write(("%20.5g," * len(vals) % vals).rstrip(",") + "\n")
    x = np.loadtxt(evolve_csv, ndmin=2, delimiter=",", skiprows=1)
    fit = x[:, :7] @ np.array([0.0, 0.0, 0.1, 0.9, 0, 0, 0])
    i = int(np.argmax(fit))
    with open(evolve_yaml, "w") as f:
        f.write("# YOLOv5 Hyperparameter Evolution Results\n"
                f"# Best generation: {i}\n# Last generation: {len(x) - 1}\n"
                "# " + ", ".join(f"{k.strip():>20s}" for k in METRIC_KEYS) + "\n"
                "# " + ", ".join(f"{v:>20.5g}" for v in x[i, :7]) + "\n\n")
        yaml.safe_dump({**dict(zip(hyp.keys(), (float(v) for v in x[i, 7:]))), **(fixed or {})}, f, sort_keys=False)
    prefix = colorstr("evolve: ") if prefix is None else prefix
    LOGGER.info(f"{prefix}{len(x)} generations finished, current result:\n"
                + prefix + ", ".join(f"{k.strip():>20s}" for k in keys) + "\n"
                + prefix + ", ".join(f"{v:20.5g}" for v in vals) + "\n\n")


def print_mutation(results: tuple, hyp: dict, save_dir: str | Path, bucket: str = "",
                   prefix: str = colorstr("evolve: ")) -> None:
    """v6.1's per-generation record: append to ``save_dir/evolve.csv``, rewrite ``save_dir/hyp_evolve.yaml``, log.

    With a ``bucket``, first pulls ``gs://<bucket>/evolve.csv`` when it is larger than the local file, and afterwards
    pushes both files back, so machines sharing a bucket pool their generations (gsutil must be installed; a
    failing gsutil raises ``subprocess.CalledProcessError`` or ``FileNotFoundError``).
    """
    save_dir = Path(save_dir)
    evolve_csv, evolve_yaml = save_dir / "evolve.csv", save_dir / "hyp_evolve.yaml"
    if bucket:
        from utils.downloads import gsutil_getsize

        url = f"gs://{bucket}/evolve.csv"
        if gsutil_getsize(url) > (evolve_csv.stat().st_size if evolve_csv.exists() else 0):
            subprocess.run(["gsutil", "cp", url, str(save_dir)], check=True)
    record(tuple(results), dict(hyp), evolve_csv, evolve_yaml, prefix=prefix)
    if bucket:
        subprocess.run(["gsutil", "cp", str(evolve_csv), str(evolve_yaml), f"gs://{bucket}"], check=True)


def check_resumable(evolve_csv: Path, hyp: dict) -> int:
    """Generations already recorded in ``evolve_csv`` (0 when it does not exist), after checking that its columns
    are this evolution's (the metrics, then the evolved hyps in the same order).

    Raises:
        InputError: the file's columns differ, so its rows cannot be parents of this evolution.
    """
    if not evolve_csv.exists():
        return 0
    lines = evolve_csv.read_text().splitlines()
    found = [k.strip() for k in lines[0].split(",")] if lines else []
    expected = [*METRIC_KEYS, *hyp]
    if found != expected:
        extra, missing = sorted(set(found) - set(expected)), sorted(set(expected) - set(found))
        raise InputError(f"{evolve_csv}: its columns are not this evolution's (not in the hyps: {extra}; missing: "
                         f"{missing}; or another order), so its rows cannot be parents. Evolve the same --hyp file, "
                         f"or start a new folder (without --resume / --exist-ok)")
    n = len(lines) - 1
    LOGGER.info(f"{colorstr('evolve: ')}continuing {evolve_csv}: {n} generation{'s' * (n != 1)} recorded, "
                f"their best are the parents")
    return n


def evolve(opt: argparse.Namespace, device, callbacks, train_fn: Callable) -> dict:
    """Run ``opt.evolve`` generations of ``train_fn(hyp, opt, device, callbacks)``; returns the best hyps.

    The folder's ``evolve.csv``, when it exists (``train.py --evolve N --resume`` reuses ``runs/evolve/exp``, as
    v6.1), is continued: its best rows are the parents and N more generations are appended.
    """
    hyp = load_hyp(opt.hyp)
    hyp.setdefault("anchors", 3)
    fixed = {k: v for k, v in hyp.items() if k not in META}  # kept as given in every generation (iou_type, nam_l1...)
    hyp = {k: v for k, v in hyp.items() if k in META}
    opt.noval, opt.nosave = True, True
    save_dir = Path(opt.save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    evolve_csv, evolve_yaml = save_dir / "evolve.csv", save_dir / "hyp_evolve.yaml"
    check_resumable(evolve_csv, hyp)
    rng = np.random.default_rng(int(time.time()))
    for _ in range(opt.evolve):
        child = mutate(hyp, evolve_csv, rng)
        results = train_fn({**deepcopy(child), **deepcopy(fixed)}, opt, device, callbacks)
        record(tuple(results), child, evolve_csv, evolve_yaml, fixed)
    plot_evolve(evolve_csv)
    LOGGER.info(f"Hyperparameter evolution finished {opt.evolve} generations\n"
                f"Results saved to {colorstr('bold', save_dir)}\n"
                f"Usage example: $ python train.py --hyp {evolve_yaml}")
    with open(evolve_yaml) as f:
        return yaml.safe_load(f)
