"""``DetectMultiBackend``: one inference interface over PyTorch, TorchScript, ONNX, OpenVINO and TensorRT models.

v6.1 defines ``DetectMultiBackend`` in ``models/common.py``. Here it lives in its own module because it loads
whole checkpoints through ``models.experimental.attempt_load``, which needs ``models.yolo``, which imports
``models.common``: putting it in ``models.common`` would make ``models.common`` import the modules built on
top of it (an import cycle). Nothing pickles this class, so the move costs checkpoints nothing.

Supported: PyTorch ``.pt`` checkpoints, TorchScript ``.torchscript`` files, ONNX ``.onnx`` files (ONNX
Runtime, or OpenCV DNN with ``dnn=True``), OpenVINO ``*_openvino_model/`` folders or their ``.xml`` (on the CPU,
``models/backend_openvino.py``) and TensorRT ``.engine`` files (on a CUDA device, ``models/backend_tensorrt.py``).
The other v6.1 formats (CoreML, TensorFlow *) are recognised by name and refused with an error that lists what is
supported.

Usage:
    from models.backends import DetectMultiBackend
    model = DetectMultiBackend('yolov5s.onnx', device=torch.device('cpu'))
    pred = model(im)               # (bs, N, 5 + nc) decoded xywh (pixels), objectness, class scores
"""

from __future__ import annotations

import ast
import json
import warnings
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn as nn
import yaml

from models.backend_openvino import OpenVINORunner
from models.backend_tensorrt import TensorRTRunner
from models.compiled import CompiledModel, resolve_compile_mode
from models.experimental import attempt_load
from utils.general import LOGGER, InputError, check_yaml
from utils.memory_format import set_memory_format


class UnsupportedFormatError(InputError, NotImplementedError):
    """A model format this project knows but does not run (CoreML, TF...)."""


class ExportFormat(NamedTuple):
    """One row of v6.1's export format table, plus whether this project supports it."""

    format: str
    argument: str
    suffix: str
    supported: bool


def export_formats() -> list[ExportFormat]:
    """v6.1's ``export_formats()`` table (columns Format, Argument, Suffix) with a ``supported`` column."""
    return [ExportFormat(*row) for row in (
        ("PyTorch", "-", ".pt", True),
        ("TorchScript", "torchscript", ".torchscript", True),
        ("ONNX", "onnx", ".onnx", True),
        ("OpenVINO", "openvino", "_openvino_model", True),
        ("TensorRT", "engine", ".engine", True),
        ("CoreML", "coreml", ".mlmodel", False),
        ("TensorFlow SavedModel", "saved_model", "_saved_model", False),
        ("TensorFlow GraphDef", "pb", ".pb", False),
        ("TensorFlow Lite", "tflite", ".tflite", False),
        ("TensorFlow Edge TPU", "edgetpu", "_edgetpu.tflite", False),
        ("TensorFlow.js", "tfjs", "_web_model", False))]


def supported_formats_text() -> str:
    """``'PyTorch (.pt), TorchScript (.torchscript), ONNX (.onnx), ...'``, for error messages."""
    return ", ".join(f"{f.format} ({f.suffix})" for f in export_formats() if f.supported)


def model_format(path: str | Path) -> str:
    """The format ``argument`` of a model path from its name (``'-'`` for PyTorch), as v6.1's ``model_type``.

    OpenVINO is also recognised by an ``.xml`` suffix; ``*_edgetpu.tflite`` is Edge TPU, not TFLite.

    Raises:
        ValueError: the name matches no known format.
    """
    name = Path(str(path)).name.lower()
    if name.endswith("_edgetpu.tflite"):
        return "edgetpu"
    if name.endswith(".xml"):
        return "openvino"
    for f in export_formats():
        if name.endswith(f.suffix):
            return f.argument
    for f in export_formats():  # folders such as yolov5s_saved_model/...
        if f.suffix.startswith("_") and f.suffix in name:
            return f.argument
    raise InputError(f"{path}: unknown model format; supported formats are {supported_formats_text()}")


def export_metadata(stride: int, names: Sequence[str]) -> dict[str, str]:
    """The metadata exports carry: ``stride`` (int as text) and ``names`` (a JSON list of class names)."""
    return {"stride": str(int(stride)), "names": json.dumps([str(x) for x in names])}


def parse_names(value: Any) -> list[str] | None:
    """Class names from metadata or a yaml: a list, an ``{index: name}`` dict, or either as JSON / Python
    literal text (v6.2+ files write ``str(dict)``; parsed with ``ast.literal_eval``, never ``eval``)."""
    if isinstance(value, (bytes, bytearray)):
        value = value.decode()
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            try:
                value = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                return None
    if isinstance(value, dict):  # {index: name}, in index order
        keys = list(value)
        if all(isinstance(k, int) or str(k).isdigit() for k in keys):
            keys.sort(key=int)
        value = [value[k] for k in keys]
    if isinstance(value, (list, tuple)):
        return [str(x) for x in value]
    return None


def names_from_data(data: str | Path | dict) -> list[str] | None:
    """Class names of a dataset yaml (path or dict): its ``names``, else ``class{i}`` for its ``nc``."""
    d = data if isinstance(data, dict) else yaml.safe_load(Path(check_yaml(data)).read_text(errors="ignore"))
    names = parse_names((d or {}).get("names"))
    if names is None and isinstance(d, dict) and isinstance(d.get("nc"), int):
        names = [f"class{i}" for i in range(d["nc"])]
    return names


def _torch_device(device: Any) -> torch.device:
    if isinstance(device, torch.device):
        return device
    s = str(device or "cpu").strip().lower().split(",")[0]  # '0,1' -> the first device
    return torch.device(f"cuda:{s}" if s.isdigit() else s)


class DetectMultiBackend(nn.Module):
    """YOLOv5 inference on a ``.pt``, ``.torchscript``, ``.onnx``, OpenVINO or TensorRT ``.engine`` model.

    Attributes:
        pt, jit, onnx, xml, engine: which backend is in use (v6.1's flags; ``onnx`` also with ``dnn=True``;
            ``xml`` is OpenVINO).
        stride: the model's max stride (PyTorch: at least 32); 64 when an export carries no stride.
        names: class names. PyTorch: the model's; TorchScript: ``config.txt``; ONNX: ``metadata_props``;
            OpenVINO: ``<name>.yaml`` beside the ``.xml`` (else its runtime info); TensorRT: ``<name>.engine.yaml``;
            ``class0`` … ``class999`` when an export carries none; a ``data`` yaml's names win over all.
        dynamic: True when the backend accepts any input height/width: PyTorch always; TorchScript when
            exported with ``--dynamic`` (a trace without it freezes Detect's grids at the export size);
            ONNX, OpenVINO and TensorRT when the input's height and width axes are free (TensorRT: within its
            optimisation profile, checked on each call).
        input_shape: the input shape an export accepts, None for a free axis (ONNX: the declared input
            shape, so a static ONNX also fixes the batch; TorchScript: H and W of a static trace, any batch);
            None for PyTorch. A mismatching input raises a ``ValueError`` that says which shape to use.
        model: the ``nn.Module`` (PyTorch) or ``ScriptModule`` (TorchScript); absent for the other formats.
        runtime: the OpenVINO or TensorRT runner (``OpenVINORunner``, ``TensorRTRunner``), else None.
    """

    def __init__(self, weights: str | Path | list = "yolov5s.pt", device: Any = None, dnn: bool = False,
                 data: str | Path | dict | None = None, channels_last: bool = True,
                 compile_mode: str | bool | None = None):
        """Load ``weights``.

        Args:
            weights: a model path; a list of several ``.pt`` paths makes an ensemble.
            device: ``torch.device`` or string; None means CPU. ONNX Runtime uses its CUDA provider when this
                is a CUDA device and the provider is installed. OpenVINO always runs on the CPU, TensorRT on
                CUDA (``cuda:0`` when this is the CPU); outputs come back on the input's device.
            dnn: run ``.onnx`` files with OpenCV DNN instead of ONNX Runtime.
            data: a dataset yaml (path or dict) whose ``names`` replace the model's.
            channels_last: ``.pt`` models: NHWC weights (faster convolutions, outputs equal to the last bits).
            compile_mode: ``.pt`` models: ``'auto'``, ``'onednn'`` (CPU) or ``'inductor'`` runs a compiled graph
                per input shape (:mod:`models.compiled`); None runs the model eagerly.

        Raises:
            NotImplementedError: a known format this project does not run (CoreML, TF…).
            ValueError: an unknown file type.
            FileNotFoundError: the file does not exist.
            MissingPackageError: OpenVINO without openvino, TensorRT without tensorrt (pip install ...).
            CUDARequiredError: a TensorRT engine on a machine without CUDA.
        """
        super().__init__()
        many = isinstance(weights, (list, tuple)) and len(weights) > 1
        w = str(weights[0] if isinstance(weights, (list, tuple)) else weights)
        fmt = model_format(w)
        if many and any(model_format(x) != "-" for x in weights):
            raise InputError(f"an ensemble takes .pt checkpoints only, got {[str(x) for x in weights]}")
        if not next(f.supported for f in export_formats() if f.argument == fmt):
            name = next(f.format for f in export_formats() if f.argument == fmt)
            raise UnsupportedFormatError(f"{w}: {name} inference is not supported by this project; supported formats "
                                         f"are {supported_formats_text()} (python export.py --include torchscript "
                                         f"onnx openvino engine)")
        self.weights, self.format = w, fmt
        self.pt, self.jit, self.onnx, self.dnn = fmt == "-", fmt == "torchscript", fmt == "onnx", dnn
        self.xml, self.engine, self.runtime = fmt == "openvino", fmt == "engine", None
        self.device = _torch_device(device)
        default_names = [f"class{i}" for i in range(1000)]
        stride, names = 64, default_names  # defaults
        self.dynamic, self.input_shape = False, None
        if (self.jit or self.onnx) and not Path(w).is_file():  # the OpenVINO/TensorRT runners check theirs
            raise FileNotFoundError(f"model file not found: {w}")

        if self.pt:
            model = attempt_load(list(weights) if many else w, map_location=self.device)
            stride = max(int(model.stride.max()), 32)
            names = list(model.module.names if hasattr(model, "module") else model.names)
            set_memory_format(model, channels_last)
            mode = resolve_compile_mode(compile_mode, self.device)
            self.model, self.dynamic = (CompiledModel(model, mode) if mode else model), True
        elif self.jit:
            LOGGER.info(f"Loading {w} for TorchScript inference...")
            extra_files = {"config.txt": ""}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch >= 2.9 marks TorchScript as deprecated
                self.model = torch.jit.load(w, _extra_files=extra_files, map_location=self.device)
            if extra_files["config.txt"]:
                d = json.loads(extra_files["config.txt"])
                stride, names = int(d.get("stride", stride)), parse_names(d.get("names")) or names
                self.dynamic = bool(d.get("dynamic", False))
                if not self.dynamic and d.get("shape"):  # batch stays free: the trace keeps it symbolic
                    self.input_shape = (None, *[int(x) for x in d["shape"][1:]])
        elif self.xml or self.engine:
            self.runtime = OpenVINORunner(w) if self.xml else TensorRTRunner(w, self.device)
            stride, names = self._apply_meta(self.runtime.meta, stride, names)
            self._set_shape(self.runtime.shape)
        elif dnn:
            LOGGER.info(f"Loading {w} for ONNX OpenCV DNN inference...")
            import cv2

            self.net = cv2.dnn.readNetFromONNX(w)
            meta, shape = self._onnx_meta_and_shape(w)
            stride, names = self._apply_meta(meta, stride, names)
            self._set_shape(shape)
        else:
            LOGGER.info(f"Loading {w} for ONNX Runtime inference...")
            try:
                import onnxruntime as ort
            except ImportError as e:
                raise ImportError(f"{w}: ONNX inference needs onnxruntime (pip install onnxruntime, or "
                                  f"onnxruntime-gpu), or OpenCV DNN with --dnn") from e
            providers = ["CPUExecutionProvider"]
            if self.device.type == "cuda":
                if "CUDAExecutionProvider" in ort.get_available_providers():
                    providers.insert(0, "CUDAExecutionProvider")
                else:
                    LOGGER.warning("WARNING: onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu); "
                                   "running ONNX on the CPU")
            self.session = ort.InferenceSession(w, providers=providers)
            inp = self.session.get_inputs()[0]
            self.input_name, self.output_name = inp.name, self.session.get_outputs()[0].name
            self.input_dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
            stride, names = self._apply_meta(self.session.get_modelmeta().custom_metadata_map, stride, names)
            self._set_shape([d if isinstance(d, int) else None for d in inp.shape])

        if data:
            names = names_from_data(data) or names
        self.has_names = names is not default_names  # from the model, its metadata or data; not placeholders
        self.stride, self.names = stride, names

    @staticmethod
    def model_type(p: str | Path = "path/to/model.pt") -> tuple[bool, ...]:
        """v6.1's flags ``(pt, jit, onnx, xml, engine, coreml, saved_model, pb, tflite, edgetpu, tfjs)``."""
        fmt = model_format(p)
        return tuple(fmt == f.argument for f in export_formats())

    @staticmethod
    def _onnx_meta_and_shape(w: str) -> tuple[dict, list]:
        """``metadata_props`` and the input shape (None for symbolic axes) read with the ``onnx`` package."""
        try:
            import onnx
        except ImportError:
            LOGGER.warning(f"WARNING: onnx is not installed: stride/names metadata of {w} not read")
            return {}, [None] * 4
        m = onnx.load(w, load_external_data=False)
        dims = m.graph.input[0].type.tensor_type.shape.dim
        return {p.key: p.value for p in m.metadata_props}, [d.dim_value if d.HasField("dim_value") else None
                                                            for d in dims]

    @staticmethod
    def _apply_meta(meta: dict, stride: int, names: list[str]) -> tuple[int, list[str]]:
        if "stride" in meta:
            try:
                stride = int(float(meta["stride"]))
            except ValueError:
                LOGGER.warning(f"WARNING: ignoring unreadable stride metadata {meta['stride']!r}")
        return stride, parse_names(meta.get("names")) or names

    def _set_shape(self, shape: list) -> None:
        self.dynamic = len(shape) == 4 and shape[2] is None and shape[3] is None
        self.input_shape = None if all(d is None for d in shape) else tuple(shape)

    def _check_shape(self, im: torch.Tensor) -> None:
        s = self.input_shape
        fits = [e is None or e == a or (i == 0 and a < e)  # a static export pads a smaller batch (see _pad_batch)
                for i, (e, a) in enumerate(zip(s or (), im.shape))]
        if s is not None and (len(s) != im.dim() or not all(fits)):
            want = "(" + ", ".join("N" if e is None else str(e) for e in s) + ")"
            raise ValueError(f"{self.weights} takes input shape {want} (a static export); got {tuple(im.shape)}. "
                             f"Use that size or re-export with --dynamic")

    def _pad_batch(self, im: torch.Tensor) -> torch.Tensor:
        """A batch smaller than a static export's fixed batch, padded with zero images up to it (the last batch of
        a dataset); each image's output does not depend on the others, and the caller drops the padding's."""
        n = self.input_shape[0] if self.input_shape else None
        return torch.cat((im, im.new_zeros((n - im.shape[0], *im.shape[1:])))) if n and im.shape[0] < n else im

    def forward(self, im: torch.Tensor, augment: bool = False, visualize: bool | Path = False, val: bool = False):
        """Run the model on a (bs, 3, h, w) float image batch in 0..1.

        fp16 inputs are cast to the model's precision (and back for the output of an ONNX model).

        Returns:
            The decoded (bs, N, 5 + nc) tensor; with ``val=True`` a pair ``(decoded, raw)`` (PyTorch and
            TorchScript: Detect's raw level maps; the other formats: ``[]``), as val.py expects.
        """
        if self.pt or self.jit:
            p = next(iter(self.model.parameters()), None)
            if p is not None and im.is_floating_point() and im.dtype != p.dtype:
                im = im.to(p.dtype)
            if self.jit:
                self._check_shape(im)
                y = self.model(im)
            else:
                y = self.model(im, augment=augment, visualize=visualize) if augment or visualize else self.model(im)
            return y if val else y[0]
        self._check_shape(im)
        n, x = im.shape[0], self._pad_batch(im.detach())
        if self.engine:
            y = self.runtime(x).to(im.device)  # CUDA tensors in and out
        else:
            x = x.cpu().numpy()
            if self.xml:
                y = self.runtime(x)
            elif self.dnn:
                self.net.setInput(x.astype(np.float32))
                y = self.net.forward()
            else:
                y = self.session.run([self.output_name], {self.input_name: x.astype(self.input_dtype)})[0]
            y = torch.from_numpy(np.ascontiguousarray(y)).to(im.device)
        y = y[:n]  # without the padding's outputs
        if im.is_floating_point():
            y = y.to(im.dtype)
        return (y, []) if val else y

    def warmup(self, imgsz: tuple = (1, 3, 640, 640), half: bool = False) -> None:
        """One forward of zeros on non-CPU devices (PyTorch, TorchScript, ONNX, TensorRT), as v6.1."""
        if (self.pt or self.jit or self.onnx or self.engine) and self.device.type != "cpu":
            im = torch.zeros(*imgsz, device=self.device)
            self.forward(im.half() if half else im.float())
