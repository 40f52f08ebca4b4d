"""export.py and DetectMultiBackend: TorchScript and ONNX exports of plain and attention models reproduce PyTorch.

Every model is built fresh from its yaml with random weights and *non-trivial* normalisation statistics (random
BN/GN affine parameters, BN running statistics calibrated on a random batch, random Detect biases), so that the
output depends on every layer and the scores sit around 0.5 where a numerical error shows most. It is saved as a
v6.1-format checkpoint (fp16 model, ``epoch`` -1) and exported through ``export.run`` (the real path:
``attempt_load`` fused FP32, export-friendly SiLU, dry runs, metadata).

Tolerances: objectness/class scores within 1e-4 absolute. xywh are pixels: w and h reach ``(2σ)²·anchor``,
up to about 4·373 px, where one float32 ULP is 1.2e-4, and ONNX Runtime sums convolutions in another order
than PyTorch; so xywh are compared with rtol 1e-4 plus atol 1e-3 px (a thousandth of a pixel).
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import export
import val
from models.backends import DetectMultiBackend, model_format
from models.experimental import attempt_load
from models.yolo import Detect, Model
from tests.conftest import ROOT, _ListHandler
from utils.dataset_yaml import check_dataset

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not importable: ONNX exports not checked")
onnx = pytest.importorskip("onnx", reason="onnx is not importable: ONNX exports not checked")

pytestmark = [pytest.mark.filterwarnings("ignore:.*deprecated:FutureWarning"),  # torch >= 2.9 on TorchScript
              pytest.mark.filterwarnings("ignore:Constant folding:UserWarning")]  # CotLayer's slices (harmless)

MODELS = ["yolov5n", "yolov5n-NAM", "yolov5n-SimAM", "yolov5n-CoTA", "yolov5s-CotLayer"]
NAMES = ["person", "traffic light", "o'neil \"q\"", "ünïcode"]  # names that need quoting survive the metadata
STATIC, OTHER, BATCH2 = (1, 3, 64, 96), (1, 3, 128, 128), (2, 3, 64, 96)
VAR_FLOOR = 0.1  # no BN gain above 1.5/√0.1: channels nearly constant at calibration must not blow up elsewhere
DIFFS: dict[str, dict] = {}  # measured max |Δ| (xywh px, scores), printed at the end of the module (pytest -s)

@torch.no_grad()
def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random norm-layer affines, BN running stats calibrated on random batches, random Detect biases."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) and m.weight is not None:
            m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # running stats = the average of the batch stats of the passes below
        if isinstance(m, Detect):
            for c in m.m:
                c.bias.copy_(torch.randn(c.bias.shape, generator=g) * 0.5)
    model.train()
    model(torch.rand(2, 3, 64, 96, generator=g))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.03
            m.running_var.clamp_(min=VAR_FLOOR)
    return model.eval()

def save_ckpt(model: nn.Module, f: Path) -> Path:
    """A stripped v6.1 checkpoint."""
    f.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": -1, "best_fitness": None, "model": copy.deepcopy(model).half(), "ema": None,
                "updates": None, "optimizer": None, "wandb_id": None, "date": None}, f)
    return f

def _x(shape: tuple, seed: int = 1) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))

def compare(y: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    """Assert the tolerances of the module docstring; return the max |Δ| of (xywh, scores)."""
    assert y.shape == ref.shape
    torch.testing.assert_close(y[..., :4], ref[..., :4], rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(y[..., 4:], ref[..., 4:], rtol=0, atol=1e-4)
    return float((y[..., :4] - ref[..., :4]).abs().max()), float((y[..., 4:] - ref[..., 4:]).abs().max())

@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """These 64-px models gain nothing from intra-op threads, and on a busy machine OpenMP spinning makes a
    2-thread forward hundreds of times slower (1.5 s instead of 5 ms measured for yolov5n at 64×96)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module", autouse=True)
def report_measured_differences():
    """At the end of the module, print the max |Δ| per model and export (visible with ``pytest -s``)."""
    yield
    for name, d in DIFFS.items():
        for k, (a, b) in d.items():
            print(f"\n{name:18s} {k:36s} {a:.2e} {b:.2e}", end="")
    print()


def build(name: str, d: Path) -> Path:
    """``models/{name}.yaml`` with random weights and NAMES, saved as a checkpoint ``d/{name}.pt``."""
    torch.manual_seed(0)  # reproducible conv weights
    model = Model(ROOT / "models" / f"{name}.yaml", nc=len(NAMES))
    model.names = list(NAMES)
    return save_ckpt(randomize(model), d / f"{name}.pt")

@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """The yolov5n checkpoint (shared by the parity, val and flag tests)."""
    return build("yolov5n", tmp_path_factory.mktemp("base") / "static")

@pytest.fixture(scope="module", params=MODELS)
def exported(request, tmp_path_factory) -> dict:
    """One model: its checkpoint, the fused PyTorch reference outputs and its static and dynamic exports."""
    name = request.param
    static = request.getfixturevalue("base") if name == "yolov5n" else build(
        name, tmp_path_factory.mktemp(name) / "static")
    d = static.parent.parent
    (d / "dynamic").mkdir(exist_ok=True)
    dynamic = shutil.copy(static, d / "dynamic" / static.name)
    files = export.run(weights=static, imgsz=STATIC[2:], include=("torchscript", "onnx"))
    files += export.run(weights=dynamic, imgsz=STATIC[2:], include=("torchscript", "onnx"), dynamic=True)
    ref = attempt_load(static)  # what the .pt backend runs: the fp16 checkpoint as FP32, fused
    with torch.no_grad():
        refs = {shape: ref(_x(shape))[0] for shape in (STATIC, OTHER, BATCH2)}
    return {"name": name, "ckpt": static, "ref": ref, "refs": refs, "files": [Path(f) for f in files], "dir": d}

def _file(e: dict, kind: str, suffix: str) -> Path:
    return e["dir"] / kind / f"{e['name']}{suffix}"

def test_exports_written(exported):
    assert sorted(exported["files"]) == sorted(_file(exported, k, s) for k in ("static", "dynamic")
                                               for s in (".torchscript", ".onnx"))

def test_onnx_runtime_matches_pytorch(exported):
    name, refs = exported["name"], exported["refs"]
    sess = ort.InferenceSession(str(_file(exported, "static", ".onnx")), providers=["CPUExecutionProvider"])
    run = lambda shape: torch.from_numpy(sess.run(["output"], {"images": _x(shape).numpy()})[0])  # noqa: E731
    DIFFS.setdefault(name, {})[f"onnx static {STATIC}"] = compare(run(STATIC), refs[STATIC])
    sess = ort.InferenceSession(str(_file(exported, "dynamic", ".onnx")), providers=["CPUExecutionProvider"])
    for shape in (STATIC, OTHER, BATCH2):  # one dynamic export: other sizes and batch sizes
        DIFFS[name][f"onnx dynamic {shape}"] = compare(run(shape), refs[shape])

@torch.no_grad()
def test_torchscript_matches_pytorch_and_static_trace_is_shape_specific(exported):
    name, refs = exported["name"], exported["refs"]
    ts = torch.jit.load(str(_file(exported, "static", ".torchscript")))
    DIFFS.setdefault(name, {})[f"torchscript static {STATIC}"] = compare(ts(_x(STATIC))[0], refs[STATIC])
    with pytest.raises(RuntimeError):  # Detect's grids were frozen at the export size by the trace
        ts(_x(OTHER))
    ts = torch.jit.load(str(_file(exported, "dynamic", ".torchscript")))
    for shape in (OTHER, BATCH2):
        DIFFS[name][f"torchscript dynamic {shape}"] = compare(ts(_x(shape))[0], refs[shape])

@torch.no_grad()
def test_backend_reads_metadata_and_knows_dynamic(exported):
    for kind, suffix, dynamic in [("static", ".onnx", False), ("dynamic", ".onnx", True),
                                  ("static", ".torchscript", False), ("dynamic", ".torchscript", True)]:
        b = DetectMultiBackend(_file(exported, kind, suffix))
        assert (b.stride, b.names, b.dynamic) == (32, NAMES, dynamic), (kind, suffix)
        assert (b.pt, b.jit, b.onnx) == (False, suffix == ".torchscript", suffix == ".onnx")
        if not dynamic:
            with pytest.raises(ValueError, match="static export"):
                b(_x(OTHER))
    y, raw = b(_x(STATIC), val=True)  # the pair val.py unpacks
    compare(y, exported["refs"][STATIC])
    b = DetectMultiBackend(exported["ckpt"])
    assert (b.pt, b.stride, b.names, b.dynamic) == (True, 32, NAMES, True)

def test_onnx_graph_names_axes_and_metadata(exported):
    m = onnx.load(str(_file(exported, "dynamic", ".onnx")))
    dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
    assert m.graph.input[0].name == "images" and dims(m.graph.input[0]) == ["batch", 3, "height", "width"]
    assert m.graph.output[0].name == "output" and dims(m.graph.output[0])[:2] == ["batch", "anchors"]
    assert {p.key: p.value for p in m.metadata_props} == {"stride": "32", "names": json.dumps(NAMES)}
    assert json.loads(m.metadata_props[1].value) == NAMES
    m = onnx.load(str(_file(exported, "static", ".onnx")))
    assert dims(m.graph.input[0]) == list(STATIC) and m.opset_import[0].version == 12

def test_fused_nam_exports(exported):
    if exported["name"] != "yolov5n-NAM":
        pytest.skip("NAM model only")
    nam = [m for m in exported["ref"].modules() if type(m).__name__ == "Channel_Att"]
    assert nam and all(not hasattr(m, "bn2") and m.fused_scale is not None for m in nam)  # folded by fuse()
    # the ONNX/TorchScript parity tests of this model ran on this fused model

# ------------------------------------------------------------------------------------------- refusals, flags
def test_unsupported_formats_are_refused(tmp_path):
    with pytest.raises(export.ExportError, match=r"CoreML \(coreml\).*torchscript onnx openvino engine"):
        export.run(weights=tmp_path / "x.pt", include=["coreml"])
    with pytest.raises(export.ExportError, match="Invalid --include"):
        export.run(weights=tmp_path / "x.pt", include=["foo"])
    with pytest.raises(export.ExportError, match=r"--half only compatible with GPU export, i.e. use --device 0"):
        export.run(weights=tmp_path / "x.pt", include=["onnx"], half=True, device="cpu")
    for f, fmt in [("m.mlmodel", "CoreML"), ("m_saved_model", "TensorFlow SavedModel"), ("m.tflite", "TensorFlow Lite"),
                   ("m_edgetpu.tflite", "TensorFlow Edge TPU")]:  # OpenVINO and TensorRT: tests/test_export_*.py
        with pytest.raises(NotImplementedError, match=rf"{fmt} inference is not supported.*\.onnx.*\.engine"):
            DetectMultiBackend(tmp_path / f)
    with pytest.raises(ValueError, match="unknown model format"):
        model_format("model.txt")

def test_cli_defaults(monkeypatch):
    monkeypatch.setattr("sys.argv", ["export.py", "--weights", "a.pt", "b.pt", "--img", "320"])
    opt = export.parse_opt()
    assert opt.include == ["torchscript", "onnx"] and opt.opset == 12 and opt.device == "cpu"
    assert opt.weights == ["a.pt", "b.pt"] and opt.imgsz == [320] and opt.batch_size == 1
    assert not any((opt.half, opt.inplace, opt.train, opt.optimize, opt.dynamic, opt.simplify, opt.int8))

def test_simplify_missing_warns_installed_runs(tmp_path, monkeypatch, yolo_log):
    monkeypatch.setitem(sys.modules, "onnxsim", None)  # not installed
    model, im = nn.Sequential(nn.Conv2d(3, 4, 1)).eval(), torch.zeros(1, 3, 8, 8)
    f = export.export_onnx(model, im, tmp_path / "a.pt", {"stride": "8", "names": "[]"}, simplify=True)
    assert f and any("--simplify needs onnx-simplifier" in s for s in yolo_log)
    calls = []

    class FakeOnnxsim:  # the onnx-simplifier >= 0.4 API
        __version__ = "0.4.fake"

        @staticmethod
        def simplify(m, test_input_shapes=None, **kw):
            calls.append(test_input_shapes)
            del m.metadata_props[:]  # what a tool may do: the export adds the metadata afterwards
            return m, True

    monkeypatch.setitem(sys.modules, "onnxsim", FakeOnnxsim)
    f = export.export_onnx(model, im, tmp_path / "b.pt", {"stride": "8", "names": "[]"}, dynamic=True, simplify=True)
    assert calls == [{"images": [1, 3, 8, 8]}]
    assert {p.key for p in onnx.load(str(f)).metadata_props} == {"stride", "names"}

@pytest.fixture(scope="module")
def square(base, tmp_path_factory) -> dict:
    """Static 64×64 exports of the yolov5n checkpoint, with --optimize (lite interpreter) and --inplace."""
    h = _ListHandler()
    logging.getLogger("yolov5").addHandler(h)
    try:
        ckpt = shutil.copy(base, tmp_path_factory.mktemp("square") / "sq.pt")
        files = export.run(weights=ckpt, imgsz=64, include=["torchscript", "onnx"], optimize=True, inplace=True)
    finally:
        logging.getLogger("yolov5").removeHandler(h)
    return {"ckpt": Path(ckpt), "files": [Path(f) for f in files], "log": h.lines}

def test_optimize_inplace_logs_and_defaults_without_metadata(square, tmp_path):
    files, log = square["files"], square["log"]
    assert [f.name for f in files] == ["sq.torchscript", "sq.onnx"]
    assert any(s.startswith("Export complete (") for s in log)
    assert any("PyTorch:" in s and "starting from" in s and "(1, 252, 9)" in s for s in log)
    assert sum("largest absolute difference from PyTorch" in s for s in log) == 2
    assert any(s.startswith("Validate:") and "val.py --weights" in s and "sq.onnx --img 64" in s for s in log)
    assert DetectMultiBackend(files[0]).names == NAMES  # the lite-interpreter file loads with its config
    f = shutil.copy(files[1], tmp_path / "nometa.onnx")
    m = onnx.load(f)
    del m.metadata_props[:]  # as v6.1 wrote them: defaults, or the data yaml's names
    onnx.save(m, f)
    b = DetectMultiBackend(f)
    assert b.stride == 64 and b.names == [f"class{i}" for i in range(1000)]
    assert DetectMultiBackend(f, data={"names": ["a", "b", "c", "d"]}).names == ["a", "b", "c", "d"]
    b = DetectMultiBackend(files[1], dnn=True)  # OpenCV DNN
    x = _x((1, 3, 64, 64))
    with torch.no_grad():
        compare(b(x), attempt_load(square["ckpt"])(x)[0])

# ---------------------------------------------------------------------------------------------------- val.py
def _val(weights, data, project: Path, **kw) -> tuple:
    return val.run(data=data, weights=str(weights), imgsz=64, batch_size=8, workers=0, device="cpu", plots=False,
                   project=project, **kw)[0]

@pytest.fixture(scope="module")
def selfdata(base, tmp_path_factory) -> Path:
    """16 demo val images labelled with the yolov5n checkpoint's own confident detections (at most 4 an image,
    no slivers). An untrained model, or one trained for an epoch, scores ~0 mAP on real labels (nothing
    reaches conf 0.001), which would make a pt-vs-onnx mAP comparison empty; on these labels mAP is high and
    any error of an export shows."""
    shapes = check_dataset(ROOT / "data" / "shapes.yaml")
    tmp = tmp_path_factory.mktemp("selfdata")
    for split in "orig", "self":
        (tmp / split / "images").mkdir(parents=True)
    for img in sorted(Path(shapes["val"]).glob("*.jpg"))[:16]:
        for split in "orig", "self":
            (tmp / split / "images" / img.name).symlink_to(img)
    (tmp / "orig" / "labels").mkdir()  # the demo labels, so val runs; its predictions become the new labels
    for f in sorted((Path(shapes["val"]).parent.parent / "labels" / "val").glob("*.txt")):
        if (tmp / "orig" / "images" / f"{f.stem}.jpg").exists():  # classes folded into the model's 4
            rows = [r.split() for r in f.read_text().splitlines()]
            (tmp / "orig" / "labels" / f.name).write_text(
                "".join(" ".join([str(int(r[0]) % len(NAMES)), *r[1:]]) + "\n" for r in rows))
    yml = lambda split: {"path": str(tmp / split), "train": "images", "val": "images", "nc": len(NAMES),  # noqa: E731
                         "names": NAMES}
    _val(base, yml("orig"), tmp, conf_thres=0.25, save_txt=True, save_conf=True, name="pred")
    (tmp / "self" / "labels").mkdir()
    for f in (tmp / "pred" / "labels").glob("*.txt"):
        rows = [r.split() for r in f.read_text().splitlines()]
        rows = sorted((r for r in rows if min(float(r[3]), float(r[4])) > 0.05), key=lambda r: -float(r[5]))[:4]
        (tmp / "self" / "labels" / f.name).write_text("".join(" ".join(r[:5]) + "\n" for r in rows))
    return tmp / "self"

def test_val_onnx_gives_pt_map(base, exported, selfdata, square, tmp_path, yolo_log):
    """mAP@.5 and mAP@.5:.95 through a dynamic ONNX equal the .pt's (rect batches for both); static exports run
    with batch 1 and square images, and ONNX and TorchScript agree there."""
    if exported["name"] != "yolov5n":
        pytest.skip("yolov5n only")
    data = {"path": str(selfdata), "train": "images", "val": "images", "nc": len(NAMES), "names": NAMES}
    r_pt = _val(base, data, tmp_path)
    r_onnx = _val(_file(exported, "dynamic", ".onnx"), data, tmp_path)
    assert r_pt[2] > 0.5, r_pt  # a non-trivial mAP@.5
    assert abs(r_pt[2] - r_onnx[2]) <= 0.001 and abs(r_pt[3] - r_onnx[3]) <= 0.001, (r_pt, r_onnx)
    DIFFS.setdefault("val", {})["|Δ mAP@.5|, |Δ mAP@.5:.95| pt/onnx"] = (abs(r_pt[2] - r_onnx[2]),
                                                                         abs(r_pt[3] - r_onnx[3]))
    assert not any("Forcing --batch-size 1" in s for s in yolo_log)  # dynamic: batches as for .pt
    r_static = _val(square["files"][1], data, tmp_path)  # batch 1, square letterbox: not the rect batches
    assert any("Forcing --batch-size 1 square inference shape(1,3,64,64) for non-PyTorch backends" in s
               for s in yolo_log)
    r_ts = _val(square["files"][0], data, tmp_path)
    assert abs(r_static[2] - r_ts[2]) <= 0.001 and abs(r_static[3] - r_ts[3]) <= 0.001, (r_static, r_ts)
    assert r_static[2] > 0, r_static
    d3 = tmp_path / "b3"
    d3.mkdir()
    onnx3 = export.run(weights=shutil.copy(square["ckpt"], d3), imgsz=64, batch_size=3, include=["onnx"])[0]
    r3 = _val(onnx3, data, tmp_path)  # batches of 3 images; the 16th alone, padded with 2 blank images
    assert any("Forcing --batch-size 3 square inference shape(3,3,64,64)" in s for s in yolo_log)
    assert r3[2:4] == pytest.approx(r_static[2:4], abs=1e-6), (r3, r_static)
