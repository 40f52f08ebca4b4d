"""TensorRT export: the project's ONNX export built into a serialized engine with the ``tensorrt`` package.

``path/yolov5s.pt`` -> ``path/yolov5s.engine`` + ``path/yolov5s.engine.yaml`` (``stride``, ``names``, ``dynamic``,
``shape``, ``half``). The ONNX file (opset 13 for TensorRT >= 8, else 12; written to a temporary folder) is parsed
with ``OnnxParser`` into an explicit-batch network and built with ``--workspace`` GB of workspace; ``--half``
allows fp16 kernels (the ONNX is then fp16 too, so the engine takes and returns fp16); ``--verbose`` logs
TensorRT's builder at VERBOSE level. Without ``--dynamic`` the engine is specific to the export shape; with it,
one optimisation profile covers batch 1 to ``--batch-size`` and heights/widths from one stride to the export
size's larger side (optimised for the export shape). An engine runs only with the TensorRT version and the GPU
model that built it, so it is built on the machine that will run it. Needs a CUDA device.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
import yaml

from models.backend_tensorrt import engine_meta_path
from utils.backend_deps import import_tensorrt, require_cuda
from utils.general import LOGGER, atomic_write, colorstr


def engine_requirements(device: torch.device) -> None:
    """Fail before any work unless a CUDA ``device`` and the tensorrt package are there.

    Raises:
        CUDARequiredError: no CUDA device here, or ``device`` is the CPU.
        MissingPackageError: tensorrt is not installed.
    """
    require_cuda("TensorRT export (--include engine)", device)
    import_tensorrt("TensorRT export (--include engine)")


def onnx_opset(trt: Any) -> int:
    """The ONNX opset an engine is built from: 13 for TensorRT >= 8, 12 before."""
    return 13 if int(str(trt.__version__).split(".")[0]) >= 8 else 12


def profile_shapes(shape: tuple[int, ...], stride: int) -> tuple[tuple[int, ...], ...]:
    """(min, opt, max) input shapes of a dynamic engine exported at ``shape`` (batch, 3, h, w).

    The largest side is one stride above the export size: val.py's rectangular batches pad half a stride and
    round up, so at ``--img 640`` their long side is 672.
    """
    b, c, h, w = (int(x) for x in shape)
    s = max(h, w) + stride
    return (1, c, stride, stride), (b, c, h, w), (b, c, s, s)


def _network(trt: Any, builder: Any, logger: Any, onnx_file: Path) -> tuple[Any, Any]:
    """An explicit-batch network parsed from ``onnx_file`` (and the parser, which must outlive it)."""
    flag = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)  # the default (and deprecated) in 10
    network = builder.create_network(0 if flag is None else 1 << int(flag))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_file)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse the ONNX model: {errors}")
    return network, parser


def build_engine(trt: Any, onnx_file: Path, shape: tuple[int, ...], stride: int, half: bool = False,
                 dynamic: bool = False, workspace: int = 4, verbose: bool = False,
                 prefix: str = colorstr("TensorRT:")) -> bytes:
    """The serialized engine of ``onnx_file``.

    Raises:
        RuntimeError: the ONNX cannot be parsed or the engine cannot be built (TensorRT's log says why).
    """
    logger = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.INFO)
    builder = trt.Builder(logger)
    config = builder.create_builder_config()
    if hasattr(config, "set_memory_pool_limit"):  # TensorRT >= 8.4
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace) << 30)
    else:
        config.max_workspace_size = int(workspace) << 30
    network, _parser = _network(trt, builder, logger, onnx_file)
    for i in range(network.num_inputs):
        t = network.get_input(i)
        LOGGER.info(f'{prefix} input "{t.name}" with shape {tuple(t.shape)} {t.dtype}')
    for i in range(network.num_outputs):
        t = network.get_output(i)
        LOGGER.info(f'{prefix} output "{t.name}" with shape {tuple(t.shape)} {t.dtype}')
    if dynamic:
        lo, opt, hi = profile_shapes(shape, stride)
        profile = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            profile.set_shape(network.get_input(i).name, lo, opt, hi)
        config.add_optimization_profile(profile)
        LOGGER.info(f"{prefix} dynamic input shapes from {lo} to {hi}, optimised for {opt}")
    if half:
        if getattr(builder, "platform_has_fast_fp16", True):
            config.set_flag(trt.BuilderFlag.FP16)
        else:
            LOGGER.warning(f"{prefix} WARNING: this GPU has no fast fp16; building with fp32 kernels")
    if hasattr(builder, "build_serialized_network"):  # TensorRT >= 8
        plan = builder.build_serialized_network(network, config)
    else:
        engine = builder.build_engine(network, config)
        plan = engine.serialize() if engine is not None else None
    if plan is None:
        raise RuntimeError("TensorRT could not build the engine (see its log above; --verbose says more)")
    return bytes(memoryview(plan))


def export_engine(onnx_export: Callable[[Path, int], Path | None], file: Path, meta: dict[str, str],
                  shape: tuple[int, ...], half: bool = False, dynamic: bool = False, workspace: int = 4,
                  verbose: bool = False, prefix: str = colorstr("TensorRT:")) -> Path | None:
    """Export ``file``'s model to ``<stem>.engine`` and its metadata ``<stem>.engine.yaml``.

    Args:
        onnx_export: ``(weights path, opset)`` -> the ``.onnx`` it wrote beside that path, or None on failure.
        file: the checkpoint path (names the engine).
        meta: ``stride`` and ``names`` as text (``export_metadata``).
        shape: the export input shape (batch, 3, h, w).
        half, dynamic, workspace, verbose: as ``export.py``'s flags.

    Returns:
        The engine path, or None when the export failed (logged, as the other formats).
    """
    try:
        trt = import_tensorrt("TensorRT export")
        LOGGER.info(f"\n{prefix} starting export with TensorRT {trt.__version__}...")
        f = file.with_suffix(".engine")
        engine_meta_path(f).unlink(missing_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            f_onnx = onnx_export(Path(tmp) / f"{file.stem}.pt", onnx_opset(trt))
            if f_onnx is None:
                raise RuntimeError("the ONNX export it builds from failed (see the log above)")
            plan = build_engine(trt, f_onnx, shape, int(meta["stride"]), half, dynamic, workspace, verbose, prefix)
        atomic_write(f, lambda fh: fh.write(plan))
        d = {"stride": int(meta["stride"]), "names": json.loads(meta["names"]), "dynamic": bool(dynamic),
             "shape": [int(x) for x in shape], "half": bool(half), "tensorrt": str(trt.__version__)}
        engine_meta_path(f).write_text(yaml.safe_dump(d, sort_keys=False, allow_unicode=True), encoding="utf-8")
        LOGGER.info(f"{prefix} export success, saved as {f} ({f.stat().st_size / 1e6:.1f} MB)")
        return f
    except Exception as e:  # noqa: BLE001 - a failed format is logged and the next one is exported
        LOGGER.info(f"{prefix} export failure: {e}")
        return None
