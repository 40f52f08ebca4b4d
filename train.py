"""Train a YOLOv5 model on a detection dataset, with YOLOv5 v6.1's recipe.

Usage:
    $ python train.py --cfg models/yolov5n-NAM.yaml --weights '' --data ../shared/data/bccd/bccd.yaml --img 320
    $ python train.py --weights yolov5s.pt --cfg models/yolov5s-NAM.yaml --data my.yaml   # transfer past NAM
    $ python train.py --cfg models/yolov5n.yaml --weights '' --epochs 3   # no --data: the embedded demo set
    $ python -m torch.distributed.run --nproc_per_node 2 train.py --device cpu ...             # DDP (gloo)

``train()`` runs in phases that share one ``TrainRun``: :func:`setup` (run folder, hyps, callbacks, data,
model, optimizer, scheduler, EMA, resume state, dataloaders, loss; the phases that need no model code, the state
and the option checks live in ``utils/train_setup.py``), then per epoch :func:`train_one_epoch`
(batches: warmup, multi-scale, forward/loss/backward, optimizer step) and :func:`end_epoch` (validation,
fitness, checkpoints, early stop), and at the end :func:`final_validation`. Every hook of
``utils.callbacks.HOOKS`` fires at its documented place.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import random
import sys
import time
from copy import deepcopy
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

FILE = Path(__file__).resolve()
ROOT = FILE.parents[0]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))
ROOT = Path(os.path.relpath(ROOT, Path.cwd()))  # relative

import val  # noqa: E402  (for end-of-epoch mAP)
from models.experimental import attempt_load, safe_classes  # noqa: E402
from models.transfer import load_pretrained  # noqa: E402
from models.yolo import Model  # noqa: E402
from utils.amp import AMP_MODES, amp_dtype, check_amp, check_half  # noqa: E402
from utils.autobatch import check_train_batch_size  # noqa: E402
from utils.callbacks import Callbacks  # noqa: E402
from utils.checkpoint import save_atomic, strip_optimizer  # noqa: E402
from utils.determinism import NondeterministicOps  # noqa: E402
from utils.downloads import attempt_download  # noqa: E402
from utils.eval_records import EvalRecords  # noqa: E402
from utils.evolve import evolve  # noqa: E402
from utils.general import (LOGGER, InputError, check_file, check_img_size, check_suffix, check_yaml,  # noqa: E402
                           colorstr, increment_path, print_args, run_cli)
from utils.memory_format import (batch_to_model_input, channels_last_option, set_memory_format,  # noqa: E402
                                 to_input_format)
from utils.metrics import fitness, labels_to_image_weights  # noqa: E402
from utils.run_dir import RunLock, check_belongs, new_run_id  # noqa: E402
from utils.torch_utils import (de_parallel, init_seeds, release_memory, select_device,  # noqa: E402
                               torch_distributed_zero_first)
from utils.train_setup import (LOCAL_RANK, NBS, RANK, WORLD_SIZE, TrainRun, build_dataloaders,  # noqa: E402
                               check_options, load_data, make_optimizer, prepare_loop, prepare_model, prepare_resume,
                               prepare_run_dir, register_run_callbacks, setup_ddp)

DEFAULT_WEIGHTS = ROOT / "yolov5s.pt"


def train(hyp: dict | str, opt: argparse.Namespace, device: torch.device, callbacks: Callbacks) -> tuple:
    """One training run.

    Args:
        hyp: hyperparameters, or the path of a hyp yaml.
        opt: the options of ``parse_opt()`` (with ``save_dir``).
        device: where to train.
        callbacks: the hooks to run (see ``utils.callbacks.HOOKS``); ``teardown`` runs however the run ends.

    Returns:
        The final validation results ``(P, R, mAP@.5, mAP@.5:.95, val box, val obj, val cls)``.
    """
    deterministic = getattr(opt, "deterministic", False)  # runs saved before the flag existed lack it
    watch = (NondeterministicOps(Path(opt.save_dir) / "determinism.json", opt.seed) if deterministic
             else contextlib.nullcontext())  # records the ops with no deterministic kernel
    s = None
    try:
        with watch:
            s = setup(hyp, opt, device, callbacks)
            callbacks.run("on_train_start")
            for epoch in range(s.start_epoch, s.epochs):
                s.epoch = epoch
                if not train_one_epoch(s, epoch):  # a callback set stop_training
                    return s.results
                if end_epoch(s, epoch):
                    break
            final_validation(s)
        if s.cuda:
            torch.cuda.empty_cache()
        return s.results
    finally:
        close_loaders(s)
        callbacks.run("teardown")


def close_loaders(s: TrainRun | None) -> None:
    """Stop the loader workers of a run that ended (setup may have failed before making them)."""
    for name in ("train_loader", "val_loader"):
        loader = getattr(s, name, None)
        if hasattr(loader, "close"):
            loader.close()


# ------------------------------------------------------------------------------------------------------- setup
def setup(hyp: dict | str, opt: argparse.Namespace, device: torch.device, callbacks: Callbacks) -> TrainRun:
    """Everything before the first epoch, in v6.1's order (the order of random-number use fixes the numbers)."""
    s = TrainRun(opt=opt, hyp={}, device=device, callbacks=callbacks, save_dir=Path(opt.save_dir),
                 epochs=opt.epochs, batch_size=opt.batch_size, plots=not opt.evolve, cuda=device.type != "cpu",
                 weights=opt.weights)
    prepare_run_dir(s, hyp)
    register_run_callbacks(s)
    callbacks.run("on_pretrain_routine_start")
    init_seeds(opt.seed + 1 + RANK, deterministic=getattr(opt, "deterministic", False))
    load_data(s)
    build_model(s)
    make_optimizer(s)
    build_dataloaders(s)
    prepare_model(s)
    prepare_loop(s)
    return s


def build_model(s: TrainRun) -> None:
    """Build (or load and transfer) the model, freeze layers, check the image size, AMP and batch size."""
    opt = s.opt
    check_suffix(s.weights, ".pt")
    s.pretrained = str(s.weights).endswith(".pt")
    if s.pretrained:
        with torch_distributed_zero_first(LOCAL_RANK):
            s.weights = attempt_download(s.weights)
        s.model, s.ckpt = load_pretrained(s.weights, opt.cfg, s.nc, s.hyp, opt.resume, s.device)
        if opt.resume:
            check_belongs(s.ckpt, s.weights, opt)
    else:
        s.model = Model(opt.cfg, ch=3, nc=s.nc, anchors=s.hyp.get("anchors")).to(s.device)

    freeze = [f"model.{x}." for x in (opt.freeze if len(opt.freeze) > 1 else range(opt.freeze[0]))]
    for k, v in s.model.named_parameters():
        v.requires_grad = True
        if any(x in k for x in freeze):
            LOGGER.info(f"freezing {k}")
            v.requires_grad = False

    set_memory_format(s.model, channels_last_option(opt))  # NHWC convolutions: faster on oneDNN and tensor cores
    s.gs = max(int(s.model.stride.max()), 32)  # grid size (max stride)
    s.imgsz = check_img_size(opt.imgsz, s.gs, floor=s.gs * 2)

    # Mixed precision: fp16 autocast on CUDA by default; fp32 when the model fails the check
    s.amp = amp_dtype(getattr(opt, "amp", "auto"), s.device)
    if s.amp is not None and not check_amp(s.model, s.device, s.amp):
        s.amp = None

    if RANK == -1 and s.batch_size == -1:
        s.batch_size = check_train_batch_size(s.model, s.imgsz)


# ------------------------------------------------------------------------------------------------- one epoch
def train_one_epoch(s: TrainRun, epoch: int) -> bool:
    """Train one epoch (every batch), then step the LR scheduler.

    Returns:
        False when a callback set ``callbacks.stop_training`` (training ends at once), else True.
    """
    model, opt, callbacks = s.model, s.opt, s.callbacks
    model.train()
    callbacks.run("on_train_epoch_start", epoch=epoch)
    if opt.image_weights:  # resample images by class weights and last mAPs
        m, nc = de_parallel(model), s.nc
        cw = m.class_weights.cpu().numpy() * (1 - s.maps) ** 2 / nc
        iw = labels_to_image_weights(s.dataset.labels, nc=nc, class_weights=cw)
        s.dataset.indices = random.choices(range(s.dataset.n), weights=iw, k=s.dataset.n)
    mloss = torch.zeros(3, device=s.device)  # mean losses
    if RANK != -1:
        s.train_loader.sampler.set_epoch(epoch)
    pbar = enumerate(s.train_loader)
    LOGGER.info(("\n" + "%10s" * 7) % ("Epoch", "gpu_mem", "box", "obj", "cls", "labels", "img_size"))
    if RANK in (-1, 0):
        pbar = tqdm(pbar, total=s.nb, bar_format="{l_bar}{bar:10}{r_bar}{bar:-10b}")
    s.optimizer.zero_grad()
    for i, (imgs, targets, paths, _) in pbar:
        ni = i + s.nb * epoch  # integrated batches since train start
        callbacks.run("on_train_batch_start", ni, epoch)
        imgs = batch_to_model_input(imgs, s.device, channels_last_option(opt))  # uint8 0-255 -> float 0.0-1.0
        if ni <= s.nw:
            warmup(s, ni, epoch)
        if opt.multi_scale:
            imgs = multi_scale(imgs, s.imgsz, s.gs)
            imgs = to_input_format(imgs, channels_last_option(opt))  # keep the layout through the resize
        loss_items = forward_backward(s, imgs, targets)
        if ni - s.last_opt_step >= s.accumulate:
            optimizer_step(s)
            s.last_opt_step = ni

        if RANK in (-1, 0):
            mloss = (mloss * i + loss_items) / (i + 1)
            mem = f"{torch.cuda.memory_reserved() / 1e9 if torch.cuda.is_available() else 0:.3g}G"
            pbar.set_description(("%10s" * 2 + "%10.4g" * 5) %
                                 (f"{epoch}/{s.epochs - 1}", mem, *mloss, targets.shape[0], imgs.shape[-1]))
            callbacks.run("on_train_batch_end", ni, model, imgs, targets, paths, s.plots, opt.sync_bn)
            if callbacks.stop_training:
                return False
    s.mloss = mloss
    s.lr = [x["lr"] for x in s.optimizer.param_groups]  # for loggers
    s.scheduler.step()
    return True


def warmup(s: TrainRun, ni: int, epoch: int) -> None:
    """Warmup batch ``ni``: accumulation rises to the nominal batch; bias lr falls from ``warmup_bias_lr`` to lr0,
    other lrs rise from 0 to lr0; momentum rises from ``warmup_momentum``."""
    hyp, xi = s.hyp, [0, s.nw]
    s.accumulate = max(1, np.interp(ni, xi, [1, NBS / s.batch_size]).round())
    for j, x in enumerate(s.optimizer.param_groups):
        x["lr"] = np.interp(ni, xi, [hyp["warmup_bias_lr"] if j == 2 else 0.0, x["initial_lr"] * s.lf(epoch)])
        if "momentum" in x:
            x["momentum"] = np.interp(ni, xi, [hyp["warmup_momentum"], hyp["momentum"]])


def multi_scale(imgs: torch.Tensor, imgsz: int, gs: int) -> torch.Tensor:
    """Resize a batch to a random size in [0.5, 1.5] · ``imgsz`` (a multiple of ``gs``)."""
    sz = random.randrange(int(imgsz * 0.5), int(imgsz * 1.5) + gs) // gs * gs
    sf = sz / max(imgs.shape[2:])
    if sf != 1:
        ns = [math.ceil(x * sf / gs) * gs for x in imgs.shape[2:]]  # stretched to gs-multiples
        imgs = F.interpolate(imgs, size=ns, mode="bilinear", align_corners=False)
    return imgs


def forward_backward(s: TrainRun, imgs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Forward (under autocast with AMP), loss and the (scaled) backward pass; returns the detached loss items."""
    amp = s.amp
    with torch.autocast(s.device.type, dtype=amp or torch.float32, enabled=amp is not None):
        pred = s.model(imgs)
        loss, loss_items = s.compute_loss(pred, targets.to(s.device))
        if RANK != -1:
            loss *= WORLD_SIZE  # gradients are averaged between devices in DDP mode
        if s.opt.quad:
            loss *= 4.0
    s.scaler.scale(loss).backward()
    return loss_items


def optimizer_step(s: TrainRun) -> None:
    """One optimizer step: unscale, ``optimizer_step`` hooks (regularisers), step, ``on_before_zero_grad``,
    zero the gradients, update the EMA. Unscaling first means every hook sees true gradients (a no-op without
    AMP; ``GradScaler.step`` would unscale anyway, so the update is the same)."""
    s.scaler.unscale_(s.optimizer)
    s.callbacks.run("optimizer_step", s.model, s.optimizer)
    s.scaler.step(s.optimizer)
    s.scaler.update()
    s.callbacks.run("on_before_zero_grad", s.model, s.optimizer)
    s.optimizer.zero_grad()
    if s.ema:
        s.ema.update(s.model)


# -------------------------------------------------------------------------------------------- end of an epoch
def end_epoch(s: TrainRun, epoch: int) -> bool:
    """Rank 0: validate, log, save checkpoints; every rank: release memory.

    Returns:
        True when early stopping ends training.
    """
    if RANK not in (-1, 0):
        release_memory()
        return False
    opt = s.opt
    s.callbacks.run("on_train_epoch_end", epoch=epoch)
    s.ema.update_attr(s.model, include=["yaml", "nc", "hyp", "names", "stride", "class_weights"])
    final_epoch = (epoch + 1 == s.epochs) or s.stopper.possible_stop
    records = s.save_dir / "records" / "last.npz"  # per-image matches, for paired comparisons (ablate.py)
    validated = not opt.noval or final_epoch
    if validated:
        s.results, s.maps, _ = validate(s, s.ema.ema, plots=False, save_records=records)
    fi = float(fitness(np.array(s.results).reshape(1, -1))[0])  # 0.1 mAP@.5 + 0.9 mAP@.5:.95
    if fi > s.best_fitness:
        s.best_fitness = fi
    log_vals = list(s.mloss.tolist()) + list(s.results) + s.lr
    s.callbacks.run("on_fit_epoch_end", log_vals, epoch, s.best_fitness, fi)

    if (not opt.nosave) or (final_epoch and not opt.evolve):
        save_checkpoint(s, epoch, fi)
        s.callbacks.run("on_model_save", s.last, epoch, final_epoch, s.best_fitness, fi)
    if validated and s.best_fitness == fi:  # the epoch best.pt is from (ties included), once best.pt is written
        rec = EvalRecords.load(records)
        rec.meta.update(epoch=epoch, fitness=fi)
        rec.save(records.with_name("best.npz"))

    if RANK == -1 and s.stopper(epoch=epoch, fitness=fi):
        return True
    release_memory()  # hand the epoch's freed heap back before the next one
    return False


def validate(s: TrainRun, model: nn.Module, **kwargs: Any) -> tuple:
    """``val.run`` of ``model`` on the run's val loader (fp16 on CUDA when the model passes the half check)."""
    return val.run(s.data_dict, batch_size=s.batch_size // WORLD_SIZE * 2, imgsz=s.imgsz, model=model,
                   half=s.cuda and check_half(model, s.device), single_cls=s.opt.single_cls,
                   dataloader=s.val_loader, save_dir=s.save_dir, callbacks=s.callbacks,
                   compute_loss=s.compute_loss, **kwargs)


def save_checkpoint(s: TrainRun, epoch: int, fi: float) -> None:
    """Write ``last.pt`` (and ``best.pt``, ``epoch{n}.pt`` when due) atomically, in v6.1's checkpoint format."""
    ckpt = {"epoch": epoch, "best_fitness": s.best_fitness, "model": deepcopy(de_parallel(s.model)).half(),
            "ema": deepcopy(s.ema.ema).half(), "updates": s.ema.updates, "optimizer": s.optimizer.state_dict(),
            "wandb_id": None, "date": datetime.now().isoformat(), "run_id": getattr(s.opt, "run_id", None),
            "loss_state": s.compute_loss.state_dict()}
    save_atomic(ckpt, s.last)  # temporary file then rename: last.pt is always loadable
    if s.best_fitness == fi:
        save_atomic(ckpt, s.best)
    if epoch > 0 and s.opt.save_period > 0 and epoch % s.opt.save_period == 0:
        save_atomic(ckpt, s.last.parent / f"epoch{epoch}.pt")


def final_validation(s: TrainRun) -> None:
    """Rank 0: strip the optimizer from last.pt / best.pt, validate best.pt with plots, run ``on_train_end``."""
    if RANK not in (-1, 0):
        return
    LOGGER.info(f"\n{s.epoch - s.start_epoch + 1} epochs completed in {(time.time() - s.t0) / 3600:.3f} hours.")
    release_memory()
    for f in s.last, s.best:
        if f.exists():
            strip_optimizer(f, allowed=safe_classes())
            if f is s.best:
                LOGGER.info(f"\nValidating {f}...")
                best_model = attempt_load(f, map_location=s.device).half()
                s.results, _, _ = validate(s, best_model, iou_thres=0.65 if s.is_coco else 0.60,
                                           save_json=s.is_coco, verbose=True, plots=s.plots)
    s.callbacks.run("on_train_end", s.last, s.best, s.plots, s.epoch, s.results)
    LOGGER.info(f"Results saved to {colorstr('bold', s.save_dir)}")


def parse_opt(known: bool = False) -> argparse.Namespace:
    """The command-line options of train.py (v6.1's flags plus ``--seed`` and ``--amp``)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", type=str, default=None, help=f"initial weights path (default {DEFAULT_WEIGHTS}; '' = from scratch)")
    parser.add_argument("--cfg", type=str, default="", help="model.yaml path")
    parser.add_argument("--data", type=str, default=ROOT / "data/shapes.yaml", help="dataset.yaml path (default: the embedded demo set)")
    parser.add_argument("--hyp", type=str, default=ROOT / "data/hyps/hyp.scratch-low.yaml", help="hyperparameters path")
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=16, help="total batch size for all GPUs, -1 for autobatch")
    parser.add_argument("--imgsz", "--img", "--img-size", type=int, default=640, help="train, val image size (pixels)")
    parser.add_argument("--rect", action="store_true", help="rectangular training")
    parser.add_argument("--resume", nargs="?", const=True, default=False, help="resume most recent training (or a last.pt / run folder)")
    parser.add_argument("--nosave", action="store_true", help="only save final checkpoint")
    parser.add_argument("--noval", action="store_true", help="only validate final epoch")
    parser.add_argument("--noautoanchor", action="store_true", help="disable AutoAnchor")
    parser.add_argument("--evolve", type=int, nargs="?", const=300, help="evolve hyperparameters for x generations")
    parser.add_argument("--bucket", type=str, default="", help="gsutil bucket (not supported: no network uploads)")
    parser.add_argument("--cache", type=str, nargs="?", const="ram", help='--cache images in "ram" (default) or "disk"')
    parser.add_argument("--keep-decoded", type=float, default=256.0, metavar="MB",
                        help="each loader worker keeps the images it decoded when the whole set fits in MB "
                             "(same pixels, less CPU per epoch; 0 = off)")
    parser.add_argument("--image-weights", action="store_true", help="use weighted image selection for training")
    parser.add_argument("--device", default="", help="cuda device, i.e. 0 or 0,1,2,3 or cpu")
    parser.add_argument("--multi-scale", action="store_true", help="vary img-size +/- 50%%")
    parser.add_argument("--single-cls", action="store_true", help="train multi-class data as single-class")
    parser.add_argument("--optimizer", type=str, choices=["SGD", "Adam", "AdamW"], default="SGD", help="optimizer")
    parser.add_argument("--sync-bn", action="store_true", help="use SyncBatchNorm, only available in DDP mode")
    parser.add_argument("--workers", type=int, default=8, help="max dataloader workers (per RANK in DDP mode)")
    parser.add_argument("--project", default=ROOT / "runs/train", help="save to project/name")
    parser.add_argument("--name", default="exp", help="save to project/name")
    parser.add_argument("--exist-ok", action="store_true", help="existing project/name ok, do not increment")
    parser.add_argument("--quad", action="store_true", help="quad dataloader")
    parser.add_argument("--cos-lr", action="store_true", help="cosine LR scheduler")
    parser.add_argument("--label-smoothing", type=float, default=0.0, help="Label smoothing epsilon")
    parser.add_argument("--patience", type=int, default=100, help="EarlyStopping patience (epochs without improvement)")
    parser.add_argument("--freeze", nargs="+", type=int, default=[0], help="Freeze layers: backbone=10, first3=0 1 2")
    parser.add_argument("--save-period", type=int, default=-1, help="Save checkpoint every x epochs (disabled if < 1)")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                        help="channels-last (NHWC) weights and images: faster convolutions; --no-channels-last for "
                             "NCHW (the same math summed in another order)")
    parser.add_argument("--seed", type=int, default=0, help="global training seed (v6.1 always used 0)")
    parser.add_argument("--deterministic", action="store_true",
                        help="deterministic algorithms and cuDNN for every seed (slower on GPU; default: v6.1's mode)")
    parser.add_argument("--amp", default="auto", choices=AMP_MODES,
                        help="mixed precision: auto (fp16 on CUDA; bf16 on a CPU with hardware bf16, else fp32), "
                             "fp16, bf16 or off")
    parser.add_argument("--local_rank", type=int, default=-1, help="DDP parameter, do not modify")
    # Weights & Biases arguments (used when wandb is installed and logged in; see utils/wandb_logger.py)
    parser.add_argument("--entity", default=None, help="W&B: Entity")
    parser.add_argument("--upload_dataset", nargs="?", const=True, default=False, help='W&B: Upload data, "val" option')
    parser.add_argument("--bbox_interval", type=int, default=-1, help="W&B: Set bounding-box image logging interval")
    parser.add_argument("--artifact_alias", type=str, default="latest", help="W&B: Version of dataset artifact to use")
    return parser.parse_known_args()[0] if known else parser.parse_args()


def resolve_weights(opt: argparse.Namespace) -> None:
    """``--weights`` not given means the official yolov5s.pt; when it cannot be had, train from scratch."""
    if opt.weights is not None:
        return
    try:
        opt.weights = attempt_download(DEFAULT_WEIGHTS)
    except FileNotFoundError as e:
        opt.cfg = opt.cfg or str(ROOT / "models" / "yolov5s.yaml")
        LOGGER.warning(f"WARNING: {e}\nWARNING: --weights was not given, so training goes on from scratch "
                       f"with --cfg {opt.cfg}.")
        opt.weights = ""


def main(opt: argparse.Namespace, callbacks: Callbacks | None = None) -> Any:
    """Check the options, reserve the run folder (or find the run to resume) and train or evolve in it."""
    callbacks = callbacks or Callbacks()  # a fresh one per call: no run's loggers leak into the next
    if RANK in (-1, 0):
        print_args(FILE.stem, opt)
    if opt.bucket:
        raise InputError("--bucket (gsutil upload of evolution results) is not supported: this project has no "
                         "network uploads; results stay in the run folder")

    if opt.resume and not opt.evolve:  # resume an interrupted run
        opt = prepare_resume(opt)
    else:
        check_options(opt)
        opt.data, opt.cfg, opt.hyp, opt.project = \
            check_file(opt.data), check_yaml(opt.cfg) if opt.cfg else "", check_yaml(opt.hyp), str(opt.project)
        resolve_weights(opt)
        if not (opt.cfg or opt.weights):
            raise InputError("either --cfg or --weights must be specified")
        if opt.evolve:
            if opt.project == str(ROOT / "runs/train"):
                opt.project = str(ROOT / "runs/evolve")
            opt.exist_ok, opt.resume = opt.resume, False
        opt.run_id = new_run_id()
        opt.save_dir = str(increment_path(Path(opt.project) / opt.name, exist_ok=opt.exist_ok,
                                          mkdir=RANK in (-1, 0)))  # reserved atomically: concurrent runs differ

    device = select_device(opt.device, batch_size=opt.batch_size)
    if LOCAL_RANK != -1:
        device = setup_ddp(opt, device)

    with RunLock(opt.save_dir) if RANK in (-1, 0) else contextlib.nullcontext():  # one writer per run folder
        if opt.evolve:
            return evolve(opt, device, callbacks, train)
        results = train(opt.hyp, opt, device, callbacks)
    if WORLD_SIZE > 1 and RANK == 0:
        LOGGER.info("Destroying process group... ")
        dist.destroy_process_group()
    return results


def run(**kwargs: Any) -> Any:
    """``import train; train.run(data='coco128.yaml', imgsz=320, weights='yolov5m.pt')``"""
    opt = parse_opt(True)
    for k, v in kwargs.items():
        setattr(opt, k, v)
    return main(opt)


if __name__ == "__main__":
    run_cli(main, parse_opt, "train.py")
