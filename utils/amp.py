"""Mixed precision: which dtype to train in, and checks that fall back to fp32 when reduced precision is wrong.

``--amp auto`` (the default) trains with fp16 autocast and a GradScaler on CUDA, as YOLOv5 does, and with bf16
autocast on a CPU that computes bf16 in hardware (AVX512-BF16 or AMX; fp32 on other CPUs, as YOLOv5). On a 2-core
AVX512-BF16 CPU it takes about 0.7x the fp32 time per yolov5n batch, and the train losses of BCCD's first two
epochs stay within 0.1% of fp32's; ``--amp off`` trains in fp32 everywhere.
``--amp bf16`` / ``fp16`` ask for it on any device where torch supports autocast (bf16 on the CPU runs the same code
path as CUDA AMP: autocast, GradScaler, unscaled-gradient hooks), ``--amp off`` never uses it.

Before training with AMP, :func:`check_amp` runs the model once in fp32 and once under autocast on the same fixed
image and compares the decoded outputs; a model (or device) whose reduced-precision output is not finite or
differs by more than a tolerance trains in fp32 instead, with a warning. :func:`check_half` does the same for
``model.half()`` inference before a half-precision validation.
"""

from __future__ import annotations

from copy import deepcopy
from typing import Callable

import torch
import torch.nn as nn

from utils.general import LOGGER, InputError, colorstr

AMP_MODES = ("auto", "fp16", "bf16", "off")
TOL = 0.1  # largest change allowed in the confidence of a confident detection


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``--amp mode`` on ``device``, or None for fp32.

    ``auto``: fp16 on CUDA; bf16 on a CPU with hardware bf16 (:func:`cpu_has_native_bf16`), else fp32. ``fp16`` on
    a CPU is allowed (torch supports it there, slowly); ``bf16`` needs a GPU that supports it.

    Raises:
        InputError: an unknown mode, or bf16 on a CUDA device without bf16 support.
    """
    mode = str(mode).lower()
    if mode not in AMP_MODES:
        raise InputError(f"--amp {mode!r}: choose one of {', '.join(AMP_MODES)}")
    if mode == "off":
        return None
    if mode == "auto" and device.type == "cpu":
        return torch.bfloat16 if cpu_has_native_bf16() else None
    if mode == "auto":
        return torch.float16
    if mode == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise InputError("--amp bf16: this GPU has no bf16 support; use --amp fp16 (or auto)")
    return torch.bfloat16 if mode == "bf16" else torch.float16


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (``avx512_bf16`` or ``amx_bf16`` in ``/proc/cpuinfo``; False
    where that file does not exist). Elsewhere torch emulates bf16, more slowly than fp32."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def probe_image(size: int = 256, device: torch.device | str = "cpu") -> torch.Tensor:
    """A fixed (1, 3, size, size) image in 0..1: smooth gradients plus a few bright and dark squares."""
    g = torch.Generator().manual_seed(0)
    y, x = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    im = torch.stack((x, y, (x + y) / 2)) * 0.6 + 0.2
    for _ in range(6):
        c = torch.randint(0, size - size // 4, (2,), generator=g)
        s = int(torch.randint(size // 16, size // 4, (1,), generator=g))
        im[:, c[0]:c[0] + s, c[1]:c[1] + s] = torch.rand(3, 1, 1, generator=g)
    return im[None].to(device)


def _decoded(model: nn.Module, im: torch.Tensor) -> torch.Tensor:
    """(bs, N, no) decoded inference output of a detection model in eval mode, as float32."""
    y = model(im)
    y = y[0] if isinstance(y, (list, tuple)) else y
    return y.float()


def outputs_agree(ref: torch.Tensor, out: torch.Tensor, top: int = 100) -> tuple[bool, str]:
    """Whether reduced-precision detections ``out`` (bs, N, 5 + nc) tell the same story as fp32 ``ref``.

    Reduced precision moves every number a little, and through a deep network with saturated layers a low-score
    box can move a lot, so single values are not compared. What must hold: every output is finite, the
    confidences (objectness x best class) of all N rows correlate with fp32's (Pearson r >= 0.9), and the
    ``top`` most confident rows keep their confidence within :data:`TOL`.

    Returns:
        ``(ok, reason)``: reason is empty when ok.
    """
    if out.shape != ref.shape:
        return False, f"output shape {tuple(out.shape)} != fp32 {tuple(ref.shape)}"
    if not torch.isfinite(out).all():
        return False, f"{int((~torch.isfinite(out)).sum())} non-finite output values"
    c_ref = (ref[..., 4] * ref[..., 5:].max(-1).values).flatten()
    c_out = (out[..., 4] * out[..., 5:].max(-1).values).flatten()
    k = c_ref.topk(min(top, c_ref.numel())).indices
    diff = float((c_out[k] - c_ref[k]).abs().max())
    if diff > TOL:
        return False, f"the most confident detections change confidence by up to {diff:.3g}"
    if c_ref.std() > 1e-6 and c_out.std() > 1e-6:
        r = float(torch.corrcoef(torch.stack((c_ref, c_out)))[0, 1])
        if not r >= 0.9:
            return False, f"confidences correlate with fp32's at r = {r:.3g} only"
    elif (c_out - c_ref).abs().max() > TOL:
        return False, "confidences differ from fp32's"
    return True, ""


def _reduced_precision_agrees(model: nn.Module, device: torch.device, size: int,
                              reduced: Callable[[nn.Module, torch.Tensor], torch.Tensor]) -> tuple[bool, str]:
    """Run a copy of ``model`` in fp32 and through ``reduced(model, image)`` on the probe image; compare them."""
    m = deepcopy(model).float().eval()  # BN statistics and the caller's model stay untouched
    im = probe_image(size, device)
    try:
        with torch.no_grad():
            ref = _decoded(m, im)
            return outputs_agree(ref, reduced(m, im))
    except RuntimeError as e:  # e.g. an op without a reduced-precision kernel on this device
        return False, f"{type(e).__name__}: {e}"


def check_amp(model: nn.Module, device: torch.device, dtype: torch.dtype = torch.float16, size: int = 256) -> bool:
    """True when inference under ``dtype`` autocast matches fp32 on a fixed image; False (warning) otherwise."""

    def autocast(m: nn.Module, im: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=dtype):
            return _decoded(m, im)

    ok, why = _reduced_precision_agrees(model, device, size, autocast)
    name, prefix = str(dtype).replace("torch.", ""), colorstr("AMP: ")
    if ok:
        LOGGER.info(f"{prefix}checks passed ✅ ({name} autocast on {device.type})")
    else:
        LOGGER.warning(f"{prefix}checks failed ❌ ({name} autocast on {device.type}: {why}); training in fp32 instead")
    return ok


def check_half(model: nn.Module, device: torch.device, size: int = 256) -> bool:
    """True when ``model.half()`` inference matches fp32 on a fixed image; False (warning) otherwise."""
    ok, why = _reduced_precision_agrees(model, device, size, lambda m, im: _decoded(m.half(), im.half()))
    if not ok:
        LOGGER.warning(f"WARNING: half-precision inference is wrong for this model ({why}); validating in fp32")
    return ok
