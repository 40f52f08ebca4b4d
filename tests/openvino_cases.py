"""OpenVINO export and inference cases, run by tests/test_export_openvino.py in their own pytest process.

Every model is built from its yaml with random weights and calibrated, non-trivial normalisation statistics
(tests/test_export.py's ``build``: scores around 0.5, every layer matters), saved as a v6.1 checkpoint and
exported through ``export.run``. The IR runs on OpenVINO's CPU plugin in fp32 and must give PyTorch's decoded
output within the tolerances of tests/test_export.py (scores 1e-4 absolute; xywh 1e-4 relative + 1e-3 px).
Without openvino the parity tests skip; the export and the backend then fail at once naming ``pip install
openvino`` (tested with openvino hidden).
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import detect
import export
import val
from models.backend_openvino import openvino_dir
from models.backends import DetectMultiBackend, export_metadata
from models.experimental import attempt_load
from models.export_openvino import export_openvino
from tests.test_export import NAMES, _x, base, build, compare, selfdata  # noqa: F401 (base, selfdata: fixtures)
from utils.backend_deps import MissingPackageError

HAS_OPENVINO = importlib.util.find_spec("openvino") is not None
needs_openvino = pytest.mark.skipif(not HAS_OPENVINO, reason="openvino is not installed (pip install openvino): "
                                                              "OpenVINO exports not checked")
pytestmark = [pytest.mark.usefixtures("one_thread"),  # conftest: one intra-op thread (torch and OpenVINO)
              pytest.mark.filterwarnings("ignore:.*deprecated:FutureWarning"),
              pytest.mark.filterwarnings("ignore:Constant folding:UserWarning")]

MODELS = ["yolov5n", "yolov5n-NAM", "yolov5n-SimAM", "yolov5n-CoTA", "yolov5n-CotLayer", "yolov5s"]
STATIC, OTHER, BATCH2 = (1, 3, 64, 96), (1, 3, 128, 128), (2, 3, 64, 96)
MEASURED: dict[str, str] = {}  # per model: export seconds and max |Δ|, printed at the end (pytest -s)


@pytest.fixture(scope="module", autouse=True)
def report_measured():
    yield
    for name, line in MEASURED.items():
        print(f"\n{name:18s} {line}", end="")
    print()


@pytest.fixture(scope="module", params=MODELS)
def ov_static(request, tmp_path_factory) -> dict:
    """One model exported to a static 64x96 OpenVINO IR, with its fused PyTorch reference output."""
    if not HAS_OPENVINO:
        pytest.skip("openvino is not installed (pip install openvino): OpenVINO exports not checked")
    name = request.param
    ckpt = request.getfixturevalue("base") if name == "yolov5n" else build(name, tmp_path_factory.mktemp(name))
    t = time.time()
    files = export.run(weights=ckpt, imgsz=STATIC[2:], include=["openvino"])
    seconds = time.time() - t
    with torch.no_grad():
        ref = attempt_load(ckpt)(_x(STATIC))[0]
    return {"name": name, "ckpt": ckpt, "files": files, "ref": ref, "seconds": seconds}


@pytest.fixture(scope="module")
def ov_dynamic(base, tmp_path_factory) -> dict:
    """yolov5n exported with --dynamic to OpenVINO and ONNX (the ONNX is the reference of the detect test)."""
    if not HAS_OPENVINO:
        pytest.skip("openvino is not installed (pip install openvino): OpenVINO exports not checked")
    ckpt = Path(shutil.copy(base, tmp_path_factory.mktemp("dynamic") / "dyn.pt"))
    files = export.run(weights=ckpt, imgsz=STATIC[2:], include=["openvino", "onnx"], dynamic=True)
    return {"ckpt": ckpt, "ov": Path(files[0]), "onnx": Path(files[1])}


@needs_openvino
@torch.no_grad()
def test_openvino_matches_pytorch(ov_static):
    name, ckpt = ov_static["name"], ov_static["ckpt"]
    d = openvino_dir(ckpt)
    assert ov_static["files"] == [str(d)]
    b = DetectMultiBackend(d)
    assert (b.xml, b.pt, b.onnx, b.engine, b.stride, b.names, b.dynamic) == (True, False, False, False, 32, NAMES,
                                                                             False)
    y = b(_x(STATIC))
    assert float(y[..., 4:].std()) > 0.05  # scores spread out: a layer that vanished would show
    dx, ds = compare(y, ov_static["ref"])
    MEASURED[name] = f"export {ov_static['seconds']:.1f} s, max |Δ| xywh {dx:.2e} px, scores {ds:.2e}"


@needs_openvino
@pytest.mark.parametrize("ov_static", ["yolov5n"], indirect=True)
def test_folder_layout_metadata_and_static_shape(ov_static, tmp_path):
    d = openvino_dir(ov_static["ckpt"])
    stem = ov_static["ckpt"].stem
    assert sorted(f.name for f in d.iterdir()) == [f"{stem}.bin", f"{stem}.xml", f"{stem}.yaml"]
    meta = yaml.safe_load((d / f"{stem}.yaml").read_text(encoding="utf-8"))
    assert meta == {"stride": 32, "names": NAMES, "dynamic": False, "shape": list(STATIC), "half": False}
    b = DetectMultiBackend(d / f"{stem}.xml")  # the .xml itself loads too
    assert (b.xml, b.names, b.input_shape) == (True, NAMES, STATIC)
    assert DetectMultiBackend.model_type(d) == DetectMultiBackend.model_type(d / f"{stem}.xml")
    with pytest.raises(ValueError, match=r"takes input shape \(1, 3, 64, 96\)"):
        b(_x(OTHER))
    bare = tmp_path / "copy"  # the IR without its yaml: stride and names come from the runtime info
    bare.mkdir()
    for suffix in (".xml", ".bin"):
        shutil.copy(d / f"{stem}{suffix}", bare / f"m{suffix}")
    b = DetectMultiBackend(bare / "m.xml")
    assert (b.stride, b.names) == (32, NAMES)
    assert DetectMultiBackend(bare / "m.xml", data={"names": list("abcd")}).names == list("abcd")


@needs_openvino
@torch.no_grad()
def test_dynamic_export_other_sizes_and_batches(ov_dynamic):
    b = DetectMultiBackend(ov_dynamic["ov"])
    assert b.dynamic and b.input_shape == (None, 3, None, None)
    ref = attempt_load(ov_dynamic["ckpt"])
    for shape in (STATIC, OTHER, BATCH2):
        compare(b(_x(shape)), ref(_x(shape))[0])


@needs_openvino
def test_half_stores_fp16_weights(base, tmp_path):
    """--half (a GPU flag of export.py) maps to compress_to_fp16: the .bin halves, the CPU still computes fp32."""
    model = export.prepare_for_export(attempt_load(base))
    im = torch.zeros(STATIC)
    meta = export_metadata(32, NAMES)
    sizes, outs = {}, {}
    for half in (False, True):
        f = tmp_path / f"h{int(half)}.pt"
        d = export_openvino(lambda p: export.export_onnx(model, im, p, meta), f, meta, STATIC, half=half)
        sizes[half] = (d / f"{f.stem}.bin").stat().st_size
        outs[half] = DetectMultiBackend(d)(_x(STATIC))
    assert 0.45 < sizes[True] / sizes[False] < 0.55
    assert yaml.safe_load((d / "h1.yaml").read_text())["half"] is True
    compare(outs[False], attempt_load(base)(_x(STATIC))[0].detach())
    torch.testing.assert_close(outs[True][..., 4:], outs[False][..., 4:], rtol=0, atol=0.02)  # fp16 weights


@needs_openvino
def test_val_openvino_gives_pt_map(base, selfdata, ov_dynamic, tmp_path):
    data = {"path": str(selfdata), "train": "images", "val": "images", "nc": len(NAMES), "names": NAMES}
    kw = dict(data=data, imgsz=64, batch_size=8, workers=0, device="cpu", plots=False, project=tmp_path)
    r_pt = val.run(weights=str(base), **kw)[0]
    r_ov = val.run(weights=str(ov_dynamic["ov"]), **kw)[0]
    assert r_pt[2] > 0.5, r_pt  # a non-trivial mAP@.5
    assert abs(r_pt[2] - r_ov[2]) <= 0.001 and abs(r_pt[3] - r_ov[3]) <= 0.001, (r_pt, r_ov)
    MEASURED["val"] = f"mAP@.5 pt {r_pt[2]:.4f} openvino {r_ov[2]:.4f}; mAP@.5:.95 pt {r_pt[3]:.4f} " \
                      f"openvino {r_ov[3]:.4f}"


def _labels(run_dir: Path) -> dict[str, np.ndarray]:
    return {f.name: np.loadtxt(f, ndmin=2) for f in sorted((run_dir / "labels").glob("*.txt"))}


@needs_openvino
def test_detect_openvino_matches_onnx(selfdata, ov_dynamic, tmp_path):
    """detect.py on the IR saves the boxes that the ONNX export of the same model saves (same letterbox)."""
    src = sorted((selfdata / "images").glob("*.jpg"))[:4]
    runs = {}
    for k in ("ov", "onnx"):
        src_dir = tmp_path / "src"
        src_dir.mkdir(exist_ok=True)
        for f in src:
            if not (src_dir / f.name).exists():
                (src_dir / f.name).symlink_to(f)
        runs[k] = _labels(detect.run(weights=ov_dynamic[k], source=src_dir, imgsz=64, device="cpu", save_txt=True,
                                     save_conf=True, nosave=True, project=tmp_path, name=k, data=None))
    assert runs["ov"] and runs["ov"].keys() == runs["onnx"].keys()
    for name, a in runs["ov"].items():
        b = runs["onnx"][name]
        assert a.shape == b.shape and (a[:, 0] == b[:, 0]).all(), name
        np.testing.assert_allclose(a[:, 1:], b[:, 1:], atol=1e-3)


def test_without_openvino_export_and_backend_fail_with_the_pip_command(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if not installed
    with pytest.raises(export.ExportError, match=r"OpenVINO export needs the openvino package: pip install openvino"):
        export.run(weights=tmp_path / "missing.pt", include=["onnx", "openvino"])  # before the weights are read
    d = tmp_path / "m_openvino_model"
    d.mkdir()
    with pytest.raises(MissingPackageError, match=r"OpenVINO inference needs the openvino package: pip install"):
        DetectMultiBackend(d)
