"""Ablate attention modules: train a base model and its attention variants over seeds; compare them, paired.

Usage:
    $ python ablate.py --base models/yolov5n.yaml --modules NAMAttention SimAM --at 23 \\
          --data ../shared/data/bccd/bccd.yaml --epochs 10 --img 320 --seeds 2 --device cpu --workers 2 --name bccd
    $ python ablate.py --modules SimAM --sweep-at 2 4 6 9 13 17 20 23 ...   # where does SimAM help?

``--at N`` inserts each module right *after* layer N (``models/yaml_edit.insert_after``): the attention layer
reads layer N's output and feeds every layer that read N (``--at 23`` on yolov5n/s puts it between the last C3 and
Detect, as in ``models/yolov5s-NAM.yaml``). Several ``--at`` values insert one copy after each of those layers.
``--sweep-at`` makes one variant per module and position instead (``SimAM@9``: SimAM after layer 9). With
``--weights`` every variant starts from the same pretrained weights (the exact transfer of an insertion).

Every run trains in deterministic mode (``train.py --deterministic``, all seeds alike; ``--no-deterministic`` for
v6.1's mode). Metrics are those of each run's best epoch (max 0.1·mAP@.5 + 0.9·mAP@.5:.95, the epoch ``best.pt``
was saved at); each variant is compared with the baseline of the same seed by a paired bootstrap over validation
images (``utils.bootstrap``, ``--bootstrap`` resamples) on the per-image records of that epoch. Params and GFLOPs
are those of the model as trained; latency that of the fused model (CPU fp32 batch 1; GPU fp16 batch 1 and 32 when
CUDA is there), timed in interleaved rounds once and cached (``--remeasure`` re-times).

Everything goes to ``<project>/<name>`` (default ``runs/ablate/exp``): ``cfgs/<variant>.yaml``,
``runs/<variant>_s<seed>/`` (one ``train.py`` run each, in a subprocess), ``logs/``, ``ablation.json`` (state),
``ablation.md`` (the report), ``ablation.csv``, ``ablation.png`` and, for a sweep, ``sweep.png``. Rerunning the
same command resumes: finished runs are skipped, an interrupted run continues from its ``last.pt``, failed runs
are retried; the training settings must match the first invocation. See docs/ablation.md.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from copy import deepcopy
from datetime import datetime
from pathlib import Path

import torch
import yaml
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

FILE = Path(__file__).resolve()
ROOT = FILE.parents[0]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

from models.experimental import safe_classes  # noqa: E402
from models.graph import LayerGraph  # noqa: E402
from models.registry import nominal_for  # noqa: E402
from models.yaml_edit import insert_after  # noqa: E402
from models.yolo import Model  # noqa: E402
from utils.ablation import (BASELINE, best_epoch_metrics, load_state, run_key, save_state,  # noqa: E402
                            settings_diff, summarize)
from utils.ablation_info import code_version, report_info  # noqa: E402
from utils.ablation_plots import plot_ablation, plot_sweep  # noqa: E402
from utils.ablation_report import markdown_table, paired_table, write_csv, write_report  # noqa: E402
from utils.ablation_stats import paired_results  # noqa: E402
from utils.checkpoint import load_checkpoint  # noqa: E402
from utils.flops import model_gflops  # noqa: E402
from utils.general import LOGGER, colorstr, print_args, run_cli  # noqa: E402
from utils.profiling import batch_latency_ms, interleaved_median_ms  # noqa: E402
from utils.run_dir import RunLock  # noqa: E402


@contextmanager
def quiet(level: int = logging.WARNING):
    """Silence the project logger's INFO lines (model layer tables) inside the block."""
    old = LOGGER.level
    LOGGER.setLevel(max(level, old))
    try:
        yield
    finally:
        LOGGER.setLevel(old)


# --------------------------------------------------------------------------------------------------- variants
def layer_channels(cfg: str | Path | dict, indices: list[int]) -> dict[int, int]:
    """Output channels of the given layers of a model yaml, read from its layer graph (nothing is built or run)."""
    d = deepcopy(cfg) if isinstance(cfg, dict) else yaml.safe_load(Path(cfg).read_text())
    graph = LayerGraph.from_dict(d, file=str(cfg) if not isinstance(cfg, dict) else None)
    bad = [i for i in indices if not 0 <= i < len(graph) - 1]
    if bad:
        raise ValueError(f"--at {bad}: layer index out of range; a module can follow layers 0..{len(graph) - 2} "
                         f"(layer {len(graph) - 1} is Detect)")
    return {i: graph[i].c_out for i in indices}


def variant_yaml(base_text: str, module: str, at: list[int], channels: dict[int, int], gw: float) -> str:
    """``base_text`` with ``module`` inserted after each layer in ``at`` (highest first, so indices stay valid).

    The argument is the nominal (width 1.0) channel count of the input, like the ready-made yamls (``[1024]``);
    when no nominal count scales back exactly, ``[]`` lets the module take the real input channels.
    """
    text = base_text
    for n in sorted(set(at), reverse=True):
        nominal = nominal_for(channels[n], gw)  # the registry's own rule, so the yaml builds
        args = [] if nominal is None else [nominal]
        text = insert_after(text, n, module, args, comment=f"# {n + 1} {module} (ablate.py: after layer {n})")
    return text


def variant_specs(modules: list[str], at: list[int], sweep_at: list[int] | None) -> dict[str, tuple[str, list[int]]]:
    """``{variant: (module, positions)}``: one variant per module after every ``at`` layer, or with ``sweep_at``
    one variant per module and position, named ``<module>@<position>``."""
    if sweep_at:
        return {f"{m}@{p}": (m, [p]) for m in modules for p in dict.fromkeys(sweep_at)}
    return {m: (m, list(at)) for m in modules}


def write_cfgs(base: Path, specs: dict[str, tuple[str, list[int]]], cfg_dir: Path) -> dict[str, Path]:
    """Write ``baseline.yaml`` (the base text) and one ``<variant>.yaml`` per spec; return ``{variant: path}``.

    A cfg that already exists (a resumed ablation) must describe the same model: its runs were trained with it.
    """
    text = base.read_text()
    d = yaml.safe_load(text)
    channels = layer_channels(d, sorted({p for _, at in specs.values() for p in at}))
    texts = {BASELINE: text}
    for v, (m, at) in specs.items():
        texts[v] = variant_yaml(text, m, at, channels, float(d.get("width_multiple", 1.0)))
    cfg_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, t in texts.items():
        f = cfg_dir / f"{name}.yaml"
        if f.exists() and yaml.safe_load(f.read_text()) != yaml.safe_load(t):
            raise SystemExit(f"{f} exists and describes a different model than --base {base} with these positions "
                             f"gives now; its runs were trained with the old one. Use another --name or delete "
                             f"{cfg_dir.parent}.")
        if not f.exists():
            f.write_text(t)
        paths[name] = f
    return paths


def layer_stages(cfg: str | Path, positions: list[int], img: int = 64) -> dict[int, str]:
    """``{position: "P4 backbone"}``: the pyramid level (output stride 2**k) and part of the model of each layer.

    The strides come from one forward of the base model at ``img`` px; rows of the yaml's ``head`` before Detect
    are the neck.
    """
    with quiet():
        model = Model(cfg).eval()
    with torch.no_grad(), model.record(positions) as rec:
        model(torch.zeros(1, 3, img, img))
    graph = LayerGraph.from_dict(model.yaml)
    out = {}
    for p in positions:
        level = round(math.log2(img / rec[p].output.shape[-1]))
        out[p] = f"P{level} {'backbone' if graph[p].section == 'backbone' else 'neck'}"
    return out


def measure(cfgs: dict[str, Path], img: int, nc: int | None, warmup: int, runs: int, threads: int,
            rounds: int = 5) -> dict[str, dict]:
    """Params and GFLOPs at ``img`` of each variant as trained, and the latency (ms) of each fused.

    Params are counted before fusing because fusing turns some modules' trained weights into buffers (NAM's BN
    scale and shift), which would hide what a module adds; latency is that of the fused model, as deployed:
    CPU fp32 batch 1 always, and GPU fp16 batch 1 and batch 32 when CUDA is available (None otherwise; the report
    writes n/a). All variants are timed together in shuffled interleaved rounds
    (``utils.profiling.interleaved_median_ms``): timed one after another, identical models differ by ±10% on a
    2-core CPU.
    """
    out, models = {}, {}
    for v, cfg in cfgs.items():
        with quiet():
            model = Model(cfg, nc=nc).eval()
            out[v] = {"params": sum(p.numel() for p in model.parameters()), "gflops": model_gflops(model, img)}
            models[v] = model.fuse()
    x = torch.zeros(1, 3, img, img)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            cpu = interleaved_median_ms({v: (lambda m=m: m(x)) for v, m in models.items()}, warmup, runs, rounds)
    finally:
        torch.set_num_threads(old)
    gpu = gpu_latency(models, img, warmup, runs, rounds) if torch.cuda.is_available() else {}
    at = {"img": img, "threads": threads, "warmup": warmup, "runs": runs, "rounds": rounds,
          "gpu": torch.cuda.get_device_name(0) if gpu else None}
    return {v: {**out[v], "latency_ms": cpu[v], "latency_at": at,
                "latency": {"cpu_fp32_b1": cpu[v], **gpu.get(v, {"gpu_fp16_b1": None, "gpu_fp16_b32": None})}}
            for v in cfgs}


def gpu_latency(models: dict[str, torch.nn.Module], img: int, warmup: int, runs: int, rounds: int
                ) -> dict[str, dict[str, float]]:
    """``{variant: {"gpu_fp16_b1", "gpu_fp16_b32"}}`` ms per forward on CUDA device 0, fp16, synchronised
    (``utils.profiling.batch_latency_ms``, the timing ``benchmarks/latency.py`` shares)."""
    ms = batch_latency_ms(models, img, (1, 32), "cuda", half=True, warmup=warmup, runs=runs, rounds=rounds)
    return {v: {f"gpu_fp16_b{bs}": t for bs, t in ms[v].items()} for v in models}


# --------------------------------------------------------------------------------------------------- training
def train_subprocess(cmd: list[str], log: Path) -> int:
    """Run ``cmd`` from the repo root with stdout+stderr appended to ``log``; return its exit code.

    The child shares this process group, so killing the group stops both; if this process is interrupted
    (Ctrl-C, SIGTERM) the child is stopped too before the exception goes on.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        f.write(f"\n==== {datetime.now().isoformat(timespec='seconds')}  {shlex.join(cmd)}\n")
        f.flush()
        p = subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
        try:
            return p.wait()
        except BaseException:
            p.terminate()
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
            raise


def checkpoint_epoch(f: Path) -> int | None:
    """The ``epoch`` stored in a train.py checkpoint (-1 once training finished), or None if it cannot be read."""
    try:
        return int(load_checkpoint(f, map_location="cpu", allowed=safe_classes()).get("epoch", -1))
    except Exception as e:  # unreadable: the run starts again
        LOGGER.warning(f"WARNING: cannot read {f} ({type(e).__name__}: {e}); the run starts again")
        return None


def train_args(opt: argparse.Namespace, cfg: Path, seed: int, project: Path, name: str) -> list[str]:
    """The ``train.py`` command line of one fresh run."""
    cmd = [sys.executable, str(ROOT / "train.py"), "--cfg", str(cfg), "--weights", opt.weights or "", "--data",
           str(opt.data), "--hyp", str(opt.hyp), "--epochs", str(opt.epochs), "--img", str(opt.imgsz),
           "--batch-size", str(opt.batch_size), "--workers", str(opt.workers), "--seed", str(seed),
           "--project", str(project), "--name", name, "--exist-ok"]
    if opt.device != "":
        cmd += ["--device", str(opt.device)]
    if opt.deterministic:
        cmd += ["--deterministic"]
    return cmd + shlex.split(opt.train_args or "")


def train_run(opt: argparse.Namespace, variant: str, cfg: Path, seed: int, save_dir: Path) -> dict:
    """Train (or resume, or just collect) one run; return its state record."""
    key = run_key(variant, seed)
    run_dir, log = save_dir / "runs" / key, save_dir / "logs" / f"{key}.log"
    last = run_dir / "weights" / "last.pt"
    epoch = checkpoint_epoch(last) if last.exists() else None
    rec = {"variant": variant, "seed": seed, "dir": str(run_dir), "log": str(log), "started": time.time(),
           "code": code_version(ROOT)}  # the code that trained it, for the report
    if epoch == -1 and best_epoch_metrics(run_dir / "results.csv"):
        LOGGER.info(f"{key}: training had finished before the interruption ({last}); not retrained")
        rc, rec["mode"] = 0, "collected"
    elif epoch is not None and epoch >= 0:
        LOGGER.info(f"{key}: resuming from {last} (epoch {epoch} done); log {log}")
        rc = train_subprocess([sys.executable, str(ROOT / "train.py"), "--resume", str(last)], log)
        rec["mode"] = "resumed"
    else:
        if run_dir.exists():
            shutil.rmtree(run_dir)  # no usable checkpoint: start clean (no stale results.csv rows)
        LOGGER.info(f"{key}: training {cfg.name}, seed {seed}; log {log}")
        rc = train_subprocess(train_args(opt, cfg, seed, save_dir / "runs", key), log)
        rec["mode"] = "trained"
    rec["seconds"] = round(time.time() - rec.pop("started"), 1)
    metrics = best_epoch_metrics(run_dir / "results.csv") if rc == 0 else None
    if rc == 0 and metrics:
        rec.update(status="done", metrics=metrics)
        LOGGER.info(f"{key}: done, best epoch {metrics['epoch']}: mAP@.5 {metrics['mAP50']:.4f}, "
                    f"mAP@.5:.95 {metrics['mAP50_95']:.4f} ({rec['seconds']:.0f} s)")
    else:
        why = f"exit code {rc}" if rc else f"no results in {run_dir / 'results.csv'}"
        rec.update(status="failed", error=why)
        LOGGER.error(f"{colorstr('red', 'ERROR:')} {key} failed ({why}); see {log}. Going on with the other runs.")
    return rec


# --------------------------------------------------------------------------------------------------- driver
def data_nc(data: str | Path) -> int | None:
    """``nc`` of a dataset yaml (or the number of ``names``), without checking or downloading the data."""
    with open(data, errors="ignore") as f:
        d = yaml.safe_load(f) or {}
    return int(d["nc"]) if "nc" in d else (len(d["names"]) if d.get("names") else None)


def write_outputs(opt: argparse.Namespace, save_dir: Path, state: dict, variants: list[str]) -> list[dict]:
    """Summarise the finished runs into ablation.md, ablation.csv, ablation.png (and sweep.png); return the rows."""
    info = {v: {**state["variants"][v], "cfg": Path(state["variants"][v]["cfg"]).name} for v in variants}
    rows = summarize(info, state["runs"], opt.seeds)
    paired = paired_results(state["runs"], variants, opt.seeds, n=opt.bootstrap, seed=opt.bootstrap_seed)
    specs = variant_specs(opt.modules, opt.at, opt.sweep_at)
    stages = state.get("stages", {})
    for r in rows:
        module, at = specs.get(r["variant"], (None, []))
        pr = paired.get(r["variant"])
        r.update(paired=pr, paired_per_seed=pr.pop("per_seed", None) if pr else None, module=module, at=at,
                 stage=stages.get(str(at[0])) if len(at) == 1 else None,
                 latency=state["variants"][r["variant"]].get("latency"))
    where = f"swept over layers {', '.join(map(str, opt.sweep_at))}" if opt.sweep_at else \
        f"inserted after layer(s) {', '.join(map(str, opt.at))}"
    title = f"{Path(opt.base).stem} + attention {where}, {opt.epochs} epochs, {len(opt.seeds)} seed(s)"
    plots = [f.name for f in (plot_ablation(rows, save_dir / "ablation.png", title),
                              plot_sweep(rows, save_dir / "sweep.png", title) if opt.sweep_at else None) if f]
    write_report(save_dir / "ablation.md", rows, report_info(opt, state, plots, where, build_parser(), ROOT))
    write_csv(rows, opt.seeds, save_dir / "ablation.csv")
    return rows


def seed_list(seeds: int | list[int]) -> list[int]:
    """``--seeds N`` (one value) is a count, seeds 0..N-1; several values are the seeds themselves."""
    seeds = [seeds] if isinstance(seeds, int) else list(seeds)
    if len(seeds) > 1 and len(set(seeds)) == 1:
        raise SystemExit(f"--seeds {' '.join(map(str, seeds))}: one value is a count of seeds (0..N-1); give two or "
                         f"more different seeds")
    if len(seeds) == 1:
        if seeds[0] < 1:
            raise SystemExit(f"--seeds {seeds[0]}: give a number of seeds >= 1, or a list of two or more seeds")
        return list(range(seeds[0]))
    return list(dict.fromkeys(seeds))


def main(opt: argparse.Namespace) -> tuple[list[dict], list[str]]:
    """Run (or resume) the ablation described by ``opt``; return the summary rows and the failed run keys."""
    print_args(FILE.stem, opt)
    check_options(opt)
    save_dir = Path(opt.project) / opt.name
    save_dir.mkdir(parents=True, exist_ok=True)
    state_file = save_dir / "ablation.json"
    with RunLock(save_dir, "ablate.py"):  # one ablate.py per folder (the OS drops the lock if it dies)
        state = load_state(state_file)
        settings = {k: getattr(opt, k) for k in ("base", "at", "data", "hyp", "epochs", "imgsz", "batch_size",
                                                 "weights", "train_args", "deterministic", "sweep_at")}
        settings = {k: v for k, v in settings.items() if v is not None}  # ablations made before an option existed
        keep_legacy(opt, state["settings"], settings, save_dir)
        diff = settings_diff(state["settings"], settings)
        if diff:
            raise SystemExit(f"{save_dir} holds an ablation trained with other settings ({'; '.join(diff)}). "
                             f"Use another --name, or delete the folder to start over.")
        state["settings"] = settings
        specs = variant_specs(opt.modules, opt.at, opt.sweep_at)
        cfgs = write_cfgs(Path(opt.base), specs, save_dir / "cfgs")
        variants = list(cfgs)
        measure_variants(opt, state, cfgs)
        state["stages"] = {str(p): st for p, st in layer_stages(opt.base, sorted({p for _, at in specs.values()
                                                                                    for p in at})).items()}
        save_state(state, state_file)
        todo = train_all(opt, state, state_file, save_dir, cfgs)
        rows = write_outputs(opt, save_dir, state, variants)
    failed = [run_key(v, s) for v, s in todo if state["runs"].get(run_key(v, s), {}).get("status") != "done"]
    for k in failed:
        LOGGER.error(f"{k} failed: see {state['runs'][k]['log']}; rerun the same command to retry it")
    LOGGER.info(f"Results saved to {colorstr('bold', save_dir)}: ablation.md, ablation.csv, ablation.png")
    print("\n" + markdown_table(rows) + "\n\n" + paired_table(rows) + "\n")
    return rows, failed


LEGACY = {"deterministic": False}  # what ablations made before an option existed did


def keep_legacy(opt: argparse.Namespace, old: dict | None, settings: dict, save_dir: Path) -> None:
    """An ablation folder made before an option existed keeps that option's old behaviour (one mode per ablation)."""
    for k, v in LEGACY.items():
        if old and k not in old and settings.get(k) != v:
            LOGGER.info(f"{save_dir} was made before --{k.replace('_', '-')} existed: its runs keep {k}={v}")
            setattr(opt, k, v)
            settings[k] = v
    if old:
        old.update({k: v for k, v in LEGACY.items() if k not in old})


def check_options(opt: argparse.Namespace) -> None:
    """Resolve paths, drop duplicate modules, expand ``--seeds``; stop with a message on a bad option."""
    opt.base, opt.data, opt.hyp = (str(Path(x).resolve()) for x in (opt.base, opt.data, opt.hyp))
    if opt.weights:
        opt.weights = str(Path(opt.weights).resolve())
    opt.modules = list(dict.fromkeys(opt.modules))  # no duplicates, order kept
    opt.seeds = seed_list(opt.seeds)
    opt.sweep_at = list(dict.fromkeys(opt.sweep_at)) if opt.sweep_at else None
    if BASELINE in opt.modules:
        raise SystemExit(f"'{BASELINE}' is the name of the unmodified model, not a module")
    if opt.bootstrap < 0:
        raise SystemExit(f"--bootstrap {opt.bootstrap}: give a number of resamples >= 0 (0: no paired comparison)")


def measure_variants(opt: argparse.Namespace, state: dict, cfgs: dict[str, Path]) -> None:
    """Params, GFLOPs and latencies of every variant, unless already in ``state`` with the same timing settings."""
    nc, threads = data_nc(opt.data), opt.threads or os.cpu_count() or 1
    want = {"img": opt.imgsz, "threads": threads, "warmup": opt.lat_warmup, "runs": opt.lat_runs,
            "rounds": opt.lat_rounds, "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    if opt.remeasure or any((state["variants"].get(v) or {}).get("latency_at") != want for v in cfgs):
        LOGGER.info(f"Measuring {', '.join(cfgs)}: params, GFLOPs, latency ({threads} CPU threads, "
                    f"img {opt.imgsz}, {opt.lat_rounds} interleaved rounds)...")
        for v, m in measure(cfgs, opt.imgsz, nc, opt.lat_warmup, opt.lat_runs, threads, opt.lat_rounds).items():
            state["variants"][v] = {"cfg": str(cfgs[v]), **m}


def train_all(opt: argparse.Namespace, state: dict, state_file: Path, save_dir: Path,
              cfgs: dict[str, Path]) -> list[tuple[str, int]]:
    """Train every (variant, seed) not finished yet, seed by seed; returns all of them."""
    variants = list(cfgs)
    todo = [(v, s) for s in opt.seeds for v in variants]
    done = [k for k in (run_key(v, s) for v, s in todo) if state["runs"].get(k, {}).get("status") == "done"]
    if done:
        LOGGER.info(f"Finished runs kept, not retrained: {', '.join(done)}")
    pending = [(v, s) for v, s in todo if run_key(v, s) not in done]
    with logging_redirect_tqdm(loggers=[LOGGER]):  # log lines above the bar, not inside it
        pbar = tqdm(pending, total=len(todo), initial=len(done), desc="ablation", unit="run",
                    bar_format="{l_bar}{bar:10}{r_bar}")
        for v, s in pbar:
            key = run_key(v, s)
            pbar.set_description(f"ablation {key}")
            state["runs"][key] = train_run(opt, v, cfgs[v], s, save_dir)
            save_state(state, state_file)
            write_outputs(opt, save_dir, state, variants)
        pbar.close()
    return todo


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="train a base model and its attention variants; report, plots")
    parser.add_argument("--base", default=str(ROOT / "models/yolov5n.yaml"), help="base model.yaml")
    parser.add_argument("--modules", nargs="+", default=["NAMAttention", "SimAM", "CoTAttention"],
                        help="registered attention modules, one variant each")
    parser.add_argument("--at", nargs="+", type=int, default=[23], help="insert after layer(s) N")
    parser.add_argument("--sweep-at", nargs="+", type=int, default=None,
                        help="placement sweep: one variant per module and layer N (module after N), instead of --at")
    parser.add_argument("--data", default=str(ROOT / "data/shapes.yaml"), help="dataset.yaml (default: the demo set)")
    parser.add_argument("--hyp", default=str(ROOT / "data/hyps/hyp.scratch-low.yaml"), help="hyperparameters path")
    parser.add_argument("--weights", default="", help="pretrained weights to transfer into every run ('' = scratch)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", "--batch", type=int, default=16, help="train.py --batch-size")
    parser.add_argument("--imgsz", "--img", "--img-size", type=int, default=640, help="train/val/timing size")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1],
                        help="number of seeds (--seeds 2: seeds 0 and 1) or two or more explicit seeds (--seeds 0 5)")
    parser.add_argument("--device", default="", help="train.py --device (cuda device, i.e. 0, or cpu)")
    parser.add_argument("--workers", type=int, default=8, help="train.py --workers")
    parser.add_argument("--deterministic", action=argparse.BooleanOptionalAction, default=True,
                        help="train every seed in deterministic mode (train.py --deterministic); --no-deterministic: "
                             "v6.1's speed-first mode")
    parser.add_argument("--train-args", default="", help="further train.py flags for every run, e.g. '--cos-lr'")
    parser.add_argument("--project", default=str(ROOT / "runs/ablate"), help="save to project/name")
    parser.add_argument("--name", default="exp", help="save to project/name (rerun with the same name to resume)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="paired bootstrap resamples (0: none)")
    parser.add_argument("--bootstrap-seed", type=int, default=0, help="seed of the bootstrap resampling")
    parser.add_argument("--remeasure", action="store_true", help="re-time latency even when it is cached")
    parser.add_argument("--threads", type=int, default=0, help="torch threads for CPU timing (0 = all cores)")
    parser.add_argument("--lat-warmup", type=int, default=10, help="untimed forwards before timing")
    parser.add_argument("--lat-runs", type=int, default=30, help="timed forwards per round (median)")
    parser.add_argument("--lat-rounds", type=int, default=5, help="interleaved timing rounds (median of rounds)")
    return parser


def parse_opt(known: bool = False) -> argparse.Namespace:
    parser = build_parser()
    return parser.parse_known_args()[0] if known else parser.parse_args()


def run(**kwargs) -> tuple[list[dict], list[str]]:
    """``import ablate; ablate.run(modules=['SimAM'], data='bccd.yaml', epochs=3, seeds=[0, 1])``"""
    opt = parse_opt(True)
    for k, v in kwargs.items():
        setattr(opt, k, v)
    return main(opt)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # SIGTERM stops the training child too (see above)
    _, _failed = run_cli(main, parse_opt, "ablate.py")
    raise SystemExit(1 if _failed else 0)
