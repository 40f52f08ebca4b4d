"""AutoBatch: the largest batch size that fits in 90% of CUDA memory."""

from __future__ import annotations

from copy import deepcopy

import numpy as np
import torch
import torch.nn as nn

from utils.general import LOGGER, colorstr


def check_train_batch_size(model: nn.Module, imgsz: int = 640) -> int:
    """Batch size for training ``model`` at ``imgsz`` under AMP (16 on CPU)."""
    with torch.autocast("cuda", enabled=torch.cuda.is_available()):
        return autobatch(deepcopy(model).train(), imgsz)


def autobatch(model: nn.Module, imgsz: int = 640, fraction: float = 0.9, batch_size: int = 16) -> int:
    """Profile batch sizes 1, 2, 4, 8, 16 and fit memory = a·b + c to fill ``fraction`` of the GPU."""
    prefix = colorstr("AutoBatch: ")
    LOGGER.info(f"{prefix}Computing optimal batch size for --imgsz {imgsz}")
    device = next(model.parameters()).device
    if device.type == "cpu":
        LOGGER.info(f"{prefix}CUDA not detected, using default CPU batch-size {batch_size}")
        return batch_size
    gb = 1 << 30
    props = torch.cuda.get_device_properties(device)
    t = props.total_memory / gb
    r = torch.cuda.memory_reserved(device) / gb
    a = torch.cuda.memory_allocated(device) / gb
    f = t - (r + a)
    LOGGER.info(f"{prefix}{device} ({props.name}) {t:.2f}G total, {r:.2f}G reserved, {a:.2f}G allocated, {f:.2f}G free")
    sizes = [1, 2, 4, 8, 16]
    mem = []
    for b in sizes:
        torch.cuda.reset_peak_memory_stats(device)
        img = torch.zeros(b, 3, imgsz, imgsz, device=device)
        for _ in range(3):
            y = model(img)
            sum(x.sum() for x in y).backward()
        mem.append(torch.cuda.max_memory_reserved(device) / gb)
    p = np.polyfit(sizes, mem, deg=1)  # memory = p[0] * b + p[1]
    b = int((f * fraction - p[1]) / p[0])
    LOGGER.info(f"{prefix}Using batch-size {b} for {device} {t * fraction:.2f}G/{t:.2f}G ({fraction * 100:.0f}%)")
    return max(b, 1)
