"""PyTorch helpers: device selection, weight init, Conv+BN fusion, the model summary line, timing."""

from __future__ import annotations

import datetime
import math
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.flops import model_gflops
from utils.general import LOGGER


def date_modified(path: str | Path = __file__) -> str:
    """Human-readable modification date of a file, e.g. '2026-11-21'."""
    t = datetime.datetime.fromtimestamp(Path(path).stat().st_mtime)
    return f"{t.year}-{t.month}-{t.day}"


def select_device(device: str = "", batch_size: int = 0, newline: bool = True) -> torch.device:
    """Pick ``cpu`` or CUDA devices from a string like ``''``, ``'cpu'``, ``'0'`` or ``'0,1'`` (facts §15.8)."""
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
    """YOLOv5 init (facts §3.4): BatchNorm2d eps 1e-3 / momentum 0.03, in-place activations; convs untouched."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eps = 1e-3
            m.momentum = 0.03
        elif type(m) in (nn.Hardswish, nn.LeakyReLU, nn.ReLU, nn.ReLU6, nn.SiLU):
            m.inplace = True


@torch.no_grad()
def fuse_conv_and_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """Fold a BatchNorm into the preceding conv (facts §2.24): a conv with bias and no gradients."""
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, kernel_size=conv.kernel_size, stride=conv.stride,
                      padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=True)
    fused.requires_grad_(False).to(conv.weight.device)
    scale = bn.weight.float() / torch.sqrt(bn.running_var.float() + bn.eps)  # (c2,)
    w = conv.weight.float().view(conv.out_channels, -1)
    fused.weight.copy_((scale[:, None] * w).view(fused.weight.shape))
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
    """Resize a (b, c, h, w) batch by ``ratio`` and pad to a multiple of ``gs`` with 0.447 (TTA, facts §3.6)."""
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

