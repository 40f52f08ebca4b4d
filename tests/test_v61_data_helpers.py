"""v6.1 helpers that complete the import surface, part 2: small plots, the extra augmentations, dataset tools and
the webcam loader."""

from __future__ import annotations

import json
import math
import random
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn as nn
import yaml


# ---------------------------------------------------------------- plots


def test_hist2d_log_density_per_point():
    from utils.plots import hist2d

    d = hist2d([0, 0, 0, 1], [0, 0, 0, 1], 2)
    assert np.allclose(d, [math.log(3)] * 3 + [0.0])


def test_butter_lowpass_filtfilt_smooths_a_noisy_sine():
    from utils.plots import butter_lowpass_filtfilt

    t = np.arange(0, 1, 1e-3)
    clean = np.sin(2 * np.pi * 5 * t)
    noisy = clean + np.random.default_rng(0).normal(0, 0.5, t.size)
    y = butter_lowpass_filtfilt(noisy, cutoff=20, fs=1000, order=5)
    rms = lambda e: float(np.sqrt(np.mean(e ** 2)))  # noqa: E731
    assert y.shape == noisy.shape and rms(noisy - clean) > 0.45 and rms(y - clean) < 0.12


def test_plot_lr_scheduler_writes_png_and_leaves_the_optimizer_alone(tmp_path):
    from utils.general import one_cycle
    from utils.plots import plot_lr_scheduler

    w = nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([w], lr=0.1, momentum=0.9)
    w.grad = torch.ones(3)
    opt.step()  # creates a momentum buffer
    sched = torch.optim.lr_scheduler.LambdaLR(opt, one_cycle(1, 0.1, 10))
    buf = opt.state[w]["momentum_buffer"]
    before = (opt.param_groups[0]["lr"], sched.last_epoch, buf.clone(), w.detach().clone())
    out = plot_lr_scheduler(opt, sched, epochs=10, save_dir=tmp_path)
    assert out == tmp_path / "LR.png" and cv2.imread(str(out)) is not None
    assert opt.param_groups[0]["lr"] == before[0] and sched.last_epoch == before[1]
    assert opt.state[w]["momentum_buffer"] is buf and torch.equal(buf, before[2]) and torch.equal(w, before[3])


def test_val_targets_and_idetection_plots(tmp_path):
    from utils.plots import plot_targets_txt, plot_val_txt, profile_idetection

    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 600, (50, 2))
    np.savetxt(tmp_path / "val.txt", np.concatenate((xy, xy + 20, rng.uniform(0, 1, (50, 2))), 1))
    np.savetxt(tmp_path / "targets.txt", rng.uniform(0, 1, (50, 4)))
    frames = np.concatenate((np.arange(40)[:, None] * 0.1, rng.uniform(0, 50, (40, 6))), 1)
    np.savetxt(tmp_path / "frames_a.txt", frames)
    assert plot_val_txt(tmp_path / "val.txt") == (tmp_path / "hist2d.png", tmp_path / "hist1d.png")
    assert plot_targets_txt(tmp_path / "targets.txt") == tmp_path / "targets.jpg"
    assert profile_idetection(start=5, stop=30, labels=("iPhone",), save_dir=tmp_path) == \
        tmp_path / "idetection_profile.png"
    for f in "hist2d.png", "hist1d.png", "targets.jpg", "idetection_profile.png":
        assert cv2.imread(str(tmp_path / f)) is not None, f


# ---------------------------------------------------------------- augmentations


def test_hist_equalize_stretches_luma_in_either_channel_order():
    from utils.augmentations import hist_equalize

    ramp = np.tile(np.linspace(100, 120, 64, dtype=np.uint8), (64, 1))
    im = np.stack((ramp, ramp, ramp // 2), -1)  # low contrast RGB
    glob_eq = hist_equalize(im, clahe=False)
    assert glob_eq.shape == im.shape and np.ptp(glob_eq[..., 1]) > 200 > 20 >= np.ptp(im[..., 1])
    clahe = hist_equalize(im)
    assert np.ptp(im[..., 1]) < np.ptp(clahe[..., 1]) < np.ptp(glob_eq[..., 1])
    assert np.array_equal(hist_equalize(im[..., ::-1].copy(), bgr=True), clahe[..., ::-1])


def test_replicate_copies_the_smaller_half_of_the_boxes():
    from utils.augmentations import replicate

    random.seed(0)
    im = np.zeros((100, 100, 3), np.uint8)
    im[10:20, 10:20] = 7
    labels = np.array([[1, 0, 0, 90, 90], [3, 10, 10, 20, 20]], dtype=np.float32)
    im, out = replicate(im, labels)
    assert out.shape == (3, 5) and np.array_equal(out[:2], labels)
    c, x1, y1, x2, y2 = out[2].astype(int)
    assert c == 3 and (x2 - x1, y2 - y1) == (10, 10) and 0 <= x1 and x2 <= 100 and 0 <= y1 and y2 <= 100
    assert (im[y1:y2, x1:x2] == 7).all()


def test_cutout_paints_masks_and_drops_mostly_covered_labels():
    from utils.augmentations import cutout

    im = np.zeros((64, 64, 3), np.uint8)
    grid = np.array([[i, x, y, x + 8, y + 8] for i, (y, x) in enumerate((y, x) for y in range(0, 64, 8)
                                                                         for x in range(0, 64, 8))], np.float32)
    assert np.array_equal(cutout(im, grid, p=0.0), grid) and not im.any()
    dropped = 0
    for seed in range(5):
        random.seed(seed)
        im = np.zeros((64, 64, 3), np.uint8)
        kept = cutout(im, grid, p=1.0)
        painted = im.any(-1)
        assert 0.02 < painted.mean() < 1 and im[painted].min() >= 64 and im[painted].max() <= 191
        assert set(kept[:, 0]) <= set(grid[:, 0]) and np.array_equal(kept, grid[np.isin(grid[:, 0], kept[:, 0])])
        for c, x1, y1, x2, y2 in grid[~np.isin(grid[:, 0], kept[:, 0])].astype(int):
            assert painted[y1:y2, x1:x2].mean() >= 0.6  # a dropped label was at least 60 % covered
            dropped += 1
    assert dropped > 0


# ---------------------------------------------------------------- dataset tools


def test_create_folder_and_flatten_recursive(tmp_path):
    from utils.datasets import create_folder, flatten_recursive

    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "old.txt").write_text("x")
    assert create_folder(tmp_path / "new") == tmp_path / "new" and not any((tmp_path / "new").iterdir())
    (tmp_path / "ds" / "a").mkdir(parents=True)
    (tmp_path / "ds" / "b" / "c").mkdir(parents=True)
    (tmp_path / "ds" / "a" / "x.txt").write_text("1")
    (tmp_path / "ds" / "b" / "c" / "y.jpg").write_bytes(b"2")
    flat = flatten_recursive(tmp_path / "ds")
    assert flat == tmp_path / "ds_flat" and sorted(p.name for p in flat.iterdir()) == ["x.txt", "y.jpg"]
    assert (flat / "y.jpg").read_bytes() == b"2"


@pytest.fixture
def tiny(tmp_path):
    from utils.synthetic import tiny_dataset

    data = tiny_dataset(tmp_path, train=4, val=2, img_size=64)
    return data, yaml.safe_load(data.read_text())["path"]


def _label_rows(folder: Path) -> list[np.ndarray]:
    return [np.loadtxt(f, ndmin=2).reshape(-1, 5) for f in sorted(folder.glob("*.txt"))]


def test_extract_boxes_crops_every_label(tiny):
    from utils.datasets import extract_boxes

    root = Path(tiny[1])
    out = extract_boxes(root)
    rows = _label_rows(root / "labels" / "train") + _label_rows(root / "labels" / "val")
    crops = sorted(out.rglob("*.jpg"))
    assert out == root / "classifier" and len(crops) == sum(len(r) for r in rows) > 0
    im_file = sorted((root / "images" / "train").glob("*.jpg"))[0]
    lb = _label_rows(root / "labels" / "train")[0]
    if len(lb):
        h, w = cv2.imread(str(im_file)).shape[:2]
        c, x, y, bw, bh = lb[0]
        b = np.array([x * w, y * h, bw * w * 1.2 + 3, bh * h * 1.2 + 3])
        x1, y1, x2, y2 = np.array([b[0] - b[2] / 2, b[1] - b[3] / 2, b[0] + b[2] / 2, b[1] + b[3] / 2]).astype(int)
        crop = cv2.imread(str(out / str(int(c)) / f"{root.stem}_{im_file.stem}_0.jpg"))
        assert crop.shape[:2] == (min(y2, h) - max(y1, 0), min(x2, w) - max(x1, 0))


def test_dataset_stats_counts_per_split_and_writes_hub_files(tiny, yolo_log):
    from utils.datasets import dataset_stats

    data, root = tiny
    stats = dataset_stats(data, verbose=True, profile=True, hub=True)
    assert stats["nc"] == 5 and stats["test"] is None
    for split, n in ("train", 4), ("val", 2):
        rows = _label_rows(Path(root) / "labels" / split)
        counts = np.array([np.bincount(r[:, 0].astype(int), minlength=5) for r in rows])
        s = stats[split]
        assert s["instance_stats"] == {"total": int(counts.sum()), "per_class": counts.sum(0).tolist()}
        assert s["image_stats"] == {"total": n, "unlabelled": int((counts.sum(1) == 0).sum()),
                                    "per_class": (counts > 0).sum(0).tolist()}
        first = s["labels"][0]
        assert len(s["labels"]) == n and list(first) == [f"{split}_0000.jpg"]
        assert np.allclose(np.array(first[f"{split}_0000.jpg"]).reshape(-1, 5), rows[0], atol=6e-5)
    hub = Path(f"{root}-hub")
    assert json.loads((hub / "stats.json").read_text()) == stats
    ims = sorted((hub / "images").glob("*.jpg"))
    assert len(ims) == 6 and max(cv2.imread(str(ims[0])).shape[:2]) <= 512
    assert any(line.startswith("stats.npy times:") for line in yolo_log) and "{" in yolo_log


def test_dataset_stats_reads_a_zipped_dataset(tiny, tmp_path):
    from utils.datasets import dataset_stats

    data, root = tiny
    zdir = tmp_path / "z"
    zdir.mkdir()
    with zipfile.ZipFile(zdir / "shapes.zip", "w") as z:
        for f in Path(root).rglob("*"):
            if f.is_file() and f.suffix != ".cache":
                z.write(f, Path("shapes") / f.relative_to(root))
        z.writestr("shapes/shapes.yaml", yaml.safe_dump({"path": "../elsewhere", "train": "images/train",
                                                          "val": "images/val", "nc": 5, "names": list("abcde")}))
    stats = dataset_stats(zdir / "shapes.zip")
    assert stats["names"] == list("abcde") and stats["val"] == dataset_stats(data)["val"]


# ---------------------------------------------------------------- webcam


class _FakeCapture:
    def __init__(self, pipe):
        self.pipe, self.props, self.released = pipe, {}, False
        self.frames = [np.full((48, 64, 3), i, np.uint8) for i in (10, 20)]
        self.frames[0][:, :32] = 200  # left half bright: the mirror shows it on the right

    def set(self, prop, value):
        self.props[prop] = value

    def read(self):
        return (True, self.frames.pop(0)) if self.frames else (False, None)

    def release(self):
        self.released = True


def test_load_webcam_yields_mirrored_letterboxed_frames(monkeypatch, yolo_log):
    import utils.webcam
    from utils.datasets import LoadWebcam

    monkeypatch.setattr(utils.webcam.cv2, "VideoCapture", _FakeCapture)
    monkeypatch.setattr(utils.webcam.cv2, "waitKey", lambda ms: -1)
    cam = LoadWebcam("0", img_size=64, stride=32)
    assert cam.cap.pipe == 0 and cam.cap.props == {cv2.CAP_PROP_BUFFERSIZE: 3} and len(cam) == 0
    items = list(cam)
    assert [(p, s) for p, _, _, _, s in items] == [("webcam.jpg", "webcam 0: "), ("webcam.jpg", "webcam 1: ")]
    path, img, img0, cap, s = items[0]
    assert cap is None and img.shape == (3, 64, 64) and img.flags.c_contiguous
    assert (img0[:, 32:] == 200).all() and (img0[:, :32] == 10).all()  # mirrored
    assert (img[:, 8:56, 32:] == 200).all() and (img[:, :8] == 114).all()  # letterboxed: 8 px grey bands
    assert cam.cap.released and "Camera Error 0" in yolo_log[-1]
    monkeypatch.setattr(utils.webcam.cv2, "waitKey", lambda ms: ord("q"))
    cam = LoadWebcam(1)
    with pytest.raises(StopIteration):
        next(iter(cam))
    assert cam.cap.released and cam.cap.frames  # quit before reading
