"""The check after an export: load the exported file back, run it, and log how far it is from PyTorch."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from models.backends import DetectMultiBackend, model_format
from utils.general import LOGGER, colorstr

PREFIX = {"torchscript": "TorchScript:", "onnx": "ONNX:", "openvino": "OpenVINO:", "engine": "TensorRT:"}


def second_shape(shape: tuple, gs: int) -> tuple[int, ...]:
    """Another input shape (taller and narrower) to check a dynamic export at."""
    b, c, h, w = shape
    return b, c, h + gs, (w - gs if w > gs else w + gs)


def fixed_input(shape: tuple, like: torch.Tensor) -> torch.Tensor:
    """A reproducible random image batch in 0..1 of ``shape`` with ``like``'s device and dtype."""
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    return x.to(device=like.device, dtype=like.dtype)


def check_export(f: Path, model: nn.Module, im: torch.Tensor, gs: int) -> dict[tuple, float]:
    """Load ``f`` with DetectMultiBackend, run it on a fixed random input (and at a second size when the export
    is dynamic) and log the largest absolute difference from ``model``'s decoded output.

    Returns:
        ``{input shape: largest absolute difference}``; empty when the check itself failed (logged).
    """
    prefix = colorstr(PREFIX[model_format(f)])
    out: dict[tuple, float] = {}
    try:
        backend = DetectMultiBackend(f, device=im.device)
        second = second_shape(tuple(im.shape), gs)
        profile = getattr(backend.runtime, "profile", None)  # a dynamic TensorRT engine's (min, max) shapes
        if profile:
            second = tuple(min(s, hi) for s, hi in zip(second, profile[1]))
        shapes = [tuple(im.shape)] + ([second] if backend.dynamic else [])
        for shape in shapes:
            x = fixed_input(shape, im)
            ref, y = model(x)[0].float(), backend(x).float()
            if ref.shape != y.shape:
                LOGGER.warning(f"{prefix} WARNING: output shape {tuple(y.shape)} != PyTorch {tuple(ref.shape)}")
                continue
            d = (y - ref).abs()
            out[shape] = float(d.max())
            LOGGER.info(f"{prefix} checked at input {shape}: largest absolute difference from PyTorch "
                        f"{out[shape]:.3g} (xywh {float(d[..., :4].max()):.3g} px, obj/cls "
                        f"{float(d[..., 4:].max()):.3g}){'' if backend.dynamic else ' [static shape]'}")
    except Exception as e:  # noqa: BLE001 - a failed check is reported, the export stays
        LOGGER.warning(f"{prefix} WARNING: could not run the export to check it: {type(e).__name__}: {e}")
    return out
