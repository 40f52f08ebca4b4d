"""Optional packages of the OpenVINO and TensorRT backends, imported on demand with a message that says what to do.

Nothing here is imported at module import time: ``openvino`` and ``tensorrt`` are only needed by the export or
the inference of their own format, and a machine without them runs every other format.
"""

from __future__ import annotations

from types import ModuleType

import torch

from utils.general import InputError

OPENVINO_MIN = (2023, 1)  # the first release with openvino.Core / openvino.save_model at the top level


class MissingPackageError(InputError, ImportError):
    """A format's runtime or converter package is not installed (the message names the pip command)."""


class CUDARequiredError(InputError, RuntimeError):
    """A format that runs on NVIDIA GPUs only (TensorRT) was asked for where no CUDA device is usable."""


def import_openvino(what: str) -> ModuleType:
    """The ``openvino`` package, at least :data:`OPENVINO_MIN`.

    Args:
        what: the task, for the message (e.g. ``'x_openvino_model: OpenVINO inference'``).

    Raises:
        MissingPackageError: openvino is not installed, or older than 2023.1.
    """
    try:
        import openvino as ov
    except ImportError as e:
        raise MissingPackageError(f"{what} needs the openvino package: pip install openvino") from e
    version = str(getattr(ov, "__version__", "0"))
    parts = tuple(int(p) for p in version.split("-")[0].split(".")[:2] if p.isdigit())
    if not hasattr(ov, "save_model") or parts < OPENVINO_MIN:
        raise MissingPackageError(f"{what} needs openvino >= {OPENVINO_MIN[0]}.{OPENVINO_MIN[1]} (installed: "
                                  f"{version}): pip install -U openvino")
    return ov


def require_cuda(what: str, device: torch.device | None = None) -> None:
    """Fail at once unless a CUDA device is usable (and ``device``, when given, is one).

    Raises:
        CUDARequiredError: no CUDA device on this machine, or ``device`` is the CPU.
    """
    if not torch.cuda.is_available():
        raise CUDARequiredError(f"{what} needs a CUDA device (an NVIDIA GPU), and this machine has none; TensorRT "
                                f"runs on NVIDIA GPUs only (pip install tensorrt there). Use --include onnx or "
                                f"openvino for the CPU")
    if device is not None and device.type != "cuda":
        raise CUDARequiredError(f"{what} needs a CUDA device: pass --device 0 (got --device {device.type})")


def import_tensorrt(what: str) -> ModuleType:
    """The ``tensorrt`` package.

    Raises:
        MissingPackageError: tensorrt is not installed.
    """
    try:
        import tensorrt as trt
    except ImportError as e:
        raise MissingPackageError(f"{what} needs the tensorrt package: pip install tensorrt (on a machine with an "
                                  f"NVIDIA GPU and its driver)") from e
    return trt
