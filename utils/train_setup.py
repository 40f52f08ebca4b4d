"""The setup phases of a training run that need no model code, and the run's shared state (:class:`TrainRun`).

``train.py`` runs a training in phases: setup (run folder, callbacks, data, model, optimizer, loaders, loss), one
epoch, end of an epoch, final validation. The phases here only touch data, optimizer, loaders, loggers and
options; building the model (``models``) and the epoch loop stay in ``train.py``. Each phase reads and fills the
:class:`TrainRun` it is given, in v6.1's order (the order of random-number use fixes the numbers).

The option checks ``train.main`` runs before any phase are here too: :func:`check_options`, :func:`prepare_resume`
and :func:`setup_ddp`.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import yaml
from torch.optim import lr_scheduler

from utils.autoanchor import check_anchors
from utils.callbacks import Callbacks
from utils.checkpoint import restore_training_state
from utils.dataset_yaml import check_dataset, split_path
from utils.datasets import create_dataloader
from utils.general import LOGGER, InputError, colorstr, get_latest_run, one_cycle
from utils.hyps import load_hyp
from utils.loggers import Loggers
from utils.loss import ComputeLoss
from utils.metrics import labels_to_class_weights
from utils.plots import plot_labels
from utils.regularizers import L1Regularizer
from utils.run_dir import resume_target, trim_results_csv
from utils.torch_utils import EarlyStopping, ModelEMA, build_optimizer, de_parallel, torch_distributed_zero_first

LOCAL_RANK = int(os.getenv("LOCAL_RANK", -1))  # https://pytorch.org/docs/stable/elastic/run.html
RANK = int(os.getenv("RANK", -1))
WORLD_SIZE = int(os.getenv("WORLD_SIZE", 1))
NBS = 64  # nominal batch size: gradients are accumulated to about this many images per optimizer step


@dataclass
class TrainRun:
    """The state one training run's phases share (set up by ``train.setup``, advanced by the epoch phases).

    Attributes:
        opt: the run's options; hyp: its hyperparameters (loss gains scaled once the model is known; the same
            dict is ``model.hyp``); device, callbacks: as passed to ``train.train``.
        save_dir: the run folder; last, best: its ``weights/last.pt`` and ``weights/best.pt``.
        epochs, batch_size: total epochs (a resumed checkpoint may change them) and total batch size.
        plots: draw plots (not when evolving); cuda: training on a GPU.
        weights, pretrained, ckpt: the initial weights, whether they are a checkpoint, and that checkpoint
            (dropped once its training state is restored).
        data_dict: the checked dataset yaml; train_path, val_path: its splits; nc, names: its classes;
            is_coco: whether it is COCO val2017.
        model: the model being trained (DP/DDP-wrapped when parallel); imgsz, gs: image size and grid size.
        amp: autocast dtype, or None for fp32; optimizer, scheduler, lf: the optimizer, LR schedule and its
            lambda; ema: the EMA model (rank 0 only); scaler: the GradScaler (disabled without AMP).
        train_loader, dataset, val_loader, nb: the loaders, the training dataset and batches per epoch.
        compute_loss: the training loss; loss_state: its state from the resumed checkpoint (WIoU's running mean);
            stopper: early stopping; nw: warmup iterations.
        start_epoch, epoch: the first and the current epoch; best_fitness; accumulate, last_opt_step: gradient
            accumulation state; mloss: mean train losses of the epoch; lr: the epoch's learning rates; maps:
            per-class mAP; results: the last validation results; t0: the training start time.
    """

    opt: argparse.Namespace
    hyp: dict
    device: torch.device
    callbacks: Callbacks
    save_dir: Path
    epochs: int
    batch_size: int
    plots: bool
    cuda: bool
    last: Path = Path()
    best: Path = Path()
    weights: str = ""
    data_dict: dict = field(default_factory=dict)
    train_path: Any = None
    val_path: Any = None
    nc: int = 0
    names: list = field(default_factory=list)
    is_coco: bool = False
    model: Any = None
    ckpt: Any = None
    pretrained: bool = False
    imgsz: int = 0
    gs: int = 32
    amp: Any = None
    optimizer: Any = None
    scheduler: Any = None
    lf: Callable[[float], float] | None = None
    ema: ModelEMA | None = None
    scaler: Any = None
    train_loader: Any = None
    dataset: Any = None
    val_loader: Any = None
    nb: int = 0
    compute_loss: ComputeLoss | None = None
    loss_state: dict | None = None
    stopper: EarlyStopping | None = None
    nw: int = 0
    start_epoch: int = 0
    epoch: int = 0
    best_fitness: float = 0.0
    accumulate: float = 1
    last_opt_step: int = -1
    mloss: torch.Tensor | None = None
    lr: list = field(default_factory=list)
    maps: np.ndarray | None = None
    results: tuple = (0, 0, 0, 0, 0, 0, 0)  # P, R, mAP@.5, mAP@.5:.95, val_loss(box, obj, cls)
    t0: float = 0.0


def prepare_run_dir(s: TrainRun, hyp: dict | str) -> None:
    """Make the run folder, load the hyps and write ``hyp.yaml`` / ``opt.yaml`` (before any scaling)."""
    w = s.save_dir / "weights"
    evolving = s.opt.evolve
    if RANK in (-1, 0):
        (w.parent if evolving else w).mkdir(parents=True, exist_ok=True)
    s.last, s.best = w / "last.pt", w / "best.pt"
    s.hyp = load_hyp(hyp)
    LOGGER.info(colorstr("hyperparameters: ") + ", ".join(f"{k}={v}" for k, v in s.hyp.items()))
    if not evolving and RANK in (-1, 0) and not s.opt.resume:
        with open(s.save_dir / "hyp.yaml", "w") as f:
            yaml.safe_dump(s.hyp, f, sort_keys=False)
        with open(s.save_dir / "opt.yaml", "w") as f:
            yaml.safe_dump({k: str(v) if isinstance(v, Path) else v for k, v in vars(s.opt).items()}, f,
                           sort_keys=False)


def register_run_callbacks(s: TrainRun) -> None:
    """Register the run loggers (rank 0) and the parameter regularisers (every rank) on ``s.callbacks``.

    Both are unregistered first, so a second ``train()`` on the same callbacks (``--evolve``, ``train.run`` twice)
    does not run the previous run's.
    """
    callbacks = s.callbacks
    if RANK in (-1, 0):
        loggers = Loggers(s.save_dir, s.weights, s.opt, s.hyp, LOGGER)
        callbacks.unregister("run loggers")
        for k in methods(loggers):
            callbacks.register_action(k, name="run loggers", callback=getattr(loggers, k))
    callbacks.unregister("regularizers")
    nam_l1 = float(s.hyp.get("nam_l1", 0.0) or 0.0)  # L1 sparsity penalty (off by default)
    if nam_l1:
        callbacks.register_action("optimizer_step", name="regularizers", callback=L1Regularizer(nam_l1))


def load_data(s: TrainRun) -> None:
    """Check the dataset yaml and set its classes.

    Raises:
        InputError: the dataset's ``names`` do not match its ``nc``.
    """
    with torch_distributed_zero_first(LOCAL_RANK):
        s.data_dict = check_dataset(s.opt.data, autodownload=True)  # a missing dataset is fetched (v6.1)
    s.train_path, s.val_path = split_path(s.data_dict, "train"), split_path(s.data_dict, "val")
    val_path = s.val_path
    single_cls = s.opt.single_cls
    s.nc = 1 if single_cls else int(s.data_dict["nc"])
    s.names = ["item"] if single_cls and len(s.data_dict["names"]) != 1 else s.data_dict["names"]
    if len(s.names) != s.nc:
        raise InputError(f"{len(s.names)} names found for nc={s.nc} dataset in {s.opt.data}")
    s.is_coco = isinstance(val_path, str) and val_path.endswith(f"coco{os.sep}val2017.txt")


def make_optimizer(s: TrainRun) -> None:
    """Optimizer (weight decay scaled to the batch), LR scheduler, EMA, the resumed state, DP / SyncBN."""
    opt, hyp = s.opt, s.hyp
    s.accumulate = max(round(NBS / s.batch_size), 1)
    hyp["weight_decay"] *= s.batch_size * s.accumulate / NBS
    LOGGER.info(f"Scaled weight_decay = {hyp['weight_decay']}")
    s.optimizer = build_optimizer(s.model, opt.optimizer, hyp["lr0"], hyp["momentum"], hyp["weight_decay"])

    if opt.cos_lr:
        s.lf = one_cycle(1, hyp["lrf"], s.epochs)  # cosine 1 -> hyp['lrf']
    else:  # linear; reads s.epochs when called, so a fine-tuned checkpoint's longer schedule counts (as v6.1)
        s.lf = lambda x: (1 - x / s.epochs) * (1.0 - hyp["lrf"]) + hyp["lrf"]
    s.scheduler = lr_scheduler.LambdaLR(s.optimizer, lr_lambda=s.lf)

    s.ema = ModelEMA(s.model) if RANK in (-1, 0) else None

    if s.pretrained:  # resume / fine-tune state
        s.start_epoch, s.best_fitness, s.epochs = restore_training_state(s.ckpt, s.weights, s.optimizer, s.ema,
                                                                         s.epochs, opt.resume)
        s.loss_state = s.ckpt.get("loss_state") if opt.resume and isinstance(s.ckpt, dict) else None
        s.ckpt = None
    if opt.resume and RANK in (-1, 0):
        trim_results_csv(s.save_dir, s.start_epoch)  # epochs trained again get one row each

    if s.cuda and RANK == -1 and torch.cuda.device_count() > 1:
        LOGGER.warning("WARNING: DP not recommended, use torch.distributed.run for best DDP Multi-GPU results.")
        s.model = nn.DataParallel(s.model)
    if opt.sync_bn and s.cuda and RANK != -1:
        s.model = nn.SyncBatchNorm.convert_sync_batchnorm(s.model).to(s.device)
        LOGGER.info("Using SyncBatchNorm()")


def build_dataloaders(s: TrainRun) -> None:
    """Train and val loaders; on rank 0 also the label plots, AutoAnchor and ``on_pretrain_routine_end``.

    Raises:
        InputError: a training label's class is ``>= nc``.
    """
    opt, hyp, nc = s.opt, s.hyp, s.nc
    s.train_loader, s.dataset = create_dataloader(
        s.train_path, s.imgsz, s.batch_size // WORLD_SIZE, s.gs, opt.single_cls, hyp=hyp, augment=True,
        cache=None if opt.cache == "val" else opt.cache, rect=opt.rect, rank=LOCAL_RANK, workers=opt.workers,
        image_weights=opt.image_weights, quad=opt.quad, prefix=colorstr("train: "), shuffle=True, nc=nc,
        keep_decoded_mb=keep_decoded_mb(opt))
    labels = s.dataset.labels
    all_labels = np.concatenate(labels, 0) if len(labels) else np.zeros((0, 5))
    mlc = int(all_labels[:, 0].max()) if len(all_labels) else -1  # max label class
    s.nb = len(s.train_loader)  # batches per epoch
    if mlc >= nc:
        raise InputError(f"Label class {mlc} exceeds nc={nc} in {opt.data}. Possible class labels are 0-{nc - 1}")

    if RANK in (-1, 0):
        s.val_loader = create_dataloader(
            s.val_path, s.imgsz, s.batch_size // WORLD_SIZE * 2, s.gs, opt.single_cls, hyp=hyp,
            cache=None if opt.noval else opt.cache, rect=True, rank=-1, workers=opt.workers * 2, pad=0.5,
            prefix=colorstr("val: "), nc=nc, keep_decoded_mb=keep_decoded_mb(opt))[0]
        if not opt.resume:
            if s.plots:
                plot_labels(all_labels, s.names, s.save_dir)
            if not opt.noautoanchor:
                check_anchors(s.dataset, model=s.model, thr=hyp["anchor_t"], imgsz=s.imgsz)
            s.model.half().float()  # round anchors and weights to FP16 once, as v6.1 does
        s.callbacks.run("on_pretrain_routine_end")


def keep_decoded_mb(opt: argparse.Namespace) -> float:
    """``--keep-decoded`` (MB of decoded images each loader process may keep; 256 where an older opt lacks it)."""
    return float(getattr(opt, "keep_decoded", 256.0))


def prepare_model(s: TrainRun) -> None:
    """DDP wrap, then the model's attributes and the loss gains scaled to classes, levels and image size.

    ``on_params_update`` receives the scaled hyps (a copy) once they are final.
    """
    if RANK != -1:
        s.model = nn.parallel.DistributedDataParallel(s.model, device_ids=[LOCAL_RANK] if s.cuda else None,
                                                      output_device=LOCAL_RANK if s.cuda else None)
    hyp, nc = s.hyp, s.nc
    m = de_parallel(s.model)
    nl = m.model[-1].nl
    hyp["box"] *= 3 / nl
    hyp["cls"] *= nc / 80 * 3 / nl
    hyp["obj"] *= (s.imgsz / 640) ** 2 * 3 / nl
    hyp["label_smoothing"] = s.opt.label_smoothing
    m.nc, m.hyp, m.names = nc, hyp, s.names  # model.hyp: v6.1 checkpoints and user code read it
    m.class_weights = labels_to_class_weights(s.dataset.labels, nc).to(s.device) * nc
    s.callbacks.run("on_params_update", dict(hyp))


def prepare_loop(s: TrainRun) -> None:
    """Warmup length, scheduler position, GradScaler, early stopping and the loss, then the start message."""
    s.t0 = time.time()
    s.nw = max(round(s.hyp["warmup_epochs"] * s.nb), 1000)  # warmup iterations (v6.1: at least 1000)
    s.last_opt_step = -1
    s.maps = np.zeros(s.nc)  # mAP per class
    s.scheduler.last_epoch = s.start_epoch - 1
    s.scaler = torch.amp.GradScaler(s.device.type, enabled=s.amp is not None)
    s.stopper = EarlyStopping(patience=s.opt.patience)
    s.compute_loss = ComputeLoss(s.model, hyp=s.hyp, nb=s.nb)
    s.compute_loss.load_state_dict(s.loss_state)  # None (a new run, a v6.1 checkpoint): nothing to restore
    s.epoch = s.start_epoch
    LOGGER.info(f"Image sizes {s.imgsz} train, {s.imgsz} val\n"
                f"Using {s.train_loader.num_workers * WORLD_SIZE} dataloader workers\n"
                f"Logging results to {colorstr('bold', s.save_dir)}\n"
                f"Starting training for {s.epochs} epochs...")


def methods(instance: object) -> list[str]:
    """Public callable attribute names of an object (the logger hooks)."""
    return [f for f in dir(instance) if callable(getattr(instance, f)) and not f.startswith("_")]


def check_options(opt: argparse.Namespace) -> None:
    """Refuse option values that cannot train, with a message naming the flag.

    Raises:
        InputError: ``--epochs`` < 1, ``--batch-size`` 0 or < -1, ``--imgsz`` < 1, ``--workers`` < 0.
    """
    checks = [(opt.epochs >= 1, f"--epochs must be at least 1, got {opt.epochs}"),
              (opt.batch_size >= 1 or opt.batch_size == -1,
               f"--batch-size must be at least 1 (or -1 for AutoBatch), got {opt.batch_size}"),
              (opt.imgsz >= 1, f"--imgsz must be a positive number of pixels, got {opt.imgsz}"),
              (opt.workers >= 0, f"--workers must be 0 or more, got {opt.workers}")]
    bad = [msg for ok, msg in checks if not ok]
    if bad:
        raise InputError("; ".join(bad))


def prepare_resume(opt: argparse.Namespace) -> argparse.Namespace:
    """The options of the run being resumed; it writes where its checkpoint is (see utils/run_dir.py)."""
    ckpt, run_dir, opt = resume_target(opt.resume, get_latest_run() if opt.resume is True else "")
    opt.cfg, opt.weights, opt.resume = "", str(ckpt), True
    opt.hyp = str(run_dir / "hyp.yaml") if (run_dir / "hyp.yaml").exists() else opt.hyp
    LOGGER.info(f"Resuming training from {ckpt}")
    return opt


def setup_ddp(opt: argparse.Namespace, device: torch.device) -> torch.device:
    """Check the options for DDP, join the process group and share rank 0's run folder; returns this rank's device.

    Raises:
        InputError: an option DDP cannot train with (``--image-weights``, ``--evolve``, ``--batch-size -1``, a batch
            size that is not a multiple of the world size), or fewer CUDA devices than ranks.
    """
    msg = "is not compatible with YOLOv5 Multi-GPU DDP training"
    checks = [(not opt.image_weights, f"--image-weights {msg}"),
              (not opt.evolve, f"--evolve {msg}"),
              (opt.batch_size != -1, f"AutoBatch with --batch-size -1 {msg}, please pass a valid --batch-size"),
              (opt.batch_size % WORLD_SIZE == 0,
               f"--batch-size {opt.batch_size} must be a multiple of WORLD_SIZE ({WORLD_SIZE})")]
    bad = [m for ok, m in checks if not ok]
    if bad:
        raise InputError("; ".join(bad))
    if device.type != "cpu":
        if torch.cuda.device_count() <= LOCAL_RANK:
            raise InputError(f"insufficient CUDA devices for DDP command: LOCAL_RANK {LOCAL_RANK} but "
                             f"{torch.cuda.device_count()} CUDA devices")
        torch.cuda.set_device(LOCAL_RANK)
        device = torch.device("cuda", LOCAL_RANK)
    dist.init_process_group(backend="nccl" if dist.is_nccl_available() and device.type != "cpu" else "gloo")
    shared = [opt.save_dir]
    dist.broadcast_object_list(shared, src=0)  # every rank names rank 0's run folder
    opt.save_dir = shared[0]
    return device
