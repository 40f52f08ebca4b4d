"""Export a YOLOv5 PyTorch model to TorchScript, ONNX, OpenVINO and TensorRT.

Usage:
    $ python export.py --weights yolov5s.pt --include torchscript onnx openvino
    $ python export.py --weights runs/train/exp/weights/best.pt --include onnx --dynamic --img 320
    $ python export.py --weights yolov5s.pt --include engine --device 0 --half --workspace 4

Format        --include      file                      inference (detect.py / val.py --weights ...)
TorchScript   torchscript    yolov5s.torchscript       yolov5s.torchscript
ONNX          onnx           yolov5s.onnx              yolov5s.onnx (--dnn: OpenCV DNN)
OpenVINO      openvino       yolov5s_openvino_model/   yolov5s_openvino_model (CPU; pip install openvino)
TensorRT      engine         yolov5s.engine            yolov5s.engine (CUDA; pip install tensorrt)

The other v6.1 formats (coreml, saved_model, pb, tflite, edgetpu, tfjs) are refused with a message that lists
the supported ones. Exports carry the model's stride and class names: TorchScript in the extra file
``config.txt`` (JSON: shape, stride, names, dynamic), ONNX as ``metadata_props`` ``stride`` and ``names`` (a
JSON list; v6.1 embedded none, v6.2 added them), OpenVINO in ``yolov5s_openvino_model/yolov5s.yaml`` (and the
IR's runtime info), TensorRT in ``yolov5s.engine.yaml``. OpenVINO converts this project's ONNX export (opset 12)
with its ONNX frontend; TensorRT builds it (opset 13) with ``tensorrt``'s ONNX parser on the GPU
(``--workspace`` GB, ``--verbose``; ``--dynamic``: batch up to --batch-size, sides up to the export size). After
exporting, each file is loaded back and run on a fixed random input, and the largest difference from the
PyTorch output is logged.
"""

from __future__ import annotations

import argparse
import copy
import inspect
import json
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

FILE = Path(__file__).resolve()
ROOT = FILE.parents[0]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

from models.backend_openvino import openvino_dir  # noqa: E402
from models.backends import export_formats, export_metadata  # noqa: E402
from models.common import Conv  # noqa: E402
from models.experimental import attempt_load  # noqa: E402
from models.export_check import check_export, second_shape  # noqa: E402
from models.export_openvino import OPENVINO_OPSET, export_openvino, openvino_requirements  # noqa: E402
from models.export_tensorrt import engine_requirements, export_engine  # noqa: E402
from models.yolo import Detect  # noqa: E402
from utils.activations import export_activation  # noqa: E402
from utils.general import LOGGER, InputError, check_img_size, colorstr, expand_imgsz, print_args, run_cli  # noqa: E402
from utils.torch_utils import select_device  # noqa: E402

# flags that only matter for some formats: (default, what they apply to); warned about when those are not exported
OTHER_FORMAT_FLAGS = {
    "int8": (False, "TF Lite / Edge TPU"), "workspace": (4, "TensorRT"), "verbose": (False, "TensorRT"),
    "nms": (False, "TF"), "agnostic_nms": (False, "TF"), "topk_per_class": (100, "TF.js NMS"),
    "topk_all": (100, "TF.js NMS"), "iou_thres": (0.45, "TF.js NMS"), "conf_thres": (0.25, "TF.js NMS")}


SUFFIX = {"torchscript": ".torchscript", "onnx": ".onnx", "engine": ".engine"}  # the file next to the weights


class ExportError(InputError):
    """An export request that cannot be carried out (unsupported format, --half on CPU, ...)."""


def _mb(f: str | Path) -> float:
    return Path(f).stat().st_size / 1e6


def check_formats(include: Any) -> list[str]:
    """Lower-cased ``include`` list after checking every entry is a format this project exports.

    Raises:
        ExportError: an unknown format, or a v6.1 format that this project does not export.
    """
    include = [str(x).lower() for x in ([include] if isinstance(include, str) else include)]
    known = {f.argument: f for f in export_formats() if f.argument != "-"}
    supported = [a for a, f in known.items() if f.supported]
    unknown = [x for x in include if x not in known]
    if unknown:
        raise ExportError(f"Invalid --include {unknown}, valid --include arguments are {list(known)}; this project "
                          f"exports {' and '.join(supported)} only")
    refused = [x for x in include if not known[x].supported]
    if refused:
        names = ", ".join(f"{known[x].format} ({x})" for x in refused)
        raise ExportError(f"{names} export is not supported by this project; supported: --include "
                          f"{' '.join(supported)}")
    if not include:
        raise ExportError(f"nothing to export: --include one of {' '.join(supported)}")
    return include


def export_target(file: Path, fmt: str) -> Path:
    """What format ``fmt`` writes for checkpoint ``file`` (``yolov5s_openvino_model/`` is a folder)."""
    return openvino_dir(file) if fmt == "openvino" else file.with_suffix(SUFFIX[fmt])


def export_fresh(export: Any, target: Path) -> Path | None:
    """Run one format's ``export()`` after removing an older ``target``: a failed export leaves no stale file."""
    if target.exists():
        LOGGER.info(f"Replacing the existing {target}")
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    return export()


def check_requirements_of(include: list[str], dev: torch.device) -> None:
    """Fail at once, before loading the model, when a format's package or device is missing.

    Raises:
        ExportError: openvino not installed; TensorRT without a CUDA device or without tensorrt.
    """
    try:
        if "openvino" in include:
            openvino_requirements()
        if "engine" in include:
            engine_requirements(dev)
    except InputError as e:
        raise ExportError(str(e)) from e


def prepare_for_export(model: nn.Module, inplace: bool = False, dynamic: bool = False) -> nn.Module:
    """Export-friendly activations in every ``Conv`` and Detect ``inplace``/``onnx_dynamic``."""
    for m in model.modules():
        if isinstance(m, Conv):
            m.act = export_activation(m.act)  # nn.SiLU -> x·σ(x)
        elif isinstance(m, Detect):
            m.inplace = inplace
            m.onnx_dynamic = dynamic
    return model


def export_torchscript(model: nn.Module, im: torch.Tensor, file: Path, meta: dict, optimize: bool = False,
                       dynamic: bool = False, prefix: str = colorstr("TorchScript:")) -> Path | None:
    """Trace ``model`` and save ``file.torchscript`` with ``config.txt`` (shape, stride, names, dynamic).

    The trace is not re-run by ``torch.jit.trace`` (``check_trace=False``): the saved file is run and compared
    with PyTorch afterwards. A trace made without ``--dynamic`` holds Detect's grids as constants of the export
    size; with ``--dynamic`` they are recomputed from the input and the file is marked dynamic once the traced
    module has run at a second size.
    """
    try:
        LOGGER.info(f"\n{prefix} starting export with torch {torch.__version__}...")
        f = file.with_suffix(".torchscript")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", FutureWarning)  # torch >= 2.9 marks TorchScript as deprecated
            ts = torch.jit.trace(model, im, strict=False, check_trace=False)
            dyn = False
            if dynamic:
                try:
                    ts(torch.zeros(second_shape(tuple(im.shape), int(meta["stride"])), device=im.device,
                                   dtype=im.dtype))
                    dyn = True
                except Exception as e:  # noqa: BLE001 - any failure means the trace froze a size
                    LOGGER.warning(f"{prefix} WARNING: the trace does not run at other sizes ({type(e).__name__}); "
                                   f"saved as specific to {tuple(im.shape)}")
        config = {"shape": list(im.shape), "stride": int(meta["stride"]), "names": json.loads(meta["names"]),
                  "dynamic": dyn}
        extra_files = {"config.txt": json.dumps(config)}
        if optimize:  # lite-interpreter file for PyTorch Mobile (torch.jit.load reads it too)
            from torch.backends import xnnpack

            if xnnpack.enabled:
                from torch.utils.mobile_optimizer import optimize_for_mobile

                ts = optimize_for_mobile(ts)
            else:
                LOGGER.warning(f"{prefix} WARNING: this torch build has no XNNPACK, so the mobile optimisation "
                               f"passes cannot run; saving a lite-interpreter file without them")
            ts._save_for_lite_interpreter(str(f), _extra_files=extra_files)
        else:
            ts.save(str(f), _extra_files=extra_files)
        LOGGER.info(f"{prefix} export success, saved as {f} ({_mb(f):.1f} MB)")
        return f
    except Exception as e:  # noqa: BLE001 - v6.1 logs a failed format and goes on with the next
        LOGGER.info(f"{prefix} export failure: {e}")
        return None


def _simplify(model_onnx: Any, im: torch.Tensor, dynamic: bool, prefix: str) -> Any:
    """Run onnx-simplifier when it is installed; otherwise warn and return the model unchanged."""
    try:
        import onnxsim
    except ImportError:
        LOGGER.warning(f"{prefix} WARNING: --simplify needs onnx-simplifier, which is not installed "
                       f"(pip install onnx-simplifier); saving the model unsimplified")
        return model_onnx
    try:
        LOGGER.info(f"{prefix} simplifying with onnx-simplifier {getattr(onnxsim, '__version__', '')}...")
        params = inspect.signature(onnxsim.simplify).parameters
        kw: dict[str, Any] = {}
        if dynamic:
            shapes = {"images": list(im.shape)}
            if "test_input_shapes" in params:  # onnx-simplifier >= 0.4
                kw["test_input_shapes"] = shapes
            elif "input_shapes" in params:  # older releases
                kw.update(dynamic_input_shape=True, input_shapes=shapes)
        simplified, check = onnxsim.simplify(model_onnx, **kw)
        if not check:
            raise RuntimeError("onnx-simplifier's check of the simplified model failed")
        return simplified
    except Exception as e:  # noqa: BLE001 - keep the unsimplified model, as v6.1
        LOGGER.info(f"{prefix} simplifier failure: {e}")
        return model_onnx


def export_onnx(model: nn.Module, im: torch.Tensor, file: Path, meta: dict, opset: int = 12, train: bool = False,
                dynamic: bool = False, simplify: bool = False, prefix: str = colorstr("ONNX:")) -> Path | None:
    """Export ``file.onnx`` (input ``images``, output ``output``) with ``stride``/``names`` metadata."""
    try:
        import onnx

        LOGGER.info(f"\n{prefix} starting export with onnx {onnx.__version__}...")
        f = file.with_suffix(".onnx")
        axes = {"images": {0: "batch", 2: "height", 3: "width"}, "output": {0: "batch", 1: "anchors"}}
        kw = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)  # torch >= 2.9 deprecates the TorchScript exporter
            warnings.simplefilter("ignore", FutureWarning)
            torch.onnx.export(model, im, str(f), verbose=False, opset_version=opset,
                              training=torch.onnx.TrainingMode.TRAINING if train else torch.onnx.TrainingMode.EVAL,
                              do_constant_folding=not train, input_names=["images"], output_names=["output"],
                              dynamic_axes=axes if dynamic else None, **kw)
        model_onnx = onnx.load(str(f))
        onnx.checker.check_model(model_onnx)
        if simplify:
            model_onnx = _simplify(model_onnx, im, dynamic, prefix)
        del model_onnx.metadata_props[:]
        for k, v in meta.items():
            p = model_onnx.metadata_props.add()
            p.key, p.value = k, v
        onnx.save(model_onnx, str(f))
        LOGGER.info(f"{prefix} export success, saved as {f} ({_mb(f):.1f} MB)")
        return f
    except Exception as e:  # noqa: BLE001 - v6.1 logs a failed format and goes on with the next
        LOGGER.info(f"{prefix} export failure: {e}")
        return None


@torch.no_grad()
def run(data: str | Path = ROOT / "data/coco128.yaml",
        weights: str | Path = ROOT / "yolov5s.pt",
        imgsz: int | tuple | list = (640, 640),
        batch_size: int = 1,
        device: str = "cpu",
        include: tuple | list | str = ("torchscript", "onnx"),
        half: bool = False,
        inplace: bool = False,
        train: bool = False,
        optimize: bool = False,
        int8: bool = False,
        dynamic: bool = False,
        simplify: bool = False,
        opset: int = 12,
        verbose: bool = False,
        workspace: int = 4,
        nms: bool = False,
        agnostic_nms: bool = False,
        topk_per_class: int = 100,
        topk_all: int = 100,
        iou_thres: float = 0.45,
        conf_thres: float = 0.25) -> list[str]:
    """Export one checkpoint to the ``include`` formats, next to it.

    ``data`` and the flags of formats this project does not export (``int8``, ``nms``, ``agnostic_nms``,
    ``topk_*``, ``iou_thres``, ``conf_thres``) are accepted for v6.1 compatibility and reported as ignored when
    changed from their defaults; so are ``workspace`` and ``verbose`` when ``engine`` is not exported.

    Returns:
        The exported paths (files; a folder for OpenVINO). An earlier export of the same name is removed first,
        so a failed format never leaves a stale file behind.

    Raises:
        ExportError: an unsupported format, ``half`` on CPU, a missing package (openvino, tensorrt) or CUDA
            device (engine) - all before the model is loaded -, a model whose class count != len(names), or a
            requested format that failed (its error is logged; the other formats are still exported).
    """
    t = time.time()
    include = check_formats(include)
    given = locals()
    for k, (default, fmt) in OTHER_FORMAT_FLAGS.items():
        if given[k] != default and not (fmt == "TensorRT" and "engine" in include):
            LOGGER.warning(f"WARNING: --{k.replace('_', '-')} applies to {fmt} export only; ignored")
    imgsz = expand_imgsz(imgsz)
    if isinstance(weights, (list, tuple)):
        if len(weights) != 1:
            raise ExportError(f"run() exports one checkpoint, got {len(weights)}; main() loops over --weights")
        weights = weights[0]
    file = Path(weights)
    dev = select_device(device)
    if half and dev.type == "cpu":
        raise ExportError("--half only compatible with GPU export, i.e. use --device 0")
    check_requirements_of(include, dev)
    model = attempt_load(file, map_location=dev, inplace=True, fuse=True)  # FP32, fused
    nc = int(getattr(model, "nc", 0) or model.model[-1].nc)
    names = list(model.names)
    if nc != len(names):
        raise ExportError(f"Model class count {nc} != len(names) {len(names)}")
    gs = int(max(model.stride))
    imgsz = [check_img_size(x, gs) for x in imgsz]
    im = torch.zeros(batch_size, 3, *imgsz).to(dev)
    model.train() if train else model.eval()
    prepare_for_export(model, inplace=inplace, dynamic=dynamic)
    fp32 = (copy.deepcopy(model), im) if half and "openvino" in include else (model, im)  # OpenVINO: fp32 ONNX
    if half:
        im, model = im.half(), model.half()
    for _ in range(2):  # dry runs (build Detect's grids)
        y = model(im)
    LOGGER.info(f"\n{colorstr('PyTorch:')} starting from {file} with output shape {tuple(y[0].shape)} "
                f"({_mb(file):.1f} MB)")

    meta = export_metadata(gs, names)
    exporters = {"torchscript": lambda: export_torchscript(model, im, file, meta, optimize=optimize, dynamic=dynamic),
                 "onnx": lambda: export_onnx(model, im, file, meta, opset=opset, train=train, dynamic=dynamic,
                                             simplify=simplify),
                 "openvino": lambda: export_openvino(  # from an fp32 ONNX; --half stores fp16 weights
                     lambda f: export_onnx(*fp32, f, meta, opset=OPENVINO_OPSET, train=train, dynamic=dynamic,
                                           simplify=simplify), file, meta, tuple(im.shape), dynamic, half),
                 "engine": lambda: export_engine(
                     lambda f, ops: export_onnx(model, im, f, meta, opset=ops, dynamic=dynamic, simplify=simplify),
                     file, meta, tuple(im.shape), half, dynamic, workspace, verbose)}
    done = {fmt: export_fresh(exporters[fmt], export_target(file, fmt)) for fmt in include}
    files = [f for f in done.values() if f]
    if train:
        LOGGER.info("\n--train: the exports output raw training-mode maps; not compared with PyTorch")
    else:
        for f in files:
            check_export(f, model, im, gs)

    failed = [fmt for fmt, x in done.items() if not x]
    if failed:
        ok = f"; exported: {', '.join(str(x) for x in files)}" if files else ""
        raise ExportError(f"{', '.join(failed)} export of {file} failed (see the log above){ok}")
    f = [str(x) for x in files]
    if f:
        log_complete(f[-1], file, imgsz, dynamic, time.time() - t)
    return f


def log_complete(f: str, file: Path, imgsz: list[int], dynamic: bool, seconds: float) -> None:
    """The final log: time, results folder, and detect.py / val.py commands for the last export ``f``."""
    h, w = imgsz
    size = f" --img {h} {w}" if (h, w) != (640, 640) else ""
    if dynamic or h == w:
        val_hint = f" --img {max(h, w)}" if (h, w) != (640, 640) else ""
    else:
        val_hint = f"  (val.py takes square sizes: export {h}x{w} again square or with --dynamic)"
    LOGGER.info(f"\nExport complete ({seconds:.2f}s)"
                f"\nResults saved to {colorstr('bold', file.parent.resolve())}"
                f"\nDetect:          python detect.py --weights {f}{size}"
                f"\nValidate:        python val.py --weights {f}{val_hint}"
                f"\nVisualize:       https://netron.app")


def parse_opt() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=str, default=ROOT / "data/coco128.yaml", help="dataset.yaml path (unused)")
    parser.add_argument("--weights", nargs="+", type=str, default=ROOT / "yolov5s.pt", help="model.pt path(s)")
    parser.add_argument("--imgsz", "--img", "--img-size", nargs="+", type=int, default=[640, 640], help="image (h, w)")
    parser.add_argument("--batch-size", type=int, default=1, help="batch size")
    parser.add_argument("--device", default="cpu", help="cuda device, i.e. 0 or 0,1,2,3 or cpu")
    parser.add_argument("--half", action="store_true", help="FP16 half-precision export (CUDA only)")
    parser.add_argument("--inplace", action="store_true", help="set YOLOv5 Detect() inplace=True")
    parser.add_argument("--train", action="store_true", help="model.train() mode")
    parser.add_argument("--optimize", action="store_true", help="TorchScript: optimize for mobile")
    parser.add_argument("--int8", action="store_true", help="CoreML/TF INT8 quantization (not supported here)")
    parser.add_argument("--dynamic", action="store_true", help="ONNX/TorchScript/OpenVINO/TensorRT: dynamic axes")
    parser.add_argument("--simplify", action="store_true", help="ONNX: simplify model (needs onnx-simplifier)")
    parser.add_argument("--opset", type=int, default=12, help="ONNX: opset version")
    parser.add_argument("--verbose", action="store_true", help="TensorRT: verbose log")
    parser.add_argument("--workspace", type=int, default=4, help="TensorRT: workspace size (GB)")
    parser.add_argument("--nms", action="store_true", help="TF: add NMS to model (not supported here)")
    parser.add_argument("--agnostic-nms", action="store_true", help="TF: add agnostic NMS to model (not supported)")
    parser.add_argument("--topk-per-class", type=int, default=100, help="TF.js NMS: topk per class to keep")
    parser.add_argument("--topk-all", type=int, default=100, help="TF.js NMS: topk for all classes to keep")
    parser.add_argument("--iou-thres", type=float, default=0.45, help="TF.js NMS: IoU threshold")
    parser.add_argument("--conf-thres", type=float, default=0.25, help="TF.js NMS: confidence threshold")
    parser.add_argument("--include", nargs="+", default=["torchscript", "onnx"],
                        help="formats to export; supported: torchscript, onnx, openvino, engine")
    opt = parser.parse_args()
    print_args(FILE.stem, opt)
    return opt


def main(opt: argparse.Namespace) -> list[str]:
    files = []
    for opt.weights in opt.weights if isinstance(opt.weights, list) else [opt.weights]:
        files += run(**vars(opt))
    return files


if __name__ == "__main__":
    run_cli(main, parse_opt, "export.py")
