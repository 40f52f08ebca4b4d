"""detect.py end to end (tiny random-weight model, 160 px) and its inference loaders."""

from __future__ import annotations

import datetime
import re
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import detect
from models.yolo import Model
from tests.conftest import ROOT
from utils.checkpoint import load_checkpoint
from utils.inference_loaders import LoadImages, LoadStreams

NAMES = ["person", "bus", "dog"]
IMG_LINE = re.compile(r"^image (\d+)/(\d+) (/.+): (\d+)x(\d+) ((?:\d+ \w+, )*)Done\. \(\d+\.\d{3}s\)$")
VID_LINE = re.compile(r"^video \d+/\d+ \((\d+)/(\d+)\) (/.+): (\d+)x(\d+) ((?:\d+ \w+, )*)Done\. \(\d+\.\d{3}s\)$")
SPEED = re.compile(r"^Speed: \d+\.\dms pre-process, \d+\.\dms inference, \d+\.\dms NMS per image at shape "
                   r"\(1, 3, 160, 160\)$")
VIDEO = "videos/people_walking_640x360.mp4"


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one intra-op thread


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """A yolov5n (nc=3, random weights) saved as a stripped v6.1 checkpoint."""
    torch.manual_seed(0)
    model = Model(ROOT / "models" / "yolov5n.yaml", nc=3)
    model.names = NAMES
    f = tmp_path_factory.mktemp("weights") / "n3.pt"
    torch.save({"epoch": -1, "best_fitness": None, "model": model.half(), "ema": None, "updates": None,
                "optimizer": None, "wandb_id": None, "date": datetime.datetime.now().isoformat()}, f)
    return f


def run(weights: Path, tmp_path: Path, source, **kw) -> Path:
    opts = dict(imgsz=160, conf_thres=0.001, max_det=5, device="cpu", project=tmp_path, name="exp")
    opts.update(kw)
    return detect.run(weights=weights, source=source, **opts)


def counted_names(counts: str) -> set[str]:
    """Class names in a log line's ``'2 persons, 1 bus, '`` part (v6.1 pluralises with a bare 's': 2 buss)."""
    out = set()
    for part in counts.split(", ")[:-1]:
        n, name = part.split(" ")
        out.add(name[:-1] if int(n) > 1 else name)
    return out


def write_clip(src: Path, dst: Path, n: int, fps: float = 10, fourcc: str = "MJPG", size=None) -> None:
    """The first ``n`` frames of ``src`` re-encoded (optionally resized) into ``dst``."""
    cap = cv2.VideoCapture(str(src))
    out = None
    for _ in range(n):
        ok, im = cap.read()
        assert ok
        im = cv2.resize(im, size) if size else im
        out = out or cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*fourcc), fps, im.shape[1::-1])
        out.write(im)
    out.release()
    cap.release()


def video_info(f: Path) -> tuple[int, float, int, int]:
    """(frames actually decoded, fps, width, height) of a video file."""
    cap = cv2.VideoCapture(str(f))
    assert cap.isOpened(), f
    info = cap.get(cv2.CAP_PROP_FPS), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return (n, *info)


def test_images_labels_crops_and_log(weights, tmp_path, shared_data, yolo_log):
    d = run(weights, tmp_path, shared_data / "images", save_txt=True, save_conf=True, save_crop=True)
    assert d == tmp_path / "exp"
    assert cv2.imread(str(d / "bus.jpg")).shape == (1080, 810, 3)
    assert cv2.imread(str(d / "zidane.jpg")).shape == (720, 1280, 3)

    lines = [m for m in map(IMG_LINE.match, yolo_log) if m]
    assert [(m[1], m[2], Path(m[3]).name, m[4], m[5]) for m in lines] == [
        ("1", "2", "bus.jpg", "160", "128"), ("2", "2", "zidane.jpg", "96", "160")]  # h x w letterboxed
    assert Path(lines[0][3]) == (shared_data / "images" / "bus.jpg").resolve()
    assert all(m[6] and counted_names(m[6]) <= set(NAMES) for m in lines)
    assert any(SPEED.match(x) for x in yolo_log)
    assert any(x.startswith("Results saved to ") and str(d) in x for x in yolo_log)
    assert f"2 labels saved to {d / 'labels'}" in yolo_log

    for stem in ("bus", "zidane"):
        rows = (d / "labels" / f"{stem}.txt").read_text().splitlines()
        assert 0 < len(rows) <= 5
        vals = np.array([[float(v) for v in r.split()] for r in rows])
        assert vals.shape[1] == 6 and set(vals[:, 0]) <= {0, 1, 2}
        assert (vals[:, 1:5] >= 0).all() and (vals[:, 1:5] <= 1).all()
        assert (np.diff(vals[:, 5]) >= 0).all()  # lowest confidence first
        assert all(re.fullmatch(r"\d( \d+(\.\d+)?(e-\d+)?){5}", r) for r in rows), rows  # %g, no padding
    crops = sorted(p.relative_to(d / "crops") for p in (d / "crops").rglob("*.jpg"))
    assert crops and {p.parts[0] for p in crops} <= set(NAMES)
    assert {re.sub(r"\d*$", "", p.stem) for p in crops} == {"bus", "zidane"}  # bus.jpg, bus2.jpg, ...


def test_video_output_matches_source(weights, tmp_path, shared_data, yolo_log):
    d = run(weights, tmp_path, shared_data / VIDEO, save_txt=True)
    assert video_info(d / "people_walking_640x360.mp4") == (80, 10.0, 640, 360)
    frames = [int(m[1]) for m in map(VID_LINE.match, yolo_log) if m]
    assert frames == list(range(1, 81))
    assert [x.split(" (")[0] for x in yolo_log if x.startswith("video ")] == ["video 1/1"] * 80
    labels = {p.name for p in (d / "labels").glob("*.txt")}
    assert "people_walking_640x360_1.txt" in labels and "people_walking_640x360_80.txt" in labels


def test_vid_stride_reads_every_nth_frame_and_keeps_the_duration(weights, tmp_path, shared_data, yolo_log):
    d = run(weights, tmp_path, shared_data / VIDEO, vid_stride=3)
    n, fps, w, h = video_info(d / "people_walking_640x360.mp4")
    assert (n, w, h) == (26, 640, 360) and fps == pytest.approx(10.0 / 3, abs=0.01)  # 80 // 3 frames, still 8 s
    frames = [(int(m[1]), int(m[2])) for m in map(VID_LINE.match, yolo_log) if m]
    assert frames == [(i, 26) for i in range(1, 27)]
    from utils.general import InputError

    with pytest.raises(InputError, match="--vid-stride must be at least 1, got 0"):
        run(weights, tmp_path, shared_data / VIDEO, vid_stride=0, name="bad")


def test_glob_hide_labels_and_headless_view_img(weights, tmp_path, shared_data, yolo_log, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    d = run(weights, tmp_path, f"{shared_data / 'images'}/*.jpg", hide_labels=True, view_img=True)
    assert sorted(p.name for p in d.glob("*.jpg")) == ["bus.jpg", "zidane.jpg"]
    assert len([x for x in yolo_log if "does not support cv2.imshow" in x]) == 1
    plain = run(weights, tmp_path, shared_data / "images" / "bus.jpg", name="plain")
    assert not np.array_equal(cv2.imread(str(d / "bus.jpg")), cv2.imread(str(plain / "bus.jpg")))  # labels drawn


def test_classes_filter_hide_conf_and_update(weights, tmp_path, shared_data):
    w = tmp_path / "w.pt"
    w.write_bytes(weights.read_bytes())
    d = run(w, tmp_path, shared_data / "images", classes=[1], save_txt=True, hide_conf=True, max_det=20,
            update=True)
    rows = [r for f in (d / "labels").glob("*.txt") for r in f.read_text().splitlines()]
    assert rows and {r.split()[0] for r in rows} == {"1"} and all(len(r.split()) == 5 for r in rows)
    ckpt = load_checkpoint(w, trusted=True)
    assert ckpt["epoch"] == -1 and ckpt["optimizer"] is None


def test_bad_images_reported_and_skipped(weights, tmp_path, shared_data, yolo_log):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a_corrupt.jpg").write_bytes(b"\xff\xd8 this is not really a jpeg" * 10)
    (src / "b_empty.jpg").write_bytes(b"")
    cv2.imwrite(str(src / "c_good.jpg"), cv2.resize(cv2.imread(str(shared_data / "images" / "zidane.jpg")), (320, 180)))
    d = run(weights, tmp_path, src)
    warn = [x for x in yolo_log if x.startswith("WARNING: skipping image")]
    assert len(warn) == 2
    assert "a_corrupt.jpg" in warn[0] and "not a decodable image" in warn[0]
    assert "b_empty.jpg" in warn[1] and "empty file" in warn[1]
    assert [m[3] for m in map(IMG_LINE.match, yolo_log) if m] == [str(src / "c_good.jpg")]
    assert [p.name for p in d.glob("*.jpg")] == ["c_good.jpg"]


def test_missing_or_refused_sources(weights, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere\.jpg.*--source"):
        run(weights, tmp_path, tmp_path / "nowhere.jpg")
    if not (detect.ROOT / "data" / "images").exists():  # the default source is not in this repo
        with pytest.raises(FileNotFoundError, match=r"data/images does not exist.*pass --source.*shared/data/images"):
            detect.run(weights=weights, device="cpu", project=tmp_path)
    if not (detect.ROOT / "yolov5s.pt").exists():  # default weights, absent offline
        with pytest.raises(FileNotFoundError, match=r"weights not found: .*yolov5s\.pt"):
            detect.run(source=tmp_path, project=tmp_path)
    with pytest.raises(ValueError, match="never downloads"):
        run(weights, tmp_path, "https://example.com/bus.jpg")
    with pytest.raises(FileNotFoundError, match="No images or videos found"):
        LoadImages(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"ERROR: .*gone does not exist"):
        LoadImages(tmp_path / "gone")
    with pytest.raises(ValueError, match="YouTube"):
        LoadStreams("https://www.youtube.com/watch?v=abc")
    assert not list(tmp_path.glob("exp*"))  # failed before creating a results folder


def test_truncated_videos(weights, tmp_path, shared_data, yolo_log):
    src = tmp_path / "src"
    src.mkdir()
    mp4 = (shared_data / VIDEO).read_bytes()
    (src / "a_half.mp4").write_bytes(mp4[: len(mp4) // 2])  # index at the end: cannot be opened at all
    write_clip(shared_data / VIDEO, tmp_path / "clip.avi", 20)
    avi = (tmp_path / "clip.avi").read_bytes()
    (src / "b_half.avi").write_bytes(avi[: len(avi) // 2])  # header says 20 frames, about 10 decode
    d = run(weights, tmp_path, src)
    assert any("skipping video" in x and "a_half.mp4" in x for x in yolo_log)
    read = [m for m in map(VID_LINE.match, yolo_log) if m and m[3].endswith("b_half.avi")]
    assert 0 < len(read) < 20 and read[0][2] == "20"
    assert any(f"ended after {len(read)} of the 20 frames" in x for x in yolo_log)
    assert video_info(d / "b_half.mp4")[:2] == (len(read), 10.0)
    assert not (d / "a_half.mp4").exists()


def test_interrupt_mid_video_leaves_playable_file(weights, tmp_path, shared_data, monkeypatch):
    calls = []
    nms = detect.non_max_suppression

    def interrupting_nms(*args, **kw):
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt
        return nms(*args, **kw)

    monkeypatch.setattr(detect, "non_max_suppression", interrupting_nms)
    with pytest.raises(KeyboardInterrupt):
        run(weights, tmp_path, shared_data / VIDEO)
    assert video_info(tmp_path / "exp" / "people_walking_640x360.mp4") == (5, 10.0, 640, 360)


def test_stream_list_with_a_video_file(weights, tmp_path, shared_data, yolo_log):
    clip = tmp_path / "clip.avi"
    write_clip(shared_data / VIDEO, clip, 12, fps=30, size=(320, 180))
    (tmp_path / "streams.txt").write_text(f"{clip}\n\n")
    t = time.time()
    d = run(weights, tmp_path, tmp_path / "streams.txt", save_txt=True)
    assert time.time() - t < 30
    assert f"1/1: {clip}...  Success (12 frames 320x180 at 30.00 FPS)" in yolo_log
    per_frame = [x for x in yolo_log if re.fullmatch(r"0: 96x160 (\d+ \w+, )*Done\. \(\d+\.\d{3}s\)", x)]
    assert per_frame
    assert not list(d.glob("*.mp4"))  # a .txt stream list is not saved as video
    assert all(re.fullmatch(r"clip_\d+\.txt", p.name) for p in (d / "labels").glob("*.txt"))


def test_visualize_passes_a_folder_per_image(weights, tmp_path, shared_data, monkeypatch):
    import models.yolo

    seen = []
    monkeypatch.setattr(models.yolo, "feature_visualization", lambda x, t, i, save_dir: seen.append(save_dir))
    d = run(weights, tmp_path, shared_data / "images", visualize=True, nosave=True)
    assert {Path(s) for s in seen} == {d / "bus", d / "zidane"} and (d / "bus").is_dir()
    assert not list(d.glob("*.jpg"))  # --nosave


def test_load_images_order_modes_and_strings(tmp_path, shared_data):
    write_clip(shared_data / VIDEO, tmp_path / "v.avi", 3)
    cv2.imwrite(str(tmp_path / "z.jpg"), np.zeros((90, 200, 3), np.uint8))
    ds = LoadImages(tmp_path, img_size=160, stride=32)
    out = [(s, img.shape, img0.shape, ds.mode, cap is None) for _, img, img0, cap, s in ds]
    img, vid = str(tmp_path / "z.jpg"), str(tmp_path / "v.avi")
    assert out[0] == (f"image 1/2 {img}: ", (3, 96, 160), (90, 200, 3), "image", True)  # images before videos
    assert [o[0] for o in out[1:]] == [f"video 2/2 ({k}/3) {vid}: " for k in (1, 2, 3)]
    assert all(o[3] == "video" and not o[4] and o[2] == (360, 640, 3) for o in out[1:])
    assert len(ds) == 2 and len(list(ds)) == 4  # iterable again


def test_load_streams_shapes_differ(tmp_path, shared_data, yolo_log):
    write_clip(shared_data / VIDEO, tmp_path / "wide.avi", 30, fps=30, size=(320, 180))
    write_clip(shared_data / VIDEO, tmp_path / "tall.avi", 30, fps=30, size=(180, 320))
    (tmp_path / "s.txt").write_text(f"{tmp_path / 'wide.avi'}\n{tmp_path / 'tall.avi'}\n")
    ds = LoadStreams(str(tmp_path / "s.txt"), img_size=160, stride=32)
    try:
        assert "WARNING: Stream shapes differ. For optimal performance supply similarly-shaped streams." in yolo_log
        assert f"2/2: {tmp_path / 'tall.avi'}...  Success (30 frames 180x320 at 30.00 FPS)" in yolo_log
        sources, img, img0, cap, s = next(iter(ds))
        assert img.shape == (2, 3, 160, 160) and [x.shape for x in img0] == [(180, 320, 3), (320, 180, 3)]
        assert (len(ds), ds.mode, cap, s) == (2, "stream", None, "")
    finally:
        ds.close()
    assert not any(t.is_alive() for t in ds.threads)


def test_parse_opt_defaults(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["detect.py", "--img", "320"])
    opt = detect.parse_opt()
    assert opt.imgsz == [320, 320] and Path(opt.weights).name == "yolov5s.pt"
    assert (opt.conf_thres, opt.iou_thres, opt.max_det, opt.line_thickness) == (0.25, 0.45, 1000, 3)
    assert (opt.nms, opt.soft_sigma, opt.cam_method) == ("nms", 0.5, "eigen")  # v6.1's hard NMS
    assert Path(opt.source).as_posix().endswith("data/images") and Path(opt.project).as_posix().endswith("runs/detect")
    monkeypatch.setattr(sys, "argv", ["detect.py", "--imgsz", "320", "256", "--classes", "0", "2"])
    opt = detect.parse_opt()
    assert opt.imgsz == [320, 256] and opt.classes == [0, 2]
    monkeypatch.setattr(sys, "argv", ["detect.py", "--cam-method", "gradpp", "--nms", "soft-gaussian"])
    opt = detect.parse_opt()
    assert (opt.cam_method, opt.nms) == ("gradpp", "soft-gaussian")


def test_onnx_weights_full_letterbox_and_names(weights, tmp_path, shared_data, yolo_log):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    export = pytest.importorskip("export")
    w = tmp_path / "n3.pt"
    w.write_bytes(weights.read_bytes())
    export.run(weights=w, imgsz=(128, 128), include=("onnx",))  # 128: also a multiple of 64, the bare-export stride
    src = shared_data / "images" / "bus.jpg"
    run(tmp_path / "n3.onnx", tmp_path, src, conf_thres=0.0001, imgsz=128)  # stride, names from its metadata
    line = next(m for m in map(IMG_LINE.match, yolo_log) if m)
    assert (line[4], line[5]) == ("128", "128")  # no minimal padding for exports (fixed input shape)
    assert line[6] and counted_names(line[6]) <= set(NAMES)

    m = onnx.load(str(tmp_path / "n3.onnx"))
    del m.metadata_props[:]  # an export without names: the --data yaml names the classes
    onnx.save(m, str(tmp_path / "bare.onnx"))
    (tmp_path / "abc.yaml").write_text("nc: 3\nnames: [ant, bee, cat]\n")
    yolo_log.clear()
    run(tmp_path / "bare.onnx", tmp_path, src, conf_thres=0.0001, imgsz=128, data=tmp_path / "abc.yaml")
    line = next(m for m in map(IMG_LINE.match, yolo_log) if m)
    assert line[6] and counted_names(line[6]) <= {"ant", "bee", "cat"}


def test_default_source_is_the_shipped_sample_images(weights, tmp_path):
    """``python detect.py`` with no --source reads data/images: two drawn sample images, shipped with the repo."""
    from utils.synthetic import SAMPLE_IMAGES, sample_images
    shipped = {f.name: cv2.imread(str(f)) for f in sorted((ROOT / "data" / "images").glob("*.jpg"))}
    assert sorted(shipped) == sorted(SAMPLE_IMAGES)
    for f in sample_images(tmp_path / "regen"):  # the generator reproduces them (up to JPEG codec differences)
        im = cv2.imread(str(f))
        assert im.shape[1::-1] == SAMPLE_IMAGES[f.name] and im.shape == shipped[f.name].shape
        assert np.abs(im.astype(np.float32) - shipped[f.name]).mean() < 2.0
    save_dir = Path(detect.run(weights=weights, imgsz=[160], device="cpu", project=tmp_path / "det", name="exp"))
    assert sorted(f.name for f in save_dir.glob("*.jpg")) == sorted(SAMPLE_IMAGES)
