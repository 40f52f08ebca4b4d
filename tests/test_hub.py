"""torch.hub API: hubconf entry points, AutoShape (inputs, batch shape, NMS, scaling back) and Detections (strings,
files, crops, DataFrames). The acceptance test loads a bccd-style checkpoint through ``torch.hub.load(..., 'custom')``
and finds exactly the boxes detect.py writes to its label files."""

from __future__ import annotations

import copy
import io
import logging
import os
import shutil
import socket
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn
from PIL import Image

import detect
from models.autoshape import AutoShape, Detections, batch_shape, load_image
from models.yolo import Detect, Model
from tests.attention_refs import randomize_layers
from tests.conftest import ROOT
from utils.general import LOGGER
from utils.labels import exif_transpose

pytestmark = pytest.mark.usefixtures("one_thread")
BCCD = ["RBC", "WBC", "Platelets"]
CONF, IOU, IMGSZ = 0.6, 0.45, 320  # a threshold that leaves tens of boxes per image for the random model
SUFFIX = "Cache may be out of date, try `force_reload=True` or see https://github.com/ultralytics/yolov5/issues/36 " \
         "for help."
NAMES = ["person", "bus", "tie"]


@pytest.fixture(scope="module", autouse=True)
def keep_cuda_visible_devices():
    """select_device('cpu') sets CUDA_VISIBLE_DEVICES=-1 for the process (as v6.1); give later tests theirs back."""
    old = os.environ.get("CUDA_VISIBLE_DEVICES")
    yield
    os.environ.pop("CUDA_VISIBLE_DEVICES", None) if old is None else os.environ.update(CUDA_VISIBLE_DEVICES=old)


def hub_load(*args, **kwargs):
    return torch.hub.load(str(ROOT), *args, source="local", **kwargs)


@pytest.fixture
def no_network(monkeypatch):
    """Every connection attempt fails as it does offline (name resolution error), whatever library makes it."""
    def refuse(*args, **kwargs):
        raise OSError("[Errno -2] Name or service not known (the test has no network)")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def bccd_ckpt(tmp_path_factory) -> Path:
    """A yolov5n (nc=3, bccd names) with random weights whose scores depend on the image: random norm/conv
    parameters, then BatchNorm statistics calibrated on a random batch. Saved as a stripped v6.1 checkpoint."""
    torch.manual_seed(0)
    m = Model(ROOT / "models/yolov5n.yaml", nc=3)
    m.names = BCCD
    with torch.no_grad():
        g = randomize_layers(m, seed=0, gain=1.0)
        for bn in (x for x in m.modules() if isinstance(x, nn.BatchNorm2d)):
            bn.reset_running_stats()
            bn.momentum = None  # running stats = the batch statistics of the pass below
        m.train()(torch.rand(2, 3, 256, 320, generator=g))
    f = tmp_path_factory.mktemp("hub") / "yolov5n.pt"  # named like an official model, for the transfer test
    torch.save({"epoch": -1, "best_fitness": None, "model": copy.deepcopy(m.eval()).half(), "ema": None,
                "updates": None, "optimizer": None, "wandb_id": None, "date": None}, f)
    return f


@pytest.fixture(scope="module")
def custom(bccd_ckpt) -> AutoShape:
    model = hub_load("custom", path=str(bccd_ckpt), device="cpu")
    model.conf, model.iou, model.max_det = CONF, IOU, 1000  # detect.py's thresholds below
    return model


@pytest.fixture(scope="module")
def n3() -> AutoShape:
    return hub_load("yolov5n", pretrained=False, classes=3, device="cpu")


# ------------------------------------------------------------------------------------ acceptance: hub == detect.py
def _detect_rows(label_file: Path, h: int, w: int) -> np.ndarray:
    """detect.py's ``cls xc yc w h conf`` rows (normalised, %g) as (n, 6) pixel ``x1 y1 x2 y2 conf cls``."""
    d = np.loadtxt(label_file, ndmin=2)
    xc, yc, bw, bh = d[:, 1] * w, d[:, 2] * h, d[:, 3] * w, d[:, 4] * h
    return np.c_[xc - bw / 2, yc - bh / 2, xc + bw / 2, yc + bh / 2, d[:, 5], d[:, 0]]


def _match(df: pd.DataFrame, ref: np.ndarray, h: int, w: int) -> None:
    """Every AutoShape row equals exactly one detect.py row: same class, confidence within 1e-5, and the box equal
    after the integer rounding detect.py applies, within the %g precision of the label file (6 significant digits
    of a normalised value, < 1e-6 of the image side). A coordinate within 1e-3 px of .5 may round either way."""
    assert list(df.columns) == ["xmin", "ymin", "xmax", "ymax", "confidence", "class", "name"]
    assert len(df) == len(ref) > 0
    tol = 1e-6 * max(h, w)
    free = set(range(len(ref)))
    for a in df[["xmin", "ymin", "xmax", "ymax", "confidence", "class"]].to_numpy():
        near_half = np.abs(a[:4] - np.floor(a[:4]) - 0.5) < 1e-3
        box_err = np.where(near_half, np.abs(a[:4] - ref[:, :4]) - 0.5, np.abs(np.round(a[:4]) - ref[:, :4])).max(1)
        ok = [k for k in free if ref[k, 5] == a[5] and abs(ref[k, 4] - a[4]) < 1e-5 and box_err[k] <= tol]
        assert ok, f"no detect.py row for {a}; closest box error {box_err.min():.3g} px"
        free.remove(ok[0])
    assert df["name"].tolist() == [BCCD[int(c)] for c in df["class"]]


@pytest.mark.parametrize("case", ["zidane", "bccd"])
def test_hub_custom_finds_what_detect_writes(case, custom, bccd_ckpt, shared_data, tmp_path):
    if case == "zidane":
        files = [shared_data / "images/zidane.jpg"]
        source = files[0]
    else:
        files = sorted((shared_data / "bccd/images/val").glob("*.jpg"))[:3]
        source = tmp_path / "src"
        source.mkdir()
        for f in files:
            shutil.copy(f, source)
    save_dir = detect.run(weights=str(bccd_ckpt), source=str(source), imgsz=IMGSZ, conf_thres=CONF, iou_thres=IOU,
                          max_det=1000, device="cpu", save_txt=True, save_conf=True, nosave=True, project=tmp_path)
    inputs = [str(f) for f in files]
    results = custom(inputs, size=IMGSZ)
    assert all(isinstance(x, np.ndarray) for x in inputs)  # the caller's list now holds the images (as v6.1)
    assert results.files == [f.name for f in files] and len(results) == len(files)
    for i, f in enumerate(files):
        h, w = results.imgs[i].shape[:2]
        _match(results.pandas().xyxy[i], _detect_rows(save_dir / "labels" / f"{f.stem}.txt", h, w), h, w)


# ------------------------------------------------------------------------------------------------- Detections
@pytest.fixture
def dets() -> Detections:
    """720x1280 with 2 persons and 1 tie, 1080x810 with 4 persons and 1 bus, 640x480 with none."""
    imgs = [np.full((720, 1280, 3), (10, 20, 30), np.uint8), np.full((1080, 810, 3), 50, np.uint8),
            np.full((640, 480, 3), 90, np.uint8)]
    p0 = torch.tensor([[100, 200, 300, 400, 0.9, 0], [500, 100, 700, 500, 0.8, 2], [800, 300, 1000, 600, 0.7, 0]])
    p1 = torch.tensor([[10 + 100 * k, 10, 90 + 100 * k, 200, 0.9 - 0.1 * k, 0] for k in range(4)]
                      + [[20, 400, 700, 1000, 0.5, 1]])
    return Detections(imgs, [p0, p1, torch.zeros(0, 6)], ["zidane.jpg", "bus.jpg", "image2.jpg"],
                      times=(0, 0.003, 0.009, 0.012), names=NAMES, shape=torch.Size((3, 3, 640, 640)))


def test_print_strings(dets, yolo_log):
    dets.print()
    assert yolo_log == ["image 1/3: 720x1280 2 persons, 1 tie", "image 2/3: 1080x810 4 persons, 1 bus",
                        "image 3/3: 640x480 (no detections)",
                        "Speed: 1.0ms pre-process, 2.0ms inference, 1.0ms NMS per image at shape (3, 3, 640, 640)"]
    two = Detections([dets.imgs[1]], [torch.tensor([[0, 0, 9, 9, 0.5, 1], [5, 5, 20, 20, 0.4, 1.0]])], ["a.jpg"],
                     names=NAMES)
    assert two.summary(0) == "image 1/1: 1080x810 2 buss"  # plain concatenation of the plural s


def test_box_formats_pandas_tolist_len(dets):
    torch.testing.assert_close(dets.xywh[0][0], torch.tensor([200, 300, 200, 200, 0.9, 0]))
    torch.testing.assert_close(dets.xyxyn[0][0], torch.tensor([100 / 1280, 200 / 720, 300 / 1280, 400 / 720, 0.9, 0]))
    torch.testing.assert_close(dets.xywhn[0][0], torch.tensor([200 / 1280, 300 / 720, 200 / 1280, 200 / 720, 0.9, 0]))
    p = dets.pandas()
    df = p.xywhn[0]
    assert list(df.columns) == ["xcenter", "ycenter", "width", "height", "confidence", "class", "name"]
    assert [str(t) for t in df.dtypes[:6]] == ["float64"] * 5 + ["int64"]
    assert pd.api.types.is_string_dtype(df["name"])  # object before pandas 3, str since
    assert df.iloc[0].tolist() == pytest.approx([200 / 1280, 300 / 720, 200 / 1280, 200 / 720, 0.9, 0, "person"])
    assert p.xyxy[1]["name"].tolist() == ["person"] * 4 + ["bus"] and len(p.xyxy[2]) == 0
    assert list(p.xyxy[2].columns) == ["xmin", "ymin", "xmax", "ymax", "confidence", "class", "name"]
    assert isinstance(dets.xyxy[0], torch.Tensor)  # pandas() works on a copy
    parts = dets.tolist()
    assert len(dets) == 3 and [len(x) for x in parts] == [1, 1, 1] and parts[1].files == ["bus.jpg"]
    assert parts[1].pred[0] is dets.pred[1] and parts[2].t == pytest.approx((3.0, 6.0, 3.0))  # whole-batch times


def test_render_draws_boxes_on_copies(dets):
    originals = [im.copy() for im in dets.imgs]
    out = dets.render()
    assert out is dets.imgs and all(a.shape == b.shape for a, b in zip(out, originals))
    lw = max(round((720 + 1280 + 3) / 2 * 0.003), 2)
    assert not np.array_equal(out[0][300, 100 - lw // 2: 100 + lw], originals[0][300, 100 - lw // 2: 100 + lw])
    assert (out[0][650:, 1100:] == (10, 20, 30)).all() and np.array_equal(out[2], originals[2])  # no box: untouched
    assert tuple(out[0][300, 100]) == (0xFF, 0x38, 0x38)  # class 0: the first palette colour, RGB
    assert (originals[0] == (10, 20, 30)).all()


def test_save_names_files_and_increments(dets, tmp_path, monkeypatch, yolo_log):
    monkeypatch.chdir(tmp_path)
    dets.save()
    dets.save()
    exp, exp2 = Path("runs/detect/exp"), Path("runs/detect/exp2")
    assert sorted(p.name for p in exp.iterdir()) == ["bus.jpg", "image2.jpg", "zidane.jpg"]
    assert sorted(p.name for p in exp2.iterdir()) == ["bus.jpg", "image2.jpg", "zidane.jpg"]
    assert yolo_log == [f"Saved 3 images to \x1b[1mruns/detect/{d}\x1b[0m" for d in ("exp", "exp2")]
    saved = cv2.imread(str(exp / "zidane.jpg"))[..., ::-1].astype(int)
    assert np.abs(saved[300, 101] - (0xFF, 0x38, 0x38)).max() < 40 and np.abs(saved[700, 1270] - (10, 20, 30)).max() < 8
    dets.save(save_dir=tmp_path / "mine")  # any other folder is used as it is
    assert (tmp_path / "mine/bus.jpg").is_file() and not (tmp_path / "mine2").exists()


def test_crop_writes_one_file_per_box_and_the_plain_images(dets, tmp_path, monkeypatch, yolo_log):
    monkeypatch.chdir(tmp_path)
    crops = dets.crop()
    d = Path("runs/detect/exp")
    files = sorted(p.relative_to(d).as_posix() for p in d.rglob("*.jpg"))
    assert files == ["bus.jpg", "crops/bus/bus.jpg", "crops/person/bus.jpg", "crops/person/bus2.jpg",
                     "crops/person/bus3.jpg", "crops/person/bus4.jpg", "crops/person/zidane.jpg",
                     "crops/person/zidane2.jpg", "crops/tie/zidane.jpg", "image2.jpg", "zidane.jpg"]
    assert yolo_log[-2:] == ["Saved 3 images to \x1b[1mruns/detect/exp\x1b[0m", "Saved results to runs/detect/exp"]
    assert len(crops) == 8 and all(set(c) == {"box", "conf", "cls", "label", "im"} for c in crops)
    first = crops[0]  # boxes in reverse order: zidane's 0.7 person first
    assert first["label"] == "person 0.70" and [float(v) for v in first["box"]] == [800, 300, 1000, 600]
    assert first["im"].shape == (316, 214, 3) and tuple(first["im"][0, 0]) == (30, 20, 10)  # channels reversed
    plain = cv2.imread(str(d / "zidane.jpg"))
    assert np.abs(plain.astype(int) - (30, 20, 10)).max() < 8  # full image saved without boxes
    assert np.abs(cv2.imread(str(d / "crops/tie/zidane.jpg")).astype(int) - (30, 20, 10)).max() < 8  # BGR on disk
    assert len(dets.crop(save=False)) == 8 and not Path("runs/detect/exp2").exists()


# ---------------------------------------------------------------------------------------------- input handling
def _exif_jpeg(orientation: int) -> bytes:
    """A 40x20 (w x h) JPEG, red left half, with an EXIF orientation tag."""
    im = Image.new("RGB", (40, 20), (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, 20, 20))
    exif = im.getexif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    im.save(buf, "JPEG", exif=exif.tobytes(), quality=95)
    return buf.getvalue()


def test_exif_orientation_6_is_transposed(tmp_path):
    im = Image.open(io.BytesIO(_exif_jpeg(6)))
    up = exif_transpose(im)
    assert up.size == (20, 40) and up.getexif().get(0x0112) is None and "exif" in up.info
    assert im.getexif().get(0x0112) == 6  # the input image is left as it was
    arr, name = load_image(im, 4)
    assert arr.shape == (40, 20, 3) and name == "image4.jpg"
    assert arr[5, 10, 0] > 200 and arr[35, 10, 2] > 200  # rotated 90° clockwise: the left half is on top
    (tmp_path / "r.jpg").write_bytes(_exif_jpeg(6))
    arr, name = load_image(tmp_path / "r.jpg")
    assert arr.shape == (40, 20, 3) and name == "r.jpg"
    assert exif_transpose(Image.open(io.BytesIO(_exif_jpeg(1)))).size == (40, 20)


def test_array_layouts_and_file_names(tmp_path, monkeypatch):
    gray = np.arange(600, dtype=np.uint8).reshape(20, 30)
    arr, name = load_image(gray, 1)
    assert arr.shape == (20, 30, 3) and (arr == gray[..., None]).all() and name == "image1.jpg"
    rgba = np.random.default_rng(0).integers(0, 255, (20, 30, 4), dtype=np.uint8)
    assert np.array_equal(load_image(rgba)[0], rgba[..., :3])
    chw = np.random.default_rng(1).integers(0, 255, (3, 20, 30), dtype=np.uint8)
    arr = load_image(chw)[0]
    assert arr.shape == (20, 30, 3) and arr.flags.c_contiguous and np.array_equal(arr, chw.transpose(1, 2, 0))
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    assert load_image(str(tmp_path / "a.png"))[1] == "a.jpg"
    assert load_image(Image.open(tmp_path / "a.png"))[1] == "a.jpg"  # a PIL image's filename
    monkeypatch.setattr("models.autoshape.fetch_image", lambda url: Image.new("RGB", (8, 6)))
    arr, name = load_image("https://example.com/images/zidane.jpg?raw=1")
    assert name == "zidane.jpg" and arr.shape == (6, 8, 3)


def test_url_offline_fails_at_once_naming_it(no_network):
    with pytest.raises(ConnectionError, match=r"https://example\.com/bus\.jpg .*save the image locally"):
        load_image("https://example.com/bus.jpg")


def test_batch_shapes_and_tensor_input(n3):
    assert batch_shape([(720, 1280)], 640) == [384, 640] and batch_shape([(720, 1280), (1080, 810)], 640) == [640, 640]
    assert tuple(n3(np.zeros((720, 1280, 3), np.uint8)).s) == (1, 3, 384, 640)
    imgs = [np.zeros((720, 1280, 3), np.uint8), np.zeros((1080, 810, 3), np.uint8)]
    r = n3(imgs, size=640)
    assert tuple(r.s) == (2, 3, 640, 640) and r.files == ["image0.jpg", "image1.jpg"] and len(r.t) == 3
    x = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    out = n3(x)
    assert isinstance(out, tuple) and len(out) == 2  # the model's own (prediction, level outputs)
    torch.testing.assert_close(out[0], n3.model(x)[0])


def test_to_keeps_detect_attributes_in_step(n3):
    m = copy.deepcopy(n3)
    m(np.zeros((64, 64, 3), np.uint8), size=64)  # grids cached in float32
    m.double()
    head = next(x for x in m.modules() if isinstance(x, Detect))
    assert head.stride.dtype == torch.float64 and all(g.dtype == torch.float64 for g in head.grid + head.anchor_grid)
    assert m(torch.zeros(1, 3, 64, 64))[0].dtype == torch.float64  # the input follows the model's dtype
    assert m(np.zeros((64, 64, 3), np.uint8), size=64).s == (1, 3, 64, 64)


def test_static_export_is_letterboxed_to_its_size_and_scaled_back_from_it(bccd_ckpt, tmp_path, shared_data):
    pytest.importorskip("onnxruntime", reason="onnxruntime is not importable: ONNX backend not checked")
    import export
    from models.backends import DetectMultiBackend

    w = shutil.copy(bccd_ckpt, tmp_path / "w.pt")
    onnx_file = export.run(weights=w, imgsz=(IMGSZ, IMGSZ), include=("onnx",))[0]
    exported, ref = AutoShape(DetectMultiBackend(onnx_file)), AutoShape(DetectMultiBackend(w))
    ref._input_shape = lambda shape1, size: (IMGSZ, IMGSZ)  # the same square input, through PyTorch
    exported.conf = ref.conf = CONF
    a = exported(str(shared_data / "images/zidane.jpg"), size=IMGSZ)
    b = ref(str(shared_data / "images/zidane.jpg"), size=IMGSZ)
    assert tuple(a.s) == (1, 3, IMGSZ, IMGSZ) and len(a.pred[0]) == len(b.pred[0]) > 0
    torch.testing.assert_close(a.pred[0], b.pred[0], rtol=0, atol=0.05)  # pixels of the 720x1280 original
    assert exported(torch.zeros(1, 3, IMGSZ, IMGSZ)).shape[-1] == 8  # a tensor: the raw (1, N, 5 + nc) output


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fp16_and_amp():
    m = AutoShape(Model(ROOT / "models/yolov5n.yaml", nc=3))
    m(np.zeros((96, 128, 3), np.uint8), size=128)  # CPU grids cached first
    m = m.to("cuda")
    head = m.model.model[-1]
    assert head.stride.is_cuda and all(g.is_cuda for g in head.grid + head.anchor_grid)
    m.conf = 0.0  # every candidate: boxes to compare
    im = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    full = m(im, size=128)
    m.amp = True
    amp = m(im, size=128)
    assert full.pred[0].is_cuda and amp.pred[0].shape[0] > 0
    m.amp = False
    half = m.half()(im, size=128)
    assert head.stride.dtype == torch.float16 and half.pred[0].dtype == torch.float16 and half.pred[0].shape[0] > 0


# ---------------------------------------------------------------------------------------------------- hubconf
def test_hub_list_entry_points(monkeypatch):
    monkeypatch.setattr(torch.hub, "_get_cache_or_reload", lambda *a, **k: str(ROOT))  # list() has no local mode
    names = set(torch.hub.list("local/repo"))
    v61 = {f"yolov5{s}{p}" for s in "nsmlx" for p in ("", "6")} | {"custom"}
    attention = {p.stem.replace("-", "_") for p in (ROOT / "models").glob("*.yaml")} - v61
    assert {"yolov5n_NAM", "yolov5s_NAM", "yolov5n_SimAM"} <= attention
    assert names == v61 | attention and "_create" not in names


def test_hub_builds_from_yaml(n3):
    assert isinstance(n3, AutoShape) and isinstance(n3.model, Model) and n3.names == ["0", "1", "2"]
    assert n3.model.yaml_file == "yolov5n.yaml" and n3.model.model[-1].nc == 3 and not n3.model.training
    bare = hub_load("yolov5n_NAM", classes=2, autoshape=False, device="cpu")  # pretrained=False by default
    assert type(bare) is Model and bare.yaml_file == "yolov5n-NAM.yaml" and bare.names == ["0", "1"]
    assert any(type(m).__name__ == "NAMAttention" for m in bare.modules())


def test_hub_transfers_pretrained_weights_to_other_classes(bccd_ckpt, monkeypatch):
    monkeypatch.chdir(bccd_ckpt.parent)  # yolov5n.pt is there: nothing to download
    m = hub_load("yolov5n", classes=3, device="cpu")  # classes != 80: built from the yaml, weights transferred
    src = torch.load(bccd_ckpt, weights_only=False)["model"].float().state_dict()
    assert m.names == BCCD and isinstance(m.model, Model)
    for k, v in m.model.state_dict().items():
        if "anchors" not in k:
            torch.testing.assert_close(v, src[k], rtol=0, atol=0)


def test_attention_entry_point_transfers_the_official_weights_past_its_layer(bccd_ckpt, monkeypatch):
    monkeypatch.chdir(bccd_ckpt.parent)  # yolov5n.pt (nc=3) is there; yolov5n-NAM.pt is not
    m = hub_load("yolov5n_NAM", pretrained=True, classes=3, device="cpu", autoshape=False)
    src = torch.load(bccd_ckpt, weights_only=False)["model"].float().state_dict()
    dst = m.state_dict()
    shift = {i: i for i in range(24)} | {24: 25}  # NAMAttention inserted at 24: Detect moves from 24 to 25
    n = 0
    for k, v in src.items():
        i, rest = k.split(".", 2)[1:]
        if "anchors" not in k:
            torch.testing.assert_close(dst[f"model.{shift[int(i)]}.{rest}"], v, rtol=0, atol=0)
            n += 1
    assert n == len([k for k in src if "anchors" not in k]) and m.names == BCCD
    m80 = hub_load("yolov5n_NAM", pretrained=True, device="cpu", autoshape=False)  # default 80 classes: built too
    sd = m80.state_dict()
    assert isinstance(m80, Model) and m80.names == [str(i) for i in range(80)]
    torch.testing.assert_close(sd["model.25.m.0.weight"].shape[0], 3 * 85)  # Detect for 80 classes, fresh
    torch.testing.assert_close(sd["model.23.cv3.conv.weight"], src["model.23.cv3.conv.weight"], rtol=0, atol=0)


def test_missing_official_weights_fail_fast_offline(tmp_path, monkeypatch, no_network):
    monkeypatch.chdir(tmp_path)
    t = time.time()
    with pytest.raises(Exception, match=r"github\.com/ultralytics/yolov5/releases/download/v6\.1/yolov5s\.pt") as e:
        hub_load("yolov5s", device="cpu")
    assert time.time() - t < 5 and str(e.value).endswith(". " + SUFFIX)
    assert type(e.value) is Exception and isinstance(e.value.__cause__, FileNotFoundError)
    assert not list(tmp_path.iterdir())  # no partial download left
    with pytest.raises(Exception, match=r"weights not found: nosuchmodel\.pt\. Cache may be out of date"):
        hub_load("custom", path="nosuchmodel", device="cpu")  # nor a file, nor an official name: no download
    import hubconf

    with pytest.raises(Exception, match=r"no model yaml nosuchmodel\.yaml under .*\. Cache may be out of date"):
        hubconf._create("nosuchmodel", pretrained=False, device="cpu")


def test_verbose_false_quiets_the_logger(yolo_log):
    import hubconf  # torch.hub.load keeps a verbose argument for itself, so call the entry point directly

    level = LOGGER.level
    try:
        m = hubconf.yolov5n_SimAM(classes=1, autoshape=False, verbose=False, device="cpu")
        assert LOGGER.level == logging.WARNING and m.names == ["0"] and yolo_log == []
    finally:
        LOGGER.setLevel(level)  # setLevel, not an attribute write: it also clears the logger's level cache
