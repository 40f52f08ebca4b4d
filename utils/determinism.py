"""Deterministic mode: every seed runs with the same algorithm choices, and the run records what could not comply.

v6.1's ``init_seeds`` makes cuDNN deterministic for seed 0 only and lets it benchmark (pick the fastest,
non-deterministic kernels) for any other seed, so on a GPU two seeds differ in more than their random numbers.
:func:`set_deterministic` puts every seed in one mode:

- ``torch.use_deterministic_algorithms(True, warn_only=True)``: deterministic kernels where PyTorch has them, a
  warning (not an error) for the ops that have none;
- cuDNN deterministic, benchmarking off;
- ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` (cuBLAS needs it for reproducible matrix products on CUDA >= 10.2).

Dataloader workers are seeded in every mode (``utils.datasets.create_dataloader``: a generator seeded from
``torch.initial_seed()``). :class:`NondeterministicOps` collects the ops PyTorch warned about while training and
writes them, with the flags in force, to ``determinism.json`` in the run folder.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch.backends import cudnn

WARNING_TEXT = "does not have a deterministic implementation"
CUBLAS_CONFIG = ":4096:8"
_saved: dict | None = None  # what set_deterministic(True) changed, to undo it: {"cublas": the old value or None}


def set_deterministic(on: bool = True) -> None:
    """Turn deterministic mode on (see the module docstring), or, when ``on`` is False, undo what it set."""
    global _saved
    if on:
        if _saved is None:
            _saved = {"cublas": os.environ.get("CUBLAS_WORKSPACE_CONFIG")}
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_CONFIG
        torch.use_deterministic_algorithms(True, warn_only=True)
        cudnn.benchmark, cudnn.deterministic = False, True
    elif _saved is not None:  # a later plain run in the same process gets v6.1's behaviour back
        torch.use_deterministic_algorithms(False)
        if _saved["cublas"] is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = _saved["cublas"]
        _saved = None


def determinism_flags() -> dict[str, Any]:
    """The settings that decide whether a run is reproducible, as they are now."""
    return {"deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
            "cudnn_deterministic": bool(cudnn.deterministic), "cudnn_benchmark": bool(cudnn.benchmark),
            "CUBLAS_WORKSPACE_CONFIG": os.environ.get("CUBLAS_WORKSPACE_CONFIG")}


class NondeterministicOps:
    """Context manager: collect PyTorch's "no deterministic implementation" warnings; write them on exit.

    The warnings are still shown (Python shows each once per place). On exit ``file`` (if given) receives
    ``{"seed", "flags", "nondeterministic_ops"}``; ``ops`` holds the ops' names in the order first seen.

    Args:
        file: the JSON file to write, or None.
        seed: the run's seed, written with the flags.
    """

    def __init__(self, file: str | Path | None = None, seed: int | None = None):
        self.file, self.seed, self.ops = Path(file) if file else None, seed, []
        self._show = None

    def __enter__(self) -> "NondeterministicOps":
        self._show = warnings.showwarning
        warnings.showwarning = self._collect
        return self

    def _collect(self, message, category, filename, lineno, file=None, line=None) -> None:
        text = str(message)
        if WARNING_TEXT in text:
            op = text.split(WARNING_TEXT)[0].strip()
            if op not in self.ops:
                self.ops.append(op)
        self._show(message, category, filename, lineno, file, line)

    def __exit__(self, *exc) -> None:
        warnings.showwarning = self._show
        if self.file and self.file.parent.is_dir():
            self.file.write_text(json.dumps({"seed": self.seed, "flags": determinism_flags(),
                                             "nondeterministic_ops": self.ops}, indent=1) + "\n")
