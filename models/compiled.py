"""Faster PyTorch inference: a compiled graph per input shape (``--compile`` in detect.py and val.py).

Two compilers, both run the model's own weights (nothing is exported to a file):

- ``onednn`` (the CPU default): at each new input shape the model is traced with TorchScript, frozen (weights
  become constants of the graph) and run with oneDNN Graph fusion, which merges each convolution with its SiLU
  and the additions after it. On a 2-core AVX-512 CPU a batch-1 yolov5n at 320 takes about 0.65x the eager time.
- ``inductor`` (the CUDA default): ``torch.compile`` (it compiles again for a new shape by itself).

A graph is checked on the first input of its shape against the eager model (``torch.allclose``, rtol 1e-3,
atol 1e-4, on the decoded output): a graph that differs more is dropped with a warning and that shape runs
eagerly. Fusion changes the order of floating-point operations, so outputs differ from eager ones in the last
bits; compiled graphs are not used for ``augment`` or ``visualize`` runs (those call the eager model).

Tracing records one path through ``forward``: a module whose Python control flow depends on tensor *values*
(not shapes) would be frozen on the first input's path. None of the registered modules does; the check above
catches such a module on its first input.
"""

from __future__ import annotations

import argparse
import warnings
from contextlib import contextmanager
from typing import Any, Iterator

import torch
import torch.nn as nn

from utils.general import LOGGER, InputError

COMPILE_MODES = ("onednn", "inductor")


def resolve_compile_mode(mode: str | bool | None, device: torch.device | str) -> str | None:
    """The compiler for ``--compile MODE`` on ``device``: None (off), ``'onednn'`` or ``'inductor'``.

    ``'auto'`` (or True) picks oneDNN Graph on the CPU and ``torch.compile`` on CUDA.

    Raises:
        InputError: an unknown mode, or ``onednn`` on a CUDA device (oneDNN runs on the CPU).
    """
    if mode in (None, False, "", "none", "off"):
        return None
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    if mode in (True, "auto"):
        return "onednn" if dev.type == "cpu" else "inductor"
    if mode not in COMPILE_MODES:
        raise InputError(f"--compile {mode}: choose one of auto, {', '.join(COMPILE_MODES)}")
    if mode == "onednn" and dev.type != "cpu":
        raise InputError(f"--compile onednn runs on the CPU; on {dev} use --compile inductor (or auto)")
    return mode


def _close(a: Any, b: Any) -> bool:
    """Whether two model outputs (a tensor, or the (decoded, raw levels) pair) agree within the check's tolerance."""
    ta = a[0] if isinstance(a, (tuple, list)) else a
    tb = b[0] if isinstance(b, (tuple, list)) else b
    return ta.shape == tb.shape and torch.allclose(ta.float(), tb.float(), rtol=1e-3, atol=1e-4)


@contextmanager
def onednn_fusion(on: bool = True) -> Iterator[None]:
    """oneDNN Graph fusion for the TorchScript graphs run inside, restored on exit.

    The switch is global to the process: left on, it also fuses every other TorchScript model run afterwards (a
    ``.torchscript`` export validated in the same process), and some of those graphs fail to compile under it.
    """
    before = torch.jit.onednn_fusion_enabled()
    torch.jit.enable_onednn_fusion(on or before)
    try:
        yield
    finally:
        torch.jit.enable_onednn_fusion(before)


class CompiledModel(nn.Module):
    """``model`` run through a compiled graph per input shape (see the module docstring).

    Attributes the wrapper does not have (``stride``, ``names``, ``model``...) are read from the wrapped model, so
    code written for a ``models.yolo.Model`` keeps working.
    """

    def __init__(self, model: nn.Module, mode: str):
        super().__init__()
        if mode not in COMPILE_MODES:
            raise InputError(f"compile mode {mode!r}: choose one of {', '.join(COMPILE_MODES)}")
        self.wrapped = model
        self.mode = mode
        self.eval()
        self.graphs: dict[tuple, Any] = {}

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("wrapped"), name)

    def _apply(self, fn, recurse: bool = True):  # .half(), .to(device): graphs hold the old weights
        self.graphs = {}
        return super()._apply(fn, recurse)

    def _build(self, x: torch.Tensor) -> Any:
        """A checked graph for ``x``'s shape, or None (eager) when it fails or disagrees with the eager model."""
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings: the trace is for this one shape
            ref = self.wrapped(x)
            try:
                if self.mode == "onednn":
                    graph = torch.jit.freeze(torch.jit.trace(self.wrapped, x, strict=False, check_trace=False))
                    with onednn_fusion():
                        for _ in range(2):  # profiling runs: the fused graph is built from what they record
                            graph(x)
                else:
                    graph = torch.compile(self.wrapped, dynamic=False)
                with onednn_fusion(self.mode == "onednn"):
                    out = graph(x)
            except Exception as e:  # noqa: BLE001 - any compiler failure leaves the eager model running
                LOGGER.warning(f"WARNING: --compile {self.mode} failed for input {tuple(x.shape)} "
                               f"({type(e).__name__}: {str(e)[:200]}); running it eagerly")
                return None
        if not _close(out, ref):
            LOGGER.warning(f"WARNING: --compile {self.mode} output differs from the eager model for input "
                           f"{tuple(x.shape)}; running it eagerly")
            return None
        LOGGER.info(f"compiled ({self.mode}) for input {tuple(x.shape)}")
        return graph

    def forward(self, x: torch.Tensor, augment: bool = False, visualize: Any = False) -> Any:
        if augment or visualize or self.wrapped.training or torch.is_grad_enabled() and x.requires_grad:
            return self.wrapped(x, augment=augment, visualize=visualize)
        key = (tuple(x.shape), x.dtype, x.device, x.is_contiguous())
        if key not in self.graphs:
            self.graphs[key] = self._build(x)
        graph = self.graphs[key]
        if graph is None:
            return self.wrapped(x)
        with torch.no_grad(), onednn_fusion(self.mode == "onednn"):
            return graph(x)


def add_speed_args(parser: Any) -> None:
    """detect.py's and val.py's ``--channels-last/--no-channels-last`` and ``--compile [MODE]`` options."""
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                        help=".pt weights in NHWC layout (faster convolutions; --no-channels-last for NCHW)")
    parser.add_argument("--compile", nargs="?", const="auto", default=None, choices=("auto", *COMPILE_MODES),
                        help=".pt weights run a compiled graph per input shape: auto (onednn on CPU, inductor "
                             "on CUDA), onednn or inductor")
