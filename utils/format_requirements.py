"""What each export format needs to be made and run here: Python packages and, for some, a CUDA device.

Used by the benchmarks to skip a format with a reason (``'tensorrt is not installed'``, ``'needs a CUDA device'``)
instead of failing a whole run. Whether the project exports a format at all is the caller's knowledge (the
``supported`` column of ``models.backends.export_formats()``); this module only checks the machine, and imports
nothing it checks (``importlib.util.find_spec``).
"""

from __future__ import annotations

import importlib.util
from typing import NamedTuple

import torch


class FormatNeeds(NamedTuple):
    """The packages a format's export and inference import, and whether it runs on CUDA only."""

    packages: tuple[str, ...]
    cuda: bool = False


FORMAT_NEEDS: dict[str, FormatNeeds] = {  # by export.py --include argument ('-' is PyTorch)
    "-": FormatNeeds(()),
    "torchscript": FormatNeeds(()),
    "onnx": FormatNeeds(("onnx", "onnxruntime")),
    "openvino": FormatNeeds(("openvino",)),
    "engine": FormatNeeds(("tensorrt",), cuda=True),
    "coreml": FormatNeeds(("coremltools",)),
    "saved_model": FormatNeeds(("tensorflow",)),
    "pb": FormatNeeds(("tensorflow",)),
    "tflite": FormatNeeds(("tensorflow",)),
    "edgetpu": FormatNeeds(("tensorflow",)),
    "tfjs": FormatNeeds(("tensorflow", "tensorflowjs")),
}


def missing_packages(packages: tuple[str, ...] | list[str]) -> list[str]:
    """The names in ``packages`` that cannot be imported here (found by ``find_spec``, not imported)."""
    out = []
    for p in packages:
        try:
            found = importlib.util.find_spec(p) is not None
        except (ImportError, ValueError):  # a broken or half-installed package
            found = False
        if not found:
            out.append(p)
    return out


def format_unavailable(argument: str, device: torch.device | str = "cpu", supported: bool = True,
                       name: str = "") -> str | None:
    """Why the format ``argument`` cannot be exported and run here, or None when it can.

    Args:
        argument: the ``export.py --include`` argument (``'-'`` for PyTorch).
        device: where it would run.
        supported: whether export.py exports this format (``export_formats()[i].supported``).
        name: the format's display name for the message (default: ``argument``).

    Returns:
        A short reason (``'TensorRT needs a CUDA device (--device 0)'``, ``'openvino is not installed'``,
        ``'export.py does not export CoreML'``) or None.
    """
    name = name or argument
    if not supported:
        return f"export.py does not export {name}"
    needs = FORMAT_NEEDS.get(argument, FormatNeeds(()))
    if needs.cuda and torch.device(device).type != "cuda":
        return f"{name} needs a CUDA device (--device 0)"
    missing = missing_packages(needs.packages)
    if missing:
        return f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed"
    return None
