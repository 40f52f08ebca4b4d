"""TensorRT: ``export.py --include engine`` and ``DetectMultiBackend`` on ``.engine`` files.

Without CUDA, both fail at once with a message that names the CUDA device and ``pip install tensorrt``. The export
and runtime code also runs here against tests/fake_tensorrt.py (a stand-in ``tensorrt`` module, ONNX Runtime
doing the arithmetic) in both API generations (TensorRT 10's tensor-name API, TensorRT 8.0-8.3's bindings): the
builder settings, the sidecar metadata, the binding order, shapes and buffers, and parity with PyTorch. On a CUDA
machine with tensorrt installed, real fp32, fp16 and dynamic engines are built and checked against PyTorch and
val.py's mAP.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import sys
from pathlib import Path

import pytest
import torch
import yaml

import export
import models.backend_tensorrt
import models.export_tensorrt
import val
from models.backends import DetectMultiBackend
from models.experimental import attempt_load
from tests import fake_tensorrt
from tests.conftest import _ListHandler
from tests.test_export import NAMES, _x, base, compare, selfdata  # noqa: F401 (base, selfdata: fixtures)
from utils.backend_deps import CUDARequiredError, MissingPackageError

CUDA = torch.cuda.is_available()
needs_tensorrt_gpu = pytest.mark.skipif(not (CUDA and importlib.util.find_spec("tensorrt")),
                                        reason="needs a CUDA device and tensorrt (pip install tensorrt): real "
                                               "engines not built")
pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore:.*deprecated:FutureWarning"),
              pytest.mark.filterwarnings("ignore:Constant folding:UserWarning")]
STATIC, OTHER, BATCH2 = (1, 3, 64, 96), (1, 3, 128, 128), (2, 3, 64, 96)


def use_fake(mp: pytest.MonkeyPatch, api: str):
    """Install the stand-in tensorrt of API generation ``api`` and let it run on the CPU."""
    trt = fake_tensorrt.make(api)
    mp.setitem(sys.modules, "tensorrt", trt)
    mp.setattr(models.export_tensorrt, "require_cuda", lambda *a, **k: None)
    mp.setattr(models.backend_tensorrt, "require_cuda", lambda *a, **k: None)
    mp.setattr(models.backend_tensorrt, "cuda_device", lambda device, what: device)
    return trt


@pytest.mark.skipif(CUDA, reason="checks the messages of a machine without CUDA")
def test_without_cuda_export_and_backend_fail_at_once(tmp_path):
    with pytest.raises(export.ExportError, match=r"TensorRT export \(--include engine\) needs a CUDA device.*"
                                                 r"pip install tensorrt"):
        export.run(weights=tmp_path / "missing.pt", include=["onnx", "engine"])  # before the weights are read
    with pytest.raises(CUDARequiredError, match=r"x\.engine: TensorRT inference needs a CUDA device.*pip install "
                                                r"tensorrt"):
        DetectMultiBackend(tmp_path / "x.engine")  # before the (missing) file is looked for


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device (checks --device cpu with CUDA present)")
def test_engine_export_on_the_cpu_device_is_refused(tmp_path):
    with pytest.raises(export.ExportError, match="needs a CUDA device: pass --device 0"):
        export.run(weights=tmp_path / "missing.pt", include=["engine"], device="cpu")


def test_without_tensorrt_the_pip_command_is_named(tmp_path, monkeypatch):
    use_fake(monkeypatch, "10")
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # CUDA "present", tensorrt not installed
    with pytest.raises(export.ExportError, match=r"needs the tensorrt package: pip install tensorrt"):
        export.run(weights=tmp_path / "missing.pt", include=["engine"])
    with pytest.raises(MissingPackageError, match=r"TensorRT inference needs the tensorrt package: pip install"):
        DetectMultiBackend(tmp_path / "x.engine")


@pytest.fixture(scope="module")
def fake_engines(base, tmp_path_factory) -> dict:
    """yolov5n exported through the stand-in: static (TensorRT 10 API, --workspace 2 --verbose) and --dynamic
    (TensorRT 8.2 API, default workspace), with the export's log."""
    d = tmp_path_factory.mktemp("fake_trt")
    out: dict = {"log": _ListHandler()}
    logging.getLogger("yolov5").addHandler(out["log"])
    try:
        with pytest.MonkeyPatch.context() as mp:
            for kind, api, kw in [("static", "10", dict(workspace=2, verbose=True)), ("dynamic", "8", {})]:
                trt = use_fake(mp, api)
                ckpt = Path(shutil.copy(base, d / f"{kind}.pt"))
                out[kind] = export.run(weights=ckpt, imgsz=STATIC[2:], include=["engine"], dynamic=kind == "dynamic",
                                       **kw)
                out[f"{kind}_plan"] = trt.built[-1]
    finally:
        logging.getLogger("yolov5").removeHandler(out["log"])
    return out


def test_fake_build_settings_and_metadata(fake_engines):
    e = fake_engines
    assert [Path(f).name for f in e["static"] + e["dynamic"]] == ["static.engine", "dynamic.engine"]
    assert e["static_plan"] == {"api": "10", "opset": 13, "workspace": ("WORKSPACE", 2 << 30), "flags": [],
                                "network_flags": 1, "log": "VERBOSE", "profile": None}
    assert e["dynamic_plan"] == {"api": "8", "opset": 13, "workspace": 4 << 30, "flags": [], "network_flags": 1,
                                 "log": "INFO", "profile": [[1, 3, 32, 32], [1, 3, 64, 96], [1, 3, 128, 128]]}
    meta = yaml.safe_load(Path(e["static"][0] + ".yaml").read_text(encoding="utf-8"))
    assert meta == {"stride": 32, "names": NAMES, "dynamic": False, "shape": list(STATIC), "half": False,
                    "tensorrt": "10.0.0-fake"}
    lines = e["log"].lines
    assert any('input "images" with shape (1, 3, 64, 96)' in s for s in lines)
    checked = [s for s in lines if "TensorRT:" in s and "checked at input" in s]  # the export's own check ran
    assert len(checked) == 3 and "[static shape]" in checked[0] and "(1, 3, 96, 64)" in checked[2], checked


@torch.no_grad()
def test_a_static_batch_2_engine_pads_a_single_image(base, monkeypatch, tmp_path):
    use_fake(monkeypatch, "10")
    ckpt = Path(shutil.copy(base, tmp_path / "b2.pt"))
    b = DetectMultiBackend(export.run(weights=ckpt, imgsz=STATIC[2:], batch_size=2, include=["engine"])[0])
    assert b.input_shape == BATCH2
    runner, given = b.runtime, []
    b.runtime = lambda im: given.append(im.clone()) or runner(im)  # what the engine's input buffer holds
    x = _x(STATIC)  # one image: padded with a blank one for the engine, whose output is dropped
    y = b(x)
    assert y.shape[0] == 1 and runner.context.calls == [BATCH2]
    assert given[0].shape == BATCH2 and torch.equal(given[0][0], x[0]) and not given[0][1].any()
    compare(y, attempt_load(ckpt)(x)[0])


@pytest.mark.parametrize("api", ["10", "8"])
@torch.no_grad()
def test_fake_runtime_matches_pytorch_in_both_apis(fake_engines, api, monkeypatch, tmp_path):
    use_fake(monkeypatch, api)
    static, dynamic = Path(fake_engines["static"][0]), Path(fake_engines["dynamic"][0])
    ref = attempt_load(static.with_suffix(".pt"))
    b = DetectMultiBackend(static)
    assert (b.engine, b.xml, b.onnx, b.stride, b.names, b.dynamic, b.input_shape) == (
        True, False, False, 32, NAMES, False, STATIC)
    assert b.runtime.tensor_api == (api == "10") and b.runtime.output.name == "output"
    y, raw = b(_x(STATIC), val=True)
    assert raw == [] and float(y[..., 4:].std()) > 0.05
    compare(y, ref(_x(STATIC))[0])
    with pytest.raises(ValueError, match="static export"):
        b(_x(OTHER))
    b = DetectMultiBackend(dynamic)
    assert (b.dynamic, b.input_shape, b.runtime.profile) == (True, (None, 3, None, None),
                                                            ((1, 3, 32, 32), (1, 3, 128, 128)))
    for shape in (STATIC, (1, 3, 96, 64), (1, 3, 32, 32)):
        compare(b(_x(shape)), ref(_x(shape))[0])
    assert b.runtime.context.calls == [STATIC, (1, 3, 96, 64), (1, 3, 32, 32)]
    with pytest.raises(ValueError, match=r"from \(1, 3, 32, 32\) to \(1, 3, 128, 128\).*got \(2, 3, 64, 96\)"):
        b(_x(BATCH2))  # batch 2 > the exported --batch-size 1
    bad = tmp_path / "bad.engine"
    bad.write_bytes(b"not a plan")
    with pytest.raises(RuntimeError, match="could not deserialize"):
        DetectMultiBackend(bad)
    shutil.copy(static, tmp_path / "bare.engine")  # no metadata: v6.1's defaults, or a data yaml's names
    assert (DetectMultiBackend(tmp_path / "bare.engine").stride, DetectMultiBackend(tmp_path / "bare.engine").names[:2]
            ) == (64, ["class0", "class1"])


# ------------------------------------------------------------------------------------ real TensorRT on a GPU
@needs_tensorrt_gpu
@torch.no_grad()
def test_real_engines_match_pytorch(base, tmp_path):
    """fp32 static, fp32 dynamic and fp16 engines against PyTorch on the same GPU (TF32/fp16 tolerances)."""
    dev = torch.device("cuda:0")
    ref = attempt_load(base, map_location=dev)
    for kind, kw, atol in [("fp32", {}, 5e-3), ("dyn", dict(dynamic=True), 5e-3), ("fp16", dict(half=True), 3e-2)]:
        ckpt = Path(shutil.copy(base, tmp_path / f"{kind}.pt"))
        f = export.run(weights=ckpt, imgsz=STATIC[2:], include=["engine"], device="0", **kw)[0]
        b = DetectMultiBackend(f, device=dev)
        assert b.engine and b.names == NAMES and b.dynamic == (kind == "dyn")
        for shape in (STATIC, (1, 3, 96, 64)) if kind == "dyn" else (STATIC,):
            x = _x(shape).to(dev)
            y, r = b(x).float().cpu(), ref(x)[0].float().cpu()
            torch.testing.assert_close(y[..., 4:], r[..., 4:], rtol=0, atol=atol)
            torch.testing.assert_close(y[..., :4], r[..., :4], rtol=1e-2, atol=0.5)


@needs_tensorrt_gpu
def test_real_engine_val_gives_pt_map(base, selfdata, tmp_path):
    """A dynamic fp16 engine (batches up to 8) in val.py: the .pt's mAP within 0.01."""
    ckpt = Path(shutil.copy(base, tmp_path / "v.pt"))
    f = export.run(weights=ckpt, imgsz=64, batch_size=8, include=["engine"], device="0", half=True, dynamic=True)[0]
    data = {"path": str(selfdata), "train": "images", "val": "images", "nc": len(NAMES), "names": NAMES}
    kw = dict(data=data, imgsz=64, batch_size=8, workers=0, device="0", plots=False, project=tmp_path, half=True)
    r_pt, r_trt = val.run(weights=str(ckpt), **kw)[0], val.run(weights=f, **kw)[0]
    assert r_pt[2] > 0.5 and abs(r_pt[2] - r_trt[2]) <= 0.01 and abs(r_pt[3] - r_trt[3]) <= 0.01, (r_pt, r_trt)


def test_dynamic_profile_takes_vals_rectangular_batches():
    import math

    from models.export_tensorrt import profile_shapes
    for img in 64, 320, 640:
        lo, opt, hi = profile_shapes((8, 3, img, img), 32)
        rect_long_side = math.ceil(img / 32 + 0.5) * 32  # val.py: rect batches with pad 0.5
        assert hi == (8, 3, rect_long_side, rect_long_side) and lo == (1, 3, 32, 32) and opt == (8, 3, img, img)
