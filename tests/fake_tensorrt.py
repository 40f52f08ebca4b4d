"""A stand-in ``tensorrt`` module for machines without a GPU: the builder and the runtime calls that the TensorRT
export and backend make, in the API generation asked for, with ONNX Runtime doing the arithmetic.

``build_serialized_network`` returns a "plan" that is a JSON header (what the export configured: workspace, flags,
optimisation profile, logger level) followed by the ONNX bytes the parser read; ``deserialize_cuda_engine`` turns
it into an engine whose execution context reads the input from, and writes every output to, the raw addresses it
is given (CPU tensors here), so the backend's binding order, shapes, dtypes and pointers are all exercised.

``api='10'``: the tensor-name API only (``num_io_tensors``, ``set_input_shape``, ``set_tensor_address``,
``execute_async_v3``) and ``set_memory_pool_limit``. ``api='8'`` (8.0-8.3): the binding API only
(``num_bindings``, ``set_binding_shape``, ``execute_v2``) and ``max_workspace_size``.
"""

from __future__ import annotations

import ctypes
import json
import types
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort


def _array(ptr: int, shape: tuple, dtype=np.float32) -> np.ndarray:
    """A writable numpy view of ``shape`` at host address ``ptr``."""
    n = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return np.frombuffer((ctypes.c_char * n).from_address(ptr), dtype=dtype).reshape(shape)


class _Engine:
    def __init__(self, header: dict, onnx_bytes: bytes):
        self.header = header
        self.session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
        self.names = ["images"] + [o.name for o in self.session.get_outputs()]
        self.static = {o.name: tuple(d if isinstance(d, int) else -1 for d in o.shape)
                       for o in [*self.session.get_inputs(), *self.session.get_outputs()]}
        self.contexts: list = []

    def shapes_for(self, shape: tuple) -> dict:
        ys = self.session.run(None, {"images": np.zeros(shape, np.float32)})
        return {"images": shape, **{n: y.shape for n, y in zip(self.names[1:], ys)}}

    def create_execution_context(self):
        c = (_Context10 if self.header["api"] == "10" else _Context8)(self)
        self.contexts.append(c)
        return c


class _Engine10(_Engine):
    @property
    def num_io_tensors(self) -> int:
        return len(self.names)

    def get_tensor_name(self, i: int) -> str:
        return self.names[i]

    def get_tensor_mode(self, name: str) -> str:
        return "INPUT" if name == "images" else "OUTPUT"

    def get_tensor_dtype(self, name: str) -> Any:
        return np.float32

    def get_tensor_shape(self, name: str) -> tuple:
        return self.static[name]

    def get_tensor_profile_shape(self, name: str, profile: int) -> list:
        assert (name, profile) == ("images", 0)
        return self.header["profile"]


class _Engine8(_Engine):
    @property
    def num_bindings(self) -> int:
        return len(self.names)

    def get_binding_name(self, i: int) -> str:
        return self.names[i]

    def binding_is_input(self, i: int) -> bool:
        return i == 0

    def get_binding_dtype(self, i: int) -> Any:
        return np.float32

    def get_binding_shape(self, i: int) -> tuple:
        return self.static[self.names[i]]

    def get_profile_shape(self, profile: int, i: int) -> list:
        assert (profile, i) == (0, 0)
        return self.header["profile"]


class _Context:
    def __init__(self, engine: _Engine):
        self.e, self.shape, self.calls = engine, engine.static["images"], []

    def _shape(self, name: str) -> tuple:
        return self.e.shapes_for(self.shape)[name] if -1 in self.e.static["images"] else self.e.static[name]

    def _run(self, ptrs: list[int]) -> bool:
        self.calls.append(self.shape)
        x = _array(ptrs[0], self.shape).copy()
        for ptr, y in zip(ptrs[1:], self.e.session.run(None, {"images": x})):
            _array(ptr, y.shape)[...] = y
        return True


class _Context10(_Context):
    def __init__(self, engine: _Engine):
        super().__init__(engine)
        self.addresses: dict[str, int] = {}

    def set_input_shape(self, name: str, shape: tuple) -> bool:
        assert name == "images"
        self.shape = tuple(shape)
        return True

    def get_tensor_shape(self, name: str) -> tuple:
        return self._shape(name)

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        self.addresses[name] = ptr
        return True

    def execute_async_v3(self, stream: int) -> bool:
        return self._run([self.addresses[n] for n in self.e.names])


class _Context8(_Context):
    def set_binding_shape(self, i: int, shape: tuple) -> bool:
        assert i == 0
        self.shape = tuple(shape)
        return True

    def get_binding_shape(self, i: int) -> tuple:
        return self._shape(self.e.names[i])

    def execute_v2(self, ptrs: list[int]) -> bool:
        return self._run(ptrs)


class _Network:
    def __init__(self, flags: int):
        self.flags, self.inputs, self.outputs = flags, [], []

    num_inputs = property(lambda self: len(self.inputs))
    num_outputs = property(lambda self: len(self.outputs))

    def get_input(self, i: int):
        return self.inputs[i]

    def get_output(self, i: int):
        return self.outputs[i]


def make(api: str = "10") -> types.ModuleType:
    """A fresh stand-in ``tensorrt`` module of API generation ``api`` ('10' or '8')."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.0.0-fake" if api == "10" else "8.2.0-fake"
    trt.built = []  # the headers of every plan built
    trt.TensorIOMode = types.SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(EXPLICIT_BATCH=0)
    trt.BuilderFlag = types.SimpleNamespace(FP16="FP16")
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
    trt.nptype = lambda dtype: dtype

    class Logger:
        WARNING, INFO, VERBOSE = "WARNING", "INFO", "VERBOSE"

        def __init__(self, level: str):
            self.level = level

    class Config:
        def __init__(self):
            self.flags, self.profiles, self.max_workspace_size = [], [], None
            if api == "10":
                self.set_memory_pool_limit = lambda pool, size: setattr(self, "max_workspace_size", (pool, size))

        def set_flag(self, flag: str) -> None:
            self.flags.append(flag)

        def add_optimization_profile(self, profile: dict) -> int:
            self.profiles.append(profile)
            return 0

    class Profile(dict):
        def set_shape(self, name: str, lo: tuple, opt: tuple, hi: tuple) -> None:
            self[name] = [list(lo), list(opt), list(hi)]

    class OnnxParser:
        def __init__(self, network: _Network, logger: Logger):
            self.network, self.num_errors = network, 0

        def parse_from_file(self, path: str) -> bool:
            m = onnx.load(path)
            dims = lambda v: tuple(d.dim_value if d.HasField("dim_value") else -1  # noqa: E731
                                   for d in v.type.tensor_type.shape.dim)
            t = lambda v: types.SimpleNamespace(name=v.name, shape=dims(v), dtype="FLOAT")  # noqa: E731
            self.network.inputs = [t(v) for v in m.graph.input]
            self.network.outputs = [t(v) for v in m.graph.output]
            self.network.onnx = (m.opset_import[0].version, open(path, "rb").read())
            return True

    class Builder:
        platform_has_fast_fp16 = True

        def __init__(self, logger: Logger):
            self.logger = logger

        create_builder_config = staticmethod(Config)
        create_optimization_profile = staticmethod(Profile)
        create_network = staticmethod(_Network)

        def build_serialized_network(self, network: _Network, config: Config) -> bytes:
            opset, data = network.onnx
            profile = config.profiles[0]["images"] if config.profiles else None
            header = {"api": api, "opset": opset, "workspace": config.max_workspace_size, "flags": config.flags,
                      "network_flags": network.flags, "log": self.logger.level,
                      "profile": profile}  # [min, opt, max] of the input, None for a static engine
            trt.built.append(header)
            return json.dumps(header).encode() + b"\n" + data

    class Runtime:
        def __init__(self, logger: Logger):
            self.logger = logger

        def deserialize_cuda_engine(self, plan: bytes):
            head, _, data = plan.partition(b"\n")
            try:
                header = json.loads(head)
            except ValueError:
                return None  # not a plan of this TensorRT
            header["api"] = api  # the loading side's API generation
            return (_Engine10 if api == "10" else _Engine8)(header, data)

    trt.Logger, trt.Builder, trt.OnnxParser, trt.Runtime = Logger, Builder, OnnxParser, Runtime
    return trt
