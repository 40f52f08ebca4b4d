"""TensorRT inference for ``DetectMultiBackend``: a serialized engine ``<name>.engine`` on a CUDA device.

The export writes ``<name>.engine`` (a plain TensorRT plan, which ``trtexec`` also loads) and beside it
``<name>.engine.yaml`` with ``stride``, ``names``, ``dynamic``, ``shape``, ``half``.

Both generations of TensorRT's Python API are handled: the tensor-name API of TensorRT >= 8.5 (``num_io_tensors``,
``get_tensor_name``, ``set_input_shape``, ``set_tensor_address`` and ``execute_async_v3`` on torch's current
stream; the only API of TensorRT 10) and the binding API of TensorRT 8.0-8.4 (``num_bindings``,
``set_binding_shape`` and ``execute_v2`` with the buffer addresses in binding order). The buffers are torch CUDA
tensors: the input is the caller's batch (cast to the engine's input type), the outputs are allocated per call in
the shape the execution context reports.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any, ContextManager, NamedTuple

import numpy as np
import torch
import yaml

from utils.backend_deps import import_tensorrt, require_cuda
from utils.general import LOGGER


def engine_meta_path(engine: str | Path) -> Path:
    """``path/yolov5s.engine`` -> ``path/yolov5s.engine.yaml`` (the metadata beside the engine)."""
    e = Path(engine)
    return e.with_name(f"{e.name}.yaml")


class Binding(NamedTuple):
    """One input or output tensor of an engine."""

    name: str
    index: int
    is_input: bool
    dtype: torch.dtype
    shape: tuple[int, ...]  # -1 for a dynamic axis


def _torch_dtype(np_dtype: Any) -> torch.dtype:
    return torch.from_numpy(np.empty(0, dtype=np_dtype)).dtype


def cuda_device(device: torch.device, what: str) -> torch.device:
    """``device`` when it is a CUDA device, else ``cuda:0`` (with a warning): TensorRT runs on CUDA only."""
    if device.type == "cuda":
        return device
    LOGGER.warning(f"WARNING: TensorRT runs on CUDA only; {what} runs on cuda:0 (not {device})")
    return torch.device("cuda:0")


class TensorRTRunner:
    """A deserialized engine with its execution context, called with a CUDA tensor batch.

    Attributes:
        device: the CUDA device the engine runs on.
        bindings: the engine's inputs and outputs in binding (I/O tensor) order.
        input, output: the image input and the decoded-predictions output (named ``output``, else the first).
        shape: the input shape, None for a dynamic axis.
        profile: ``(min shape, max shape)`` of the optimisation profile of a dynamic engine, else None.
        meta: ``<name>.engine.yaml`` (empty when absent).
    """

    def __init__(self, path: str | Path, device: torch.device):
        """Load the engine.

        Raises:
            CUDARequiredError: no CUDA device here.
            MissingPackageError: tensorrt is not installed (pip install tensorrt).
            FileNotFoundError: no engine at ``path``.
            RuntimeError: TensorRT could not deserialize it (another TensorRT version or GPU built it).
        """
        require_cuda(f"{path}: TensorRT inference")
        self.trt = trt = import_tensorrt(f"{path}: TensorRT inference")
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"model file not found: {p}")
        self.device = cuda_device(device, str(p))
        LOGGER.info(f"Loading {p} for TensorRT inference...")
        with self._on_device():
            self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))  # kept: it must outlive the engine
            self.engine = self.runtime.deserialize_cuda_engine(p.read_bytes())
            if self.engine is None:
                raise RuntimeError(f"{p}: TensorRT {trt.__version__} could not deserialize this engine (an engine "
                                   f"only runs with the TensorRT version and GPU model that built it; re-export it)")
            self.context = self.engine.create_execution_context()
        self.tensor_api = hasattr(self.engine, "num_io_tensors")  # TensorRT >= 8.5
        n = self.engine.num_io_tensors if self.tensor_api else self.engine.num_bindings
        self.bindings = [self._binding(i) for i in range(n)]
        inputs = [b for b in self.bindings if b.is_input]
        outputs = [b for b in self.bindings if not b.is_input]
        if len(inputs) != 1 or not outputs:
            raise RuntimeError(f"{p}: expected one input and at least one output, got {[b.name for b in inputs]} "
                               f"and {[b.name for b in outputs]}")
        self.input = inputs[0]
        self.output = next((b for b in outputs if b.name == "output"), outputs[0])
        self.shape = [None if s < 0 else int(s) for s in self.input.shape]
        self.profile = self._profile() if None in self.shape else None
        f = engine_meta_path(p)
        self.meta = yaml.safe_load(f.read_text(encoding="utf-8")) if f.is_file() else {}
        if not isinstance(self.meta, dict):
            LOGGER.warning(f"WARNING: ignoring {f}: not a mapping")
            self.meta = {}

    def _on_device(self) -> ContextManager:
        """``torch.cuda.device(self.device)`` (a CPU device only occurs with a stand-in TensorRT in tests)."""
        return torch.cuda.device(self.device) if self.device.type == "cuda" else nullcontext()

    def _binding(self, i: int) -> Binding:
        e, trt = self.engine, self.trt
        if self.tensor_api:
            name = e.get_tensor_name(i)
            return Binding(name, i, e.get_tensor_mode(name) == trt.TensorIOMode.INPUT,
                           _torch_dtype(trt.nptype(e.get_tensor_dtype(name))), tuple(e.get_tensor_shape(name)))
        return Binding(e.get_binding_name(i), i, bool(e.binding_is_input(i)),
                       _torch_dtype(trt.nptype(e.get_binding_dtype(i))), tuple(e.get_binding_shape(i)))

    def _profile(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(min, max) input shapes of optimisation profile 0."""
        if self.tensor_api:
            lo, _, hi = self.engine.get_tensor_profile_shape(self.input.name, 0)
        else:
            lo, _, hi = self.engine.get_profile_shape(0, self.input.index)
        return tuple(int(x) for x in lo), tuple(int(x) for x in hi)

    def _set_input_shape(self, shape: tuple[int, ...]) -> None:
        lo, hi = self.profile
        if len(shape) != len(lo) or any(not a <= s <= b for a, s, b in zip(lo, shape, hi)):
            raise ValueError(f"this TensorRT engine takes input shapes from {lo} to {hi} (its optimisation profile);"
                             f" got {shape}. Re-export with a larger --batch-size / --img, with --dynamic")
        if self.tensor_api:
            self.context.set_input_shape(self.input.name, shape)
        else:
            self.context.set_binding_shape(self.input.index, shape)

    def _output_shape(self, b: Binding) -> tuple[int, ...]:
        s = self.context.get_tensor_shape(b.name) if self.tensor_api else self.context.get_binding_shape(b.index)
        return tuple(int(x) for x in s)

    def __call__(self, im: torch.Tensor) -> torch.Tensor:
        """The decoded (bs, N, 5 + nc) predictions (in the engine's output type, on its device)."""
        with self._on_device():
            x = im.to(device=self.device, dtype=self.input.dtype).contiguous()
            if self.profile is not None:
                self._set_input_shape(tuple(x.shape))
            outs = {b.name: torch.empty(self._output_shape(b), dtype=b.dtype, device=self.device)
                    for b in self.bindings if not b.is_input}
            ptrs = [x.data_ptr() if b.is_input else outs[b.name].data_ptr() for b in self.bindings]
            stream = torch.cuda.current_stream(self.device) if self.device.type == "cuda" else None
            if self.tensor_api and hasattr(self.context, "execute_async_v3"):
                for b, ptr in zip(self.bindings, ptrs):
                    self.context.set_tensor_address(b.name, ptr)
                ok = self.context.execute_async_v3(stream.cuda_stream if stream else 0)  # after the input's producer
            else:
                if stream is not None:
                    stream.synchronize()  # execute_v2 does not run on torch's stream: the input must be ready
                ok = self.context.execute_v2(ptrs)
            if not ok:
                raise RuntimeError(f"TensorRT inference failed for input shape {tuple(x.shape)}")
            return outs[self.output.name]
