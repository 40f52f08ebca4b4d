"""Train a YOLOv5 model on a detection dataset, with YOLOv5 v6.1's recipe.

Usage:
    $ python train.py --cfg models/yolov5n-NAM.yaml --weights '' --data ../shared/data/bccd/bccd.yaml --img 320
    $ python train.py --weights yolov5s.pt --cfg models/yolov5s-NAM.yaml --data my.yaml   # transfer past NAM
    $ python train.py --cfg models/yolov5n.yaml --weights '' --epochs 3   # no --data: the embedded demo set
    $ python -m torch.distributed.run --nproc_per_node 2 train.py --device cpu ...             # DDP (gloo)
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

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
import yaml
from torch.optim import lr_scheduler
from tqdm import tqdm

FILE = Path(__file__).resolve()
ROOT = FILE.parents[0]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))
ROOT = Path(os.path.relpath(ROOT, Path.cwd()))  # relative

import val  # noqa: E402  (for end-of-epoch mAP)
from models.attention import add_sparsity_grad  # noqa: E402
from models.experimental import attempt_load, safe_classes  # noqa: E402
from models.transfer import load_pretrained  # noqa: E402
from models.yolo import Model  # noqa: E402
from utils.amp import AMP_MODES, amp_dtype, check_amp, check_half  # noqa: E402
from utils.autoanchor import check_anchors  # noqa: E402
from utils.autobatch import check_train_batch_size  # noqa: E402
from utils.callbacks import Callbacks  # noqa: E402
from utils.checkpoint import restore_training_state, save_atomic, strip_optimizer  # noqa: E402
from utils.dataset_yaml import check_dataset, split_path  # noqa: E402
from utils.datasets import create_dataloader  # noqa: E402
from utils.downloads import attempt_download  # noqa: E402
from utils.evolve import evolve  # noqa: E402
from utils.general import (LOGGER, InputError, check_file, check_img_size, check_suffix, check_yaml,  # noqa: E402
                           colorstr, get_latest_run, increment_path, one_cycle, print_args, run_cli)
from utils.hyps import load_hyp  # noqa: E402
from utils.loggers import Loggers  # noqa: E402
from utils.loss import ComputeLoss  # noqa: E402
from utils.metrics import fitness, labels_to_class_weights, labels_to_image_weights  # noqa: E402
from utils.plots import plot_labels  # noqa: E402
from utils.run_dir import RunLock, check_belongs, new_run_id, resume_target, trim_results_csv  # noqa: E402
from utils.torch_utils import (EarlyStopping, ModelEMA, build_optimizer, de_parallel, init_seeds,  # noqa: E402
                               release_memory, select_device, torch_distributed_zero_first)

LOCAL_RANK = int(os.getenv("LOCAL_RANK", -1))  # https://pytorch.org/docs/stable/elastic/run.html
RANK = int(os.getenv("RANK", -1))
WORLD_SIZE = int(os.getenv("WORLD_SIZE", 1))
DEFAULT_WEIGHTS = ROOT / "yolov5s.pt"


def train(hyp: dict | str, opt: argparse.Namespace, device: torch.device, callbacks: Callbacks):
    """One training run; returns the final validation results (P, R, mAP@.5, mAP@.5:.95, 3 val losses)."""
    save_dir, epochs, batch_size, weights, single_cls, evolving, data, cfg, resume, noval, nosave, workers, freeze = \
        Path(opt.save_dir), opt.epochs, opt.batch_size, opt.weights, opt.single_cls, opt.evolve, opt.data, opt.cfg, \
        opt.resume, opt.noval, opt.nosave, opt.workers, opt.freeze

    w = save_dir / "weights"
    if RANK in (-1, 0):
        (w.parent if evolving else w).mkdir(parents=True, exist_ok=True)
    last, best = w / "last.pt", w / "best.pt"

    hyp = load_hyp(hyp)
    LOGGER.info(colorstr("hyperparameters: ") + ", ".join(f"{k}={v}" for k, v in hyp.items()))
    if not evolving and RANK in (-1, 0) and not resume:
        with open(save_dir / "hyp.yaml", "w") as f:
            yaml.safe_dump(hyp, f, sort_keys=False)
        with open(save_dir / "opt.yaml", "w") as f:
            yaml.safe_dump({k: str(v) if isinstance(v, Path) else v for k, v in vars(opt).items()}, f, sort_keys=False)

    if RANK in (-1, 0):
        loggers = Loggers(save_dir, weights, opt, hyp, LOGGER)
        callbacks.unregister("run loggers")  # a previous train() on these callbacks (--evolve, train.run twice)
        for k in methods(loggers):
            callbacks.register_action(k, name="run loggers", callback=getattr(loggers, k))

    plots = not evolving
    cuda = device.type != "cpu"
    init_seeds(opt.seed + 1 + RANK)
    with torch_distributed_zero_first(LOCAL_RANK):
        data_dict = check_dataset(data)
    train_path, val_path = split_path(data_dict, "train"), split_path(data_dict, "val")
    nc = 1 if single_cls else int(data_dict["nc"])
    names = ["item"] if single_cls and len(data_dict["names"]) != 1 else data_dict["names"]
    assert len(names) == nc, f"{len(names)} names found for nc={nc} dataset in {data}"
    is_coco = isinstance(val_path, str) and val_path.endswith(f"coco{os.sep}val2017.txt")

    # Model
    check_suffix(weights, ".pt")
    pretrained = str(weights).endswith(".pt")
    ckpt = None
    if pretrained:
        with torch_distributed_zero_first(LOCAL_RANK):
            weights = attempt_download(weights)
        model, ckpt = load_pretrained(weights, cfg, nc, hyp, resume, device)
        if resume:
            check_belongs(ckpt, weights, opt)
    else:
        model = Model(cfg, ch=3, nc=nc, anchors=hyp.get("anchors")).to(device)

    # Freeze
    freeze = [f"model.{x}." for x in (freeze if len(freeze) > 1 else range(freeze[0]))]
    for k, v in model.named_parameters():
        v.requires_grad = True
        if any(x in k for x in freeze):
            LOGGER.info(f"freezing {k}")
            v.requires_grad = False

    # Image size
    gs = max(int(model.stride.max()), 32)  # grid size (max stride)
    imgsz = check_img_size(opt.imgsz, gs, floor=gs * 2)

    # Mixed precision: fp16 autocast on CUDA by default; fp32 when the model fails the check
    amp = amp_dtype(getattr(opt, "amp", "auto"), device)
    if amp is not None and not check_amp(model, device, amp):
        amp = None

    # Batch size
    if RANK == -1 and batch_size == -1:
        batch_size = check_train_batch_size(model, imgsz)

    # Optimizer
    nbs = 64  # nominal batch size
    accumulate = max(round(nbs / batch_size), 1)
    hyp["weight_decay"] *= batch_size * accumulate / nbs
    LOGGER.info(f"Scaled weight_decay = {hyp['weight_decay']}")
    optimizer = build_optimizer(model, opt.optimizer, hyp["lr0"], hyp["momentum"], hyp["weight_decay"])

    # Scheduler
    if opt.cos_lr:
        lf = one_cycle(1, hyp["lrf"], epochs)  # cosine 1 -> hyp['lrf']
    else:
        lf = lambda x: (1 - x / epochs) * (1.0 - hyp["lrf"]) + hyp["lrf"]  # noqa: E731  linear
    scheduler = lr_scheduler.LambdaLR(optimizer, lr_lambda=lf)

    ema = ModelEMA(model) if RANK in (-1, 0) else None

    # Resume / fine-tune state
    start_epoch, best_fitness = 0, 0.0
    if pretrained:
        start_epoch, best_fitness, epochs = restore_training_state(ckpt, weights, optimizer, ema, epochs, resume)
        del ckpt
    if resume and RANK in (-1, 0):
        trim_results_csv(save_dir, start_epoch)  # epochs trained again get one row each

    # DP mode
    if cuda and RANK == -1 and torch.cuda.device_count() > 1:
        LOGGER.warning("WARNING: DP not recommended, use torch.distributed.run for best DDP Multi-GPU results.")
        model = nn.DataParallel(model)
    if opt.sync_bn and cuda and RANK != -1:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model).to(device)
        LOGGER.info("Using SyncBatchNorm()")

    # Trainloader
    train_loader, dataset = create_dataloader(
        train_path, imgsz, batch_size // WORLD_SIZE, gs, single_cls, hyp=hyp, augment=True,
        cache=None if opt.cache == "val" else opt.cache, rect=opt.rect, rank=LOCAL_RANK, workers=workers,
        image_weights=opt.image_weights, quad=opt.quad, prefix=colorstr("train: "), shuffle=True, nc=nc)
    all_labels = np.concatenate(dataset.labels, 0) if len(dataset.labels) else np.zeros((0, 5))
    mlc = int(all_labels[:, 0].max()) if len(all_labels) else -1  # max label class
    nb = len(train_loader)  # batches per epoch
    assert mlc < nc, f"Label class {mlc} exceeds nc={nc} in {data}. Possible class labels are 0-{nc - 1}"

    if RANK in (-1, 0):
        val_loader = create_dataloader(
            val_path, imgsz, batch_size // WORLD_SIZE * 2, gs, single_cls, hyp=hyp, cache=None if noval else opt.cache,
            rect=True, rank=-1, workers=workers * 2, pad=0.5, prefix=colorstr("val: "), nc=nc)[0]
        if not resume:
            if plots:
                plot_labels(all_labels, names, save_dir)
            if not opt.noautoanchor:
                check_anchors(dataset, model=model, thr=hyp["anchor_t"], imgsz=imgsz)
            model.half().float()  # round anchors and weights to FP16 once, as v6.1 does
        callbacks.run("on_pretrain_routine_end")

    # DDP mode
    if RANK != -1:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[LOCAL_RANK] if cuda else None,
                                                    output_device=LOCAL_RANK if cuda else None)

    # Model attributes
    m = de_parallel(model)
    nl = m.model[-1].nl
    hyp["box"] *= 3 / nl
    hyp["cls"] *= nc / 80 * 3 / nl
    hyp["obj"] *= (imgsz / 640) ** 2 * 3 / nl
    hyp["label_smoothing"] = opt.label_smoothing
    m.nc, m.hyp, m.names = nc, hyp, names
    m.class_weights = labels_to_class_weights(dataset.labels, nc).to(device) * nc
    nam_l1 = float(hyp.get("nam_l1", 0.0) or 0.0)  # NAM sparsity penalty (off by default)

    # Start training
    t0 = time.time()
    nw = max(round(hyp["warmup_epochs"] * nb), 1000)  # warmup iterations (v6.1: at least 1000)
    last_opt_step = -1
    maps = np.zeros(nc)  # mAP per class
    results = (0, 0, 0, 0, 0, 0, 0)  # P, R, mAP@.5, mAP@.5:.95, val_loss(box, obj, cls)
    scheduler.last_epoch = start_epoch - 1
    scaler = torch.amp.GradScaler(device.type, enabled=amp is not None)
    stopper = EarlyStopping(patience=opt.patience)
    compute_loss = ComputeLoss(model)
    LOGGER.info(f"Image sizes {imgsz} train, {imgsz} val\n"
                f"Using {train_loader.num_workers * WORLD_SIZE} dataloader workers\n"
                f"Logging results to {colorstr('bold', save_dir)}\n"
                f"Starting training for {epochs} epochs...")
    epoch = start_epoch
    for epoch in range(start_epoch, epochs):
        model.train()
        if opt.image_weights:  # resample images by class weights and last mAPs
            cw = m.class_weights.cpu().numpy() * (1 - maps) ** 2 / nc
            iw = labels_to_image_weights(dataset.labels, nc=nc, class_weights=cw)
            dataset.indices = random.choices(range(dataset.n), weights=iw, k=dataset.n)
        mloss = torch.zeros(3, device=device)  # mean losses
        if RANK != -1:
            train_loader.sampler.set_epoch(epoch)
        pbar = enumerate(train_loader)
        LOGGER.info(("\n" + "%10s" * 7) % ("Epoch", "gpu_mem", "box", "obj", "cls", "labels", "img_size"))
        if RANK in (-1, 0):
            pbar = tqdm(pbar, total=nb, bar_format="{l_bar}{bar:10}{r_bar}{bar:-10b}")
        optimizer.zero_grad()
        for i, (imgs, targets, paths, _) in pbar:
            ni = i + nb * epoch  # integrated batches since train start
            imgs = imgs.to(device, non_blocking=True).float() / 255  # uint8 0-255 -> float 0.0-1.0

            if ni <= nw:  # warmup
                xi = [0, nw]
                accumulate = max(1, np.interp(ni, xi, [1, nbs / batch_size]).round())
                for j, x in enumerate(optimizer.param_groups):
                    # bias lr falls from warmup_bias_lr to lr0, all other lrs rise from 0.0 to lr0
                    x["lr"] = np.interp(ni, xi, [hyp["warmup_bias_lr"] if j == 2 else 0.0, x["initial_lr"] * lf(epoch)])
                    if "momentum" in x:
                        x["momentum"] = np.interp(ni, xi, [hyp["warmup_momentum"], hyp["momentum"]])

            if opt.multi_scale:
                sz = random.randrange(int(imgsz * 0.5), int(imgsz * 1.5) + gs) // gs * gs
                sf = sz / max(imgs.shape[2:])
                if sf != 1:
                    ns = [math.ceil(x * sf / gs) * gs for x in imgs.shape[2:]]  # stretched to gs-multiples
                    imgs = F.interpolate(imgs, size=ns, mode="bilinear", align_corners=False)

            with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                pred = model(imgs)
                loss, loss_items = compute_loss(pred, targets.to(device))
                if RANK != -1:
                    loss *= WORLD_SIZE  # gradients are averaged between devices in DDP mode
                if opt.quad:
                    loss *= 4.0
            scaler.scale(loss).backward()

            if ni - last_opt_step >= accumulate:
                if nam_l1:  # L1 sparsity on NAM scales, on unscaled gradients
                    scaler.unscale_(optimizer)
                    add_sparsity_grad(model, nam_l1)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad()
                if ema:
                    ema.update(model)
                last_opt_step = ni

            if RANK in (-1, 0):
                mloss = (mloss * i + loss_items) / (i + 1)
                mem = f"{torch.cuda.memory_reserved() / 1e9 if torch.cuda.is_available() else 0:.3g}G"
                pbar.set_description(("%10s" * 2 + "%10.4g" * 5) %
                                     (f"{epoch}/{epochs - 1}", mem, *mloss, targets.shape[0], imgs.shape[-1]))
                callbacks.run("on_train_batch_end", ni, model, imgs, targets, paths, plots, opt.sync_bn)
                if callbacks.stop_training:
                    return results

        lr = [x["lr"] for x in optimizer.param_groups]  # for loggers
        scheduler.step()

        if RANK in (-1, 0):
            callbacks.run("on_train_epoch_end", epoch=epoch)
            ema.update_attr(model, include=["yaml", "nc", "hyp", "names", "stride", "class_weights"])
            final_epoch = (epoch + 1 == epochs) or stopper.possible_stop
            if not noval or final_epoch:
                results, maps, _ = val.run(data_dict, batch_size=batch_size // WORLD_SIZE * 2, imgsz=imgsz,
                                           model=ema.ema, half=cuda and check_half(ema.ema, device),
                                           single_cls=single_cls, dataloader=val_loader,
                                           save_dir=save_dir, plots=False, callbacks=callbacks,
                                           compute_loss=compute_loss)
            fi = float(fitness(np.array(results).reshape(1, -1))[0])  # 0.1 mAP@.5 + 0.9 mAP@.5:.95
            if fi > best_fitness:
                best_fitness = fi
            log_vals = list(mloss.tolist()) + list(results) + lr
            callbacks.run("on_fit_epoch_end", log_vals, epoch, best_fitness, fi)

            if (not nosave) or (final_epoch and not evolving):
                ckpt = {"epoch": epoch, "best_fitness": best_fitness, "model": deepcopy(de_parallel(model)).half(),
                        "ema": deepcopy(ema.ema).half(), "updates": ema.updates, "optimizer": optimizer.state_dict(),
                        "wandb_id": None, "date": datetime.now().isoformat(), "run_id": getattr(opt, "run_id", None)}
                save_atomic(ckpt, last)  # temporary file then rename: last.pt is always loadable
                if best_fitness == fi:
                    save_atomic(ckpt, best)
                if epoch > 0 and opt.save_period > 0 and epoch % opt.save_period == 0:
                    save_atomic(ckpt, w / f"epoch{epoch}.pt")
                del ckpt
                callbacks.run("on_model_save", last, epoch, final_epoch, best_fitness, fi)

            if RANK == -1 and stopper(epoch=epoch, fitness=fi):
                break
        release_memory()  # hand the epoch's freed heap back before the next one

    if RANK in (-1, 0):
        LOGGER.info(f"\n{epoch - start_epoch + 1} epochs completed in {(time.time() - t0) / 3600:.3f} hours.")
        release_memory()
        for f in last, best:
            if f.exists():
                strip_optimizer(f, allowed=safe_classes())
                if f is best:
                    LOGGER.info(f"\nValidating {f}...")
                    best_model = attempt_load(f, map_location=device).half()
                    results, _, _ = val.run(data_dict, batch_size=batch_size // WORLD_SIZE * 2, imgsz=imgsz,
                                            model=best_model, half=cuda and check_half(best_model, device),
                                            iou_thres=0.65 if is_coco else 0.60, single_cls=single_cls,
                                            dataloader=val_loader, save_dir=save_dir, save_json=is_coco,
                                            verbose=True, plots=plots, callbacks=callbacks,
                                            compute_loss=compute_loss)
        callbacks.run("on_train_end", last, best, plots, epoch, results)
        LOGGER.info(f"Results saved to {colorstr('bold', save_dir)}")
    if cuda:
        torch.cuda.empty_cache()
    return results


def methods(instance) -> list[str]:
    """Public callable attribute names of an object (the logger hooks)."""
    return [f for f in dir(instance) if callable(getattr(instance, f)) and not f.startswith("_")]


def parse_opt(known: bool = False) -> argparse.Namespace:
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
    parser.add_argument("--seed", type=int, default=0, help="global training seed (v6.1 always used 0)")
    parser.add_argument("--amp", default="auto", choices=AMP_MODES,
                        help="mixed precision: auto (fp16 on CUDA, fp32 on CPU), fp16, bf16 or off")
    parser.add_argument("--local_rank", type=int, default=-1, help="DDP parameter, do not modify")
    # Weights & Biases arguments (accepted for command-line compatibility; W&B is not integrated)
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


def main(opt: argparse.Namespace, callbacks: Callbacks | None = None):
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
        msg = "is not compatible with YOLOv5 Multi-GPU DDP training"
        assert not opt.image_weights, f"--image-weights {msg}"
        assert not opt.evolve, f"--evolve {msg}"
        assert opt.batch_size != -1, f"AutoBatch with --batch-size -1 {msg}, please pass a valid --batch-size"
        assert opt.batch_size % WORLD_SIZE == 0, f"--batch-size {opt.batch_size} must be multiple of WORLD_SIZE"
        if device.type != "cpu":
            assert torch.cuda.device_count() > LOCAL_RANK, "insufficient CUDA devices for DDP command"
            torch.cuda.set_device(LOCAL_RANK)
            device = torch.device("cuda", LOCAL_RANK)
        dist.init_process_group(backend="nccl" if dist.is_nccl_available() and device.type != "cpu" else "gloo")
        shared = [opt.save_dir]
        dist.broadcast_object_list(shared, src=0)  # every rank names rank 0's run folder
        opt.save_dir = shared[0]

    with RunLock(opt.save_dir) if RANK in (-1, 0) else contextlib.nullcontext():  # one writer per run folder
        if opt.evolve:
            return evolve(opt, device, callbacks, train)
        results = train(opt.hyp, opt, device, callbacks)
    if WORLD_SIZE > 1 and RANK == 0:
        LOGGER.info("Destroying process group... ")
        dist.destroy_process_group()
    return results


def run(**kwargs):
    """``import train; train.run(data='coco128.yaml', imgsz=320, weights='yolov5m.pt')``"""
    opt = parse_opt(True)
    for k, v in kwargs.items():
        setattr(opt, k, v)
    return main(opt)


if __name__ == "__main__":
    run_cli(main, parse_opt, "train.py")
