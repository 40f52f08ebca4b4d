"""Train yolov5n with each C3 alias (models/blocks.py) at P3-P5 for one epoch and check that every loss is finite.

    python benchmarks/c3_alias_check.py                    # every alias, 1 epoch at 64 px, CPU
    python benchmarks/c3_alias_check.py --aliases C3SE CoT3 --epochs 2 --project runs/c3check

The dataset is the tiny synthetic shapes set (``utils.synthetic.tiny_dataset``: 32 train / 16 val images), made
under ``--project``. Layers 17, 20 and 23 (the head C3s) of ``models/yolov5n.yaml`` take the alias with their own
arguments. An alias whose attention module is not registered is reported as skipped. Prints one table row per
alias (parameters, train and val losses of the last epoch, seconds) and exits 1 if any loss is not finite or a
run failed.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import math
import shutil
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

HEAD_C3 = (7, 10, 13)  # positions of layers 17, 20, 23 in yolov5n.yaml's head
LOSSES = ("train/box_loss", "train/obj_loss", "train/cls_loss", "val/box_loss", "val/obj_loss", "val/cls_loss")


def alias_cfg(alias: str, folder: Path) -> Path:
    """yolov5n.yaml with the head C3s (17, 20, 23) made ``alias``, written to ``folder``."""
    d = yaml.safe_load((ROOT / "models" / "yolov5n.yaml").read_text())
    for k in HEAD_C3:
        d["head"][k][2] = alias
    f = folder / f"yolov5n-{alias}.yaml"
    f.write_text(yaml.safe_dump(d, sort_keys=False))
    return f


def last_losses(run_dir: Path) -> dict[str, float]:
    """The loss columns of the last row of a run's results.csv."""
    with open(run_dir / "results.csv") as fh:
        rows = [{k.strip(): v.strip() for k, v in r.items()} for r in csv.DictReader(fh)]
    return {k: float(rows[-1][k]) for k in LOSSES}


def check_alias(alias: str, data: Path, project: Path, epochs: int, img: int) -> dict:
    """Train one alias; returns the table row (``status`` ok / skipped / FAILED / NOT FINITE)."""
    import train
    from models import registry
    from models.blocks import ALIASES

    module, where = ALIASES[alias]
    row = {"alias": alias, "module": module, "where": where}
    if module not in {s.name for s in registry.specs("attention")}:
        return {**row, "status": f"skipped ({module} not registered)"}
    cfg = alias_cfg(alias, project)
    shutil.rmtree(project / alias, ignore_errors=True)  # a fresh run folder: results.csv holds this run only
    t = time.time()
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log):
            train.run(cfg=str(cfg), data=str(data), weights="", epochs=epochs, imgsz=img, batch_size=16, workers=0,
                      device="cpu", project=str(project), name=alias, exist_ok=True, seed=0)
    except Exception as e:  # a failed run is a row of the table, the others go on
        return {**row, "status": f"FAILED: {type(e).__name__}: {e}"}
    from models.yolo import Model

    params = sum(p.numel() for p in Model(cfg, nc=yaml.safe_load(data.read_text())["nc"]).parameters())
    losses = last_losses(project / alias)
    ok = all(math.isfinite(v) for v in losses.values())
    return {**row, "params": params, **losses, "s": time.time() - t, "status": "ok" if ok else "NOT FINITE"}


def table(rows: list[dict]) -> str:
    """The rows as a markdown table."""
    head = ["alias", "module", "where", "params", *[k.replace("_loss", "") for k in LOSSES], "s", "status"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["alias"], r["module"], r["where"], str(r.get("params", "")),
                 *[f"{r[k]:.4f}" if k in r else "" for k in LOSSES], f"{r['s']:.0f}" if "s" in r else "", r["status"]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    from models.blocks import ALIASES
    from utils.general import LOGGER
    from utils.synthetic import tiny_dataset

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--aliases", nargs="+", default=list(ALIASES), choices=list(ALIASES))
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--img", type=int, default=64)
    ap.add_argument("--project", type=Path, default=ROOT / "runs" / "c3_alias_check")
    opt = ap.parse_args()
    opt.project.mkdir(parents=True, exist_ok=True)
    data = tiny_dataset(opt.project / "data")
    level = LOGGER.level
    rows = []
    for alias in opt.aliases:
        LOGGER.setLevel("WARNING")  # the training logs would bury the table
        try:
            rows.append(check_alias(alias, data, opt.project, opt.epochs, opt.img))
        finally:
            LOGGER.setLevel(level)
        print(f"{alias}: {rows[-1]['status']}", flush=True)
    print(table(rows))
    bad = [r["alias"] for r in rows if not (r["status"] == "ok" or r["status"].startswith("skipped"))]
    print(f"{len(rows) - len(bad)}/{len(rows)} aliases ok or skipped" + (f"; failed: {', '.join(bad)}" if bad else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
