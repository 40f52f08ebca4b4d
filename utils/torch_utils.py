"""PyTorch helpers: device selection, weight init, Conv+BN fusion, the model summary line, timing."""

from __future__ import annotations

import datetime
import math
import os
import platform
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.backends.cudnn as cudnn
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from utils import torch_profile
from utils.flops import model_gflops
from utils.general import LOGGER, colorstr

profile = torch_profile.profile  # v6.1 name of this module: speed/memory/FLOPs table of operations


def date_modified(path: str | Path = __file__) -> str:
    """Human-readable modification date of a file, e.g. '2026-11-21'."""
    t = datetime.datetime.fromtimestamp(Path(path).stat().st_mtime)
    return f"{t.year}-{t.month}-{t.day}"


def git_describe(path: str | Path = Path(__file__).parent) -> str:
    """``git describe --tags --long --always`` of the repository holding ``path`` (e.g. 'v6.1-12-gabc1234'), or
    '' when ``path`` is not in a git repository or git is missing or takes over 10 s."""
    try:
        r = subprocess.run(["git", "-C", str(path), "describe", "--tags", "--long", "--always"], capture_output=True,
                           text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    return r.stdout.strip() if r.returncode == 0 else ""


def device_count() -> int:
    """Number of NVIDIA GPUs as listed by ``nvidia-smi -L`` (one ``GPU i: ...`` line each); 0 when nvidia-smi is
    absent, fails or takes over 10 s. Unlike ``torch.cuda.device_count()`` it does not initialise CUDA."""
    try:
        r = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(line.startswith("GPU ") for line in r.stdout.splitlines()) if r.returncode == 0 else 0


def select_device(device: str = "", batch_size: int = 0, newline: bool = True) -> torch.device:
    """Pick ``cpu`` or CUDA devices from a string like ``''``, ``'cpu'``, ``'0'`` or ``'0,1'``."""
    s = f"YOLOv5 🚀 {date_modified()} torch {torch.__version__} "
    device = str(device).strip().lower().replace("cuda:", "")
    cpu = device == "cpu"
    if cpu:
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
    elif device:
        os.environ["CUDA_VISIBLE_DEVICES"] = device
        if not (torch.cuda.is_available() and torch.cuda.device_count() >= len(device.replace(",", ""))):
            raise AssertionError(f"Invalid CUDA '--device {device}' requested, use '--device cpu' or pass valid "
                                 f"CUDA device(s)")
    cuda = not cpu and torch.cuda.is_available()
    if cuda:
        devices = device.split(",") if device else "0"
        n = len(devices)
        if n > 1 and batch_size > 0:
            assert batch_size % n == 0, f"batch-size {batch_size} not multiple of GPU count {n}"
        space = " " * (len(s) + 1)
        for i, d in enumerate(devices):
            p = torch.cuda.get_device_properties(i)
            s += f"{'' if i == 0 else space}CUDA:{d} ({p.name}, {p.total_memory / 1024 ** 2:.0f}MiB)\n"
    else:
        s += "CPU\n"
    if not newline:
        s = s.rstrip()
    LOGGER.info(s.encode().decode("ascii", "ignore") if platform.system() == "Windows" else s)
    return torch.device("cuda:0" if cuda else "cpu")


def time_sync() -> float:
    """``time.time()`` after waiting for queued CUDA work."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.time()


def is_parallel(model: nn.Module) -> bool:
    """True for DataParallel / DistributedDataParallel wrappers."""
    return type(model) in (nn.parallel.DataParallel, nn.parallel.DistributedDataParallel)


def de_parallel(model: nn.Module) -> nn.Module:
    """The wrapped model of a DP/DDP wrapper, else the model itself."""
    return model.module if is_parallel(model) else model


def initialize_weights(model: nn.Module) -> None:
    """YOLOv5 init: BatchNorm2d eps 1e-3 / momentum 0.03, in-place activations; convs untouched."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eps = 1e-3
            m.momentum = 0.03
        elif type(m) in (nn.Hardswish, nn.LeakyReLU, nn.ReLU, nn.ReLU6, nn.SiLU):
            m.inplace = True


def find_modules(model: nn.Module, mclass: type = nn.Conv2d) -> list[int]:
    """Indices of the entries of ``model.module_list`` that are instances of ``mclass``."""
    return [i for i, m in enumerate(model.module_list) if isinstance(m, mclass)]


def sparsity(model: nn.Module) -> float:
    """Fraction of the model's parameter values that are exactly zero."""
    total = zeros = 0
    for p in model.parameters():
        total += p.numel()
        zeros += int((p == 0).sum())
    return zeros / total if total else 0.0


def prune(model: nn.Module, amount: float = 0.3) -> None:
    """Zero the ``amount`` fraction of smallest-magnitude (L1) weights of every Conv2d, in place, and log the
    resulting global sparsity."""
    import torch.nn.utils.prune as tprune

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            tprune.l1_unstructured(m, name="weight", amount=amount)  # adds a mask...
            tprune.remove(m, "weight")  # ...and bakes it into the weight
    LOGGER.info(f"Model pruned to {sparsity(model):.3g} global sparsity")


@torch.no_grad()
def fuse_conv_and_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """Fold a BatchNorm into the preceding conv: a conv with bias and no gradients."""
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, kernel_size=conv.kernel_size, stride=conv.stride,
                      padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=True)
    fused.requires_grad_(False).to(conv.weight.device)
    scale = bn.weight.float() / torch.sqrt(bn.running_var.float() + bn.eps)  # (c2,)
    if conv.weight.is_contiguous(memory_format=torch.channels_last):  # keep the layout (NHWC weights stay NHWC)
        fused.weight.data = fused.weight.data.contiguous(memory_format=torch.channels_last)
    fused.weight.copy_(scale[:, None, None, None] * conv.weight.float())  # (c2, c1/g, k, k), any layout
    b_conv = conv.bias.float() if conv.bias is not None else torch.zeros_like(bn.running_mean, dtype=torch.float)
    fused.bias.copy_(scale * b_conv + bn.bias.float() - scale * bn.running_mean.float())
    return fused.to(conv.weight.dtype)


def model_info(model: nn.Module, verbose: bool = False, img_size: int | list = 640) -> str:
    """Log and return v6.1's summary line: ``Model Summary: L layers, P parameters, G gradients, F GFLOPs``."""
    n_p = sum(x.numel() for x in model.parameters())
    n_g = sum(x.numel() for x in model.parameters() if x.requires_grad)
    if verbose:
        LOGGER.info(f"{'layer':>5} {'name':>40} {'gradient':>9} {'parameters':>12} {'shape':>20} {'mu':>10} {'sigma':>10}")
        for i, (name, p) in enumerate(model.named_parameters()):
            name = name.replace("module_list.", "")
            LOGGER.info("%5g %40s %9s %12g %20s %10.3g %10.3g" %
                        (i, name, p.requires_grad, p.numel(), list(p.shape), p.mean(), p.std() if p.numel() > 1 else 0))
    gflops = model_gflops(model, img_size)
    fs = f", {gflops:.1f} GFLOPs" if gflops is not None else ""
    s = f"Model Summary: {len(list(model.modules()))} layers, {n_p} parameters, {n_g} gradients{fs}"
    LOGGER.info(s)
    return s


def scale_img(img: torch.Tensor, ratio: float = 1.0, same_shape: bool = False, gs: int = 32) -> torch.Tensor:
    """Resize a (b, c, h, w) batch by ``ratio`` and pad to a multiple of ``gs`` with 0.447 (TTA)."""
    if ratio == 1.0:
        return img
    h, w = img.shape[2:]
    s = (int(h * ratio), int(w * ratio))
    img = F.interpolate(img, size=s, mode="bilinear", align_corners=False)
    if not same_shape:
        h, w = (math.ceil(x * ratio / gs) * gs for x in (h, w))
    return F.pad(img, [0, w - s[1], 0, h - s[0]], value=0.447)


def copy_attr(a: Any, b: Any, include: tuple = (), exclude: tuple = ()) -> None:
    """Copy b's public attributes to a (only ``include`` when given, never ``exclude``)."""
    for k, v in b.__dict__.items():
        if (len(include) and k not in include) or k.startswith("_") or k in exclude:
            continue
        setattr(a, k, v)


def intersect_dicts(da: dict, db: dict, exclude: tuple = ()) -> dict:
    """Entries of ``da`` whose key is in ``db`` with the same shape and contains no ``exclude`` substring."""
    return {k: v for k, v in da.items() if k in db and not any(x in k for x in exclude) and v.shape == db[k].shape}



@contextmanager
def torch_distributed_zero_first(local_rank: int):
    """Make every DDP process but local rank 0 wait until rank 0 has run the block (dataset caches...)."""
    if local_rank not in (-1, 0):
        dist.barrier(device_ids=[local_rank]) if torch.cuda.is_available() else dist.barrier()
    yield
    if local_rank == 0:
        dist.barrier(device_ids=[0]) if torch.cuda.is_available() else dist.barrier()


def init_seeds(seed: int = 0, deterministic: bool = False) -> None:
    """Seed random, numpy and torch.

    Args:
        seed: the seed.
        deterministic: every seed in deterministic mode (``utils.determinism.set_deterministic``). Without it,
            v6.1's speed-first rule: seed 0 is deterministic, other seeds let cuDNN benchmark.
    """
    import random

    import numpy as np

    from utils.determinism import set_deterministic

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    set_deterministic(deterministic)
    if not deterministic:
        cudnn.benchmark, cudnn.deterministic = (False, True) if seed == 0 else (True, False)


class ModelEMA:
    """Exponential moving average of a model's state: decay 0.9999·(1 − exp(−updates/2000))."""

    def __init__(self, model: nn.Module, decay: float = 0.9999, updates: int = 0):
        from copy import deepcopy

        self.ema = deepcopy(de_parallel(model)).eval()  # FP32 EMA
        self.updates = updates
        self.decay = lambda x: decay * (1 - math.exp(-x / 2000))  # ramps up over the first updates
        for p in self.ema.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Blend every floating-point state entry (parameters and BN buffers) of ``model`` into the EMA."""
        self.updates += 1
        d = self.decay(self.updates)
        msd = de_parallel(model).state_dict()
        for k, v in self.ema.state_dict().items():
            if v.dtype.is_floating_point:
                v *= d
                v += (1 - d) * msd[k].detach()

    def update_attr(self, model: nn.Module, include: tuple = (), exclude: tuple = ("process_group", "reducer")) -> None:
        """Copy plain attributes (yaml, nc, hyp, names, stride, class_weights...) from ``model``."""
        copy_attr(self.ema, model, include, exclude)


class EarlyStopping:
    """Stop when fitness has not improved for ``patience`` epochs."""

    def __init__(self, patience: int = 30):
        self.best_fitness = 0.0
        self.best_epoch = 0
        self.patience = patience or float("inf")
        self.possible_stop = False

    def __call__(self, epoch: int, fitness: float) -> bool:
        if fitness >= self.best_fitness:  # >= so that a fitness of 0 early on still counts
            self.best_epoch = epoch
            self.best_fitness = fitness
        delta = epoch - self.best_epoch
        self.possible_stop = delta >= (self.patience - 1)
        stop = delta >= self.patience
        if stop:
            LOGGER.info(f"Stopping training early as no improvement observed in last {self.patience} epochs. "
                        f"Best results observed at epoch {self.best_epoch}, best model saved as best.pt.\n"
                        f"To update EarlyStopping(patience={self.patience}) pass a new patience value, "
                        f"i.e. `python train.py --patience 300` or use `--patience 0` to disable EarlyStopping.")
        return stop


_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


def optimizer_groups(model: nn.Module) -> tuple[list, list, list]:
    """Split parameters into v6.1's groups: g0 norm weights (no decay), g1 weights (decay), g2 biases.

    v6.1 only looked at ``module.weight``/``module.bias`` with exact BatchNorm2d for g0, so parameters held
    any other way (``nn.MultiheadAttention.in_proj_weight``, ``Sum.w``, raw ``nn.Parameter`` attributes of
    attention modules) were never updated. Here every parameter lands in a group: biases (names ending in
    ``bias``) in g2, weights of any normalisation layer and other parameters of ≤ 1 dimension (scales, gates)
    in g0, everything else in g1. For the v6.1 layers this gives exactly v6.1's groups.
    """
    g0, g1, g2 = [], [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if name.endswith("bias"):
                g2.append(p)
            elif isinstance(module, _NORMS) or p.ndim <= 1:
                g0.append(p)
            else:
                g1.append(p)
    return g0, g1, g2


def build_optimizer(model: nn.Module, name: str = "SGD", lr: float = 0.01, momentum: float = 0.937,
                    decay: float = 5e-4) -> torch.optim.Optimizer:
    """Optimizer with param_groups [0] g0 (no decay), [1] g1 (``decay``), [2] g2 biases, as v6.1 builds it."""
    g0, g1, g2 = optimizer_groups(model)
    if name == "Adam":
        optimizer = torch.optim.Adam(g0, lr=lr, betas=(momentum, 0.999))
    elif name == "AdamW":
        optimizer = torch.optim.AdamW(g0, lr=lr, betas=(momentum, 0.999))
    elif name == "SGD":
        optimizer = torch.optim.SGD(g0, lr=lr, momentum=momentum, nesterov=True)
    else:
        raise ValueError(f"unknown optimizer {name!r}: use SGD, Adam or AdamW")
    optimizer.add_param_group({"params": g1, "weight_decay": decay})
    optimizer.add_param_group({"params": g2})
    LOGGER.info(f"{colorstr('optimizer:')} {type(optimizer).__name__} with parameter groups "
                f"{len(g0)} weight (no decay), {len(g1)} weight, {len(g2)} bias")
    return optimizer


def release_memory() -> None:
    """Give freed memory back to the system between training phases.

    PyTorch's CPU tensors come from malloc; after a training epoch and a validation pass glibc keeps the freed
    heap mapped, so resident memory keeps the high-water mark of every phase. Collecting garbage, emptying the
    CUDA cache and ``malloc_trim(0)`` (glibc only) at epoch boundaries keeps peak memory at one phase's worth.
    """
    import ctypes
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if platform.system() == "Linux":
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to trim
            pass
