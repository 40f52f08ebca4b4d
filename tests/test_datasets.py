"""utils/datasets.py, utils/labels.py, utils/dataset_yaml.py and utils/synthetic.py.

BCCD is read from ../shared at run time (skipped when absent) and never written to; label caches for it go to a
per-test-session fallback folder (``YOLOV5_CACHE_DIR``). Small datasets are generated into ``tmp_path``.
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

import utils.labels as labels_mod
from tests.conftest import ROOT, SHARED
from utils.dataset_yaml import DatasetConfigError, check_dataset
from utils.datasets import LoadImagesAndLabels, create_dataloader, img2label_paths
from utils.synthetic import generate_dataset

BCCD = SHARED / "data" / "bccd"
HYP = yaml.safe_load((ROOT / "data" / "hyps" / "hyp.scratch-low.yaml").read_text())


@pytest.fixture(scope="session", autouse=True)
def _cache_dir(tmp_path_factory):
    """Caches of read-only datasets go to a temporary folder, not to <repo>/runs/.cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("YOLOV5_CACHE_DIR", str(tmp_path_factory.mktemp("label-caches")))
        yield


@pytest.fixture
def bccd() -> Path:
    if not (BCCD / "bccd.yaml").is_file():
        pytest.skip(f"BCCD not found at {BCCD} (../shared is absent)")
    return BCCD


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> Path:
    """A small synthetic dataset (12 train + 4 val images, 80-112 px); do not modify (copy it first)."""
    return generate_dataset(tmp_path_factory.mktemp("tiny") / "shapes", train=12, val=4, img_size=96, size_jitter=16,
                            max_objects=3, empty_fraction=0.1)


def test_img2label_paths_last_images_dir():
    sep = "/"
    assert img2label_paths([f"{sep}d{sep}images{sep}a{sep}images{sep}x.1.jpg"]) == [
        f"{sep}d{sep}images{sep}a{sep}labels{sep}x.1.txt"]
    assert img2label_paths(["/d/img/x.png"]) == ["/d/img/x.txt"]


def test_bccd_train_labels_and_shapes(bccd, yolo_log):
    ds = LoadImagesAndLabels(str(bccd / "images" / "train"), 320, 16, nc=3)
    assert ds.n == len(ds) == 291 and sum(len(x) for x in ds.labels) == 3953
    assert (ds.shapes == [640, 480]).all() and ds.shapes.dtype == np.float64
    lb = np.concatenate(ds.labels)
    assert lb.shape[1] == 5 and (lb[:, 1:] > 0).all() and (lb[:, 1:] <= 1).all() and set(lb[:, 0]) == {0, 1, 2}
    assert ds.label_files[0].endswith("labels/train/BloodImage_00000.txt")
    assert list(ds.batch[:17]) == [0] * 16 + [1] and list(ds.indices) == list(range(291))
    assert not list((bccd / "labels").glob("*.cache")), "must never write into ../shared"
    assert any("291 found, 0 missing, 0 empty, 0 corrupt" in x for x in yolo_log)
    single = LoadImagesAndLabels(str(bccd / "images" / "train"), 320, 16, single_cls=True, nc=1)  # as train.py
    assert sum(len(x) for x in single.labels) == 3953 and all((x[:, 0] == 0).all() for x in single.labels)


def test_bccd_rect_batch_shapes(bccd):
    ds = LoadImagesAndLabels(str(bccd / "images" / "train"), 320, 16, rect=True, stride=32, pad=0.5)
    # all images 640x480: h/w = 0.75 < 1 -> shape [0.75, 1]; ceil(shape * 320 / 32 + 0.5) * 32
    expected = [math.ceil(0.75 * 320 / 32 + 0.5) * 32, math.ceil(1 * 320 / 32 + 0.5) * 32]
    assert expected == [256, 352]
    assert ds.batch_shapes.shape == (math.ceil(291 / 16), 2) and (ds.batch_shapes == expected).all()
    assert not ds.mosaic


def test_getitem_letterboxed_maps_back_to_labels(bccd):
    ds = LoadImagesAndLabels(str(bccd / "images" / "val"), 320, 16, rect=True, pad=0.5)
    img, labels, path, shapes = ds[0]
    assert img.shape == (3, 256, 352) and img.dtype == torch.uint8 and img.is_contiguous()
    (h0, w0), ((rh, rw), (padw, padh)) = shapes
    assert (h0, w0) == (480, 640) and (rh, rw) == (0.5, 0.5) and (padw, padh) == (16.0, 8.0)
    assert labels.shape[1] == 6 and (labels[:, 0] == 0).all() and path == ds.img_files[0]
    x = (labels[:, 2] * 352 - padw) / (rw * w0)  # back to the original normalised centre
    np.testing.assert_allclose(x.numpy(), ds.labels[0][:, 1], atol=2e-3)
    np.testing.assert_array_equal(labels[:, 1].numpy(), ds.labels[0][:, 0])


def test_getitem_mosaic_and_mixup(bccd):
    ds = LoadImagesAndLabels(str(bccd / "images" / "train"), 256, 4, augment=True,
                             hyp={**HYP, "mixup": 1.0, "flipud": 0.5})
    assert ds.mosaic and ds.mosaic_border == [-128, -128]
    random.seed(0), np.random.seed(0)
    for i in range(3):
        img, labels, _, shapes = ds[i]
        assert img.shape == (3, 256, 256) and shapes is None and len(labels) > 0
        assert (labels[:, 2:] >= 0).all() and (labels[:, 2:] <= 1).all()


def test_collate_fn_and_quad(bccd):
    ds = LoadImagesAndLabels(str(bccd / "images" / "val"), 128, 4)
    batch = [ds[i] for i in range(4)]
    imgs, targets, paths, shapes = LoadImagesAndLabels.collate_fn(batch)
    assert imgs.shape == (4, 3, 128, 128) and targets.shape == (sum(len(b[1]) for b in batch), 6)
    assert targets[:, 0].tolist() == sum([[float(i)] * len(b[1]) for i, b in enumerate(batch)], [])
    assert len(paths) == len(shapes) == 4
    for seed in 0, 3:  # both quad modes (upsample / 2x2 tile)
        random.seed(seed)
        imgs4, t4, p4, _ = LoadImagesAndLabels.collate_fn4([ds[i] for i in range(4)])
        assert imgs4.shape == (1, 3, 256, 256) and (t4[:, 0] == 0).all() and len(p4) == 1
        assert (t4[:, 2:] >= 0).all() and (t4[:, 2:] <= 1).all()


@pytest.mark.parametrize("workers", [0, 2])
def test_infinite_dataloader_epochs(tiny, workers):
    torch.manual_seed(0)
    loader, ds = create_dataloader(str(tiny / "images" / "train"), 64, 4, 32, workers=workers, shuffle=True)
    assert type(loader).__name__ == "InfiniteDataLoader" and len(loader) == 3 and loader.num_workers == workers
    epochs, iterators = [], set()
    for _ in range(2):
        epochs.append([p for _, _, paths, _ in loader for p in paths])
        iterators.add(id(loader._epoch_iterator))
    assert all(sorted(e) == sorted(ds.img_files) for e in epochs) and epochs[0] != epochs[1]
    assert len(iterators) == 1  # one iterator (and one set of worker processes) for all epochs
    torch.manual_seed(0)
    again, _ = create_dataloader(str(tiny / "images" / "train"), 64, 4, 32, workers=0, shuffle=True)
    assert [p for _, _, paths, _ in again for p in paths] == epochs[0]  # seeded shuffle is reproducible


def test_label_cache_created_reused_rebuilt(tiny, tmp_path, monkeypatch, yolo_log):
    import shutil

    root = tmp_path / "ds"
    shutil.copytree(tiny, root, ignore=shutil.ignore_patterns("*.cache"))
    cache = root / "labels" / "train.cache"
    ds = LoadImagesAndLabels(str(root / "images" / "train"), 64, 4)
    assert cache.is_file() and any(f"New cache created: {cache}" in x for x in yolo_log)
    c = labels_mod.read_label_cache(cache)
    assert c["version"] == labels_mod.CACHE_VERSION and c["results"][-1] == 12 and set(ds.img_files) <= set(c)
    assert len(c["hash"]) == 32

    def no_scan(*a, **k):
        raise AssertionError("rescanned although the cache is valid")

    monkeypatch.setattr(labels_mod, "scan_labels", no_scan)
    LoadImagesAndLabels(str(root / "images" / "train"), 64, 4)  # reused
    assert any(f"Scanning '{cache}' images and labels..." in x for x in yolo_log)
    with open(root / "labels" / "train" / "train_0000.txt", "a") as f:
        f.write("0 0.5 0.5 0.1 0.1\n")  # the summed file size changes -> hash differs
    with pytest.raises(AssertionError, match="rescanned"):
        LoadImagesAndLabels(str(root / "images" / "train"), 64, 4)


def test_image_cache_ram_and_disk(tiny, tmp_path):
    import shutil

    root = tmp_path / "ds"
    shutil.copytree(tiny, root, ignore=shutil.ignore_patterns("*.cache"))
    ram = LoadImagesAndLabels(str(root / "images" / "val"), 64, 2, cache_images="ram")
    assert all(x is not None and max(x.shape[:2]) == 64 for x in ram.imgs)
    disk = LoadImagesAndLabels(str(root / "images" / "val"), 64, 2, cache_images="disk")
    assert all(p.is_file() and p.parent == root / "images" / "val_npy" for p in disk.img_npy)
    assert disk.load_image(0)[1] == ram.load_image(0)[1]  # original (h0, w0) from the npy path too
    assert np.array_equal(disk[1][0], ram[1][0])


def test_list_file_source_and_its_cache(tiny, tmp_path):
    import shutil

    root = tmp_path / "ds"
    shutil.copytree(tiny, root, ignore=shutil.ignore_patterns("*.cache"))
    (root / "train.txt").write_text(f"./images/train/train_0001.jpg\n{root}/images/train/train_0000.jpg\nnotes.md\n")
    ds = LoadImagesAndLabels(str(root / "train.txt"), 64, 4)
    assert ds.img_files == [str(root / "images/train/train_0000.jpg"), str(root / "images/train/train_0001.jpg")]
    assert (root / "train.cache").is_file() and not (root / "labels" / "train.cache").exists()


def test_read_only_dataset_disk_cache_goes_to_fallback(bccd, tmp_path, monkeypatch):
    monkeypatch.setenv("YOLOV5_CACHE_DIR", str(tmp_path))
    ds = LoadImagesAndLabels(str(bccd / "images" / "val"), 64, 16, cache_images="disk")
    assert all(p.is_file() and p.parent.parent == tmp_path and p.parent.name.endswith("-val_npy") for p in ds.img_npy)
    assert not (bccd / "images" / "val_npy").exists() and list(tmp_path.glob("*-val.cache"))


def _jpeg(path: Path, w: int = 64, h: int = 48) -> bytes:
    import cv2

    im = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", im)[1].tobytes()


def test_bad_inputs_reported_and_valid_data_kept(tmp_path, yolo_log):
    import cv2

    img_dir, lb_dir = tmp_path / "images" / "train", tmp_path / "labels" / "train"
    img_dir.mkdir(parents=True), lb_dir.mkdir(parents=True)
    good = _jpeg(img_dir)
    files = {"good.jpg": good, "nolabel.jpg": good, "empty.jpg": good, "trunc_ok.jpg": good[:-64],
             "zero.jpg": b"", "text.jpg": b"0 0.5 0.5 0.1 0.1\n", "trunc_bad.jpg": good[:200]}
    for name, data in files.items():
        (img_dir / name).write_bytes(data)
    cv2.imwrite(str(img_dir / "tiny.png"), np.zeros((5, 5, 3), np.uint8))
    rows = ["0 0.5 0.5 0.2 0.2",  # 1 valid
            "1 0.2 0.3 0.1",  # 2 four fields
            "2 1.5 0.5 0.1 0.1",  # 3 out of range
            "7 0.5 0.5 0.1 0.1",  # 4 class >= nc
            "1 abc 0.5 0.1 0.1",  # 5 non-numeric
            "0 0.5 0.5 0.2 0.2",  # 6 duplicate of 1
            "1 0.3 0.3 0.1 0.2",  # 7 valid
            "2 0.1 0.1 0.2 0.1 0.2 0.2 0.1 0.2",  # 8 valid polygon
            "1 -0.3 0.3 0.1 0.2",  # 9 negative
            "1 0.3 0.3 0 0.2",  # 10 zero size
            "1.5 0.3 0.3 0.1 0.2"]  # 11 non-integer class
    (lb_dir / "good.txt").write_text("\n".join(rows) + "\n")
    (lb_dir / "empty.txt").write_text("")
    for name in "trunc_ok", "zero", "text", "trunc_bad", "tiny":
        (lb_dir / f"{name}.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}

    ds = LoadImagesAndLabels(str(img_dir), 64, 4, nc=3)
    log = "\n".join(yolo_log)
    names = sorted(Path(f).name for f in ds.img_files)
    assert names == ["empty.jpg", "good.jpg", "nolabel.jpg", "trunc_ok.jpg"]
    for name, reason in [("zero.jpg", "empty file"), ("text.jpg", "not an image"), ("trunc_bad.jpg", "undecodable"),
                         ("tiny.png", "<10 pixels")]:
        assert any(str(img_dir / name) in x and "ignoring corrupt image" in x and reason in x for x in yolo_log), name
    assert any(str(img_dir / "trunc_ok.jpg") in x and "no end marker" in x for x in yolo_log)
    good_txt = str(lb_dir / "good.txt")
    for line, reason in [(2, "5 columns"), (3, "out of bounds"), (4, "class 7 >= nc 3"), (5, "non-numeric"),
                         (9, "negative"), (10, "zero-size"), (11, "non-integer class")]:
        assert any(f"{good_txt}:{line}: label row ignored" in x and reason in x for x in yolo_log), line
    assert f"{good_txt}: 1 duplicate labels removed" in log
    assert "3 found, 1 missing, 1 empty, 4 corrupt, 7 label rows ignored, 1 duplicate labels removed" in log
    i = ds.img_files.index(str(img_dir / "good.jpg"))
    np.testing.assert_allclose(ds.labels[i], [[0, 0.5, 0.5, 0.2, 0.2], [1, 0.3, 0.3, 0.1, 0.2],
                                              [2, 0.15, 0.15, 0.1, 0.1]], atol=1e-6)
    assert len(ds.segments[i]) == 3  # polygon file: one segment per kept row
    assert len(ds.labels[ds.img_files.index(str(img_dir / "nolabel.jpg"))]) == 0
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".cache"}
    assert after == before, "user files must not be modified"

    yolo_log.clear()  # reuse: the cached warnings are logged again
    ds2 = LoadImagesAndLabels(str(img_dir), 64, 4, augment=True, hyp={**HYP, "copy_paste": 1.0}, nc=3)
    assert any("ignoring corrupt image" in x and "zero.jpg" in x for x in yolo_log)
    assert any(f"{good_txt}:4: label row ignored" in x for x in yolo_log)
    random.seed(0)
    for k in range(len(ds2)):  # mosaics with segments and copy-paste work on the kept data
        img, labels, _, _ = ds2[k]
        assert img.shape == (3, 64, 64) and ((labels[:, 2:] >= 0) & (labels[:, 2:] <= 1)).all()


def test_missing_dataset_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        LoadImagesAndLabels(str(tmp_path / "nowhere" / "images"), 64)
    (tmp_path / "images").mkdir()
    with pytest.raises(FileNotFoundError, match="No images found"):
        LoadImagesAndLabels(str(tmp_path / "images"), 64)


def test_check_dataset_bccd_resolves_yaml_relative(bccd):
    d = check_dataset(bccd / "bccd.yaml")
    assert d["train"] == str((bccd / "images" / "train").resolve()) and Path(d["train"]).is_absolute()
    assert d["val"] == str((bccd / "images" / "val").resolve())
    assert d["nc"] == 3 and d["names"] == ["RBC", "WBC", "Platelets"] and d["path"] == str(bccd.resolve())


def test_check_dataset_errors(tmp_path):
    f = tmp_path / "d.yaml"
    f.write_text("path: ./data\ntrain: images/train\nval: images/val\nnc: 2\ndownload: https://x/y.zip\n")
    with pytest.raises(FileNotFoundError) as e:
        check_dataset(f)
    assert str(tmp_path / "data" / "images" / "val") in str(e.value) and "never downloads" in str(e.value)
    f.write_text("path: .\ntrain: a\nval: a\n")
    with pytest.raises(DatasetConfigError, match=f"{f}: Dataset 'nc' key missing."):
        check_dataset(f)
    f.write_text("path: .\ntrain: a\nval: a\nnc: 2\nnames: [x]\n")
    with pytest.raises(DatasetConfigError, match="1 names found for nc=2"):
        check_dataset(f)
    f.write_text("path: ./gen\ntrain: a\nval: a\nnc: 1\nnames: [hexagon]\nsynthetic: {seed: 1}\n")
    with pytest.raises(DatasetConfigError, match="invalid 'synthetic' entry: .*hexagon"):
        check_dataset(f)
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        check_dataset(tmp_path / "nope.yaml")
    (tmp_path / "a").mkdir()
    f.write_text("train: a\nval: a\nnc: 2\n")  # no path: the yaml folder; default names
    d = check_dataset(f)
    assert d["names"] == ["class0", "class1"] and d["val"] == str(tmp_path / "a")


def test_check_dataset_generates_synthetic(tmp_path):
    f = tmp_path / "demo.yaml"
    f.write_text("path: ../gen/shapes\ntrain: images/train\nval: images/val\nnc: 3\n"
                 "names: [circle, star, ellipse]\nsynthetic: {seed: 3, train: 4, val: 2, img_size: 64}\n")
    (tmp_path / "yamls").mkdir()
    f = f.rename(tmp_path / "yamls" / "demo.yaml")
    d = check_dataset(f)
    assert d["path"] == str(tmp_path / "gen" / "shapes") and len(list(Path(d["val"]).glob("*.jpg"))) == 2
    assert check_dataset(f) == d  # second call: data present, nothing regenerated


def test_shapes_yaml_points_into_repo_datasets(monkeypatch):
    calls = []

    def fake_generate(root, **kwargs):
        calls.append((root, kwargs))
        raise RuntimeError("stop")

    monkeypatch.setattr("utils.dataset_yaml.generate_dataset", fake_generate)
    monkeypatch.setattr("utils.dataset_yaml.ROOT", Path("/nonexistent-root"))  # no v6.1 fallback match
    try:
        d = check_dataset(ROOT / "data" / "shapes.yaml")
    except RuntimeError:
        root, kwargs = calls[0]
        assert root == ROOT / "datasets" / "shapes"
        assert kwargs["names"] == ["circle", "square", "triangle", "star", "ellipse"] and kwargs["seed"] == 0
    else:  # already generated in this checkout
        assert d["path"] == str(ROOT / "datasets" / "shapes")


def test_synthetic_deterministic_fast_and_inside(tmp_path):
    t0 = time.time()
    a = generate_dataset(tmp_path / "a", train=20, val=5, seed=7)
    assert time.time() - t0 < 5
    b = generate_dataset(tmp_path / "b", train=20, val=5, seed=7)
    la, lb = sorted((a / "labels").rglob("*.txt")), sorted((b / "labels").rglob("*.txt"))
    assert len(la) == 25 and [p.read_bytes() for p in la] == [p.read_bytes() for p in lb]
    rows = np.array([[float(v) for v in line.split()] for p in la for line in p.read_text().splitlines()])
    assert len(rows) > 20 and set(rows[:, 0]) <= set(range(5))
    assert (rows[:, 1] - rows[:, 3] / 2 >= 0).all() and (rows[:, 1] + rows[:, 3] / 2 <= 1).all()
    assert (rows[:, 2] - rows[:, 4] / 2 >= 0).all() and (rows[:, 2] + rows[:, 4] / 2 <= 1).all()
    assert not list(tmp_path.glob(".*partial*"))  # generated atomically
    with pytest.raises(FileExistsError):
        generate_dataset(a)
    ds = LoadImagesAndLabels(str(a / "images" / "train"), 320, 8, rect=True)  # sizes vary -> batch shapes differ
    assert len({tuple(s) for s in ds.batch_shapes}) > 1 or len({tuple(s) for s in ds.shapes}) > 1


class _CvThreads(torch.utils.data.Dataset):
    """Reports the OpenCV thread count inside the loader."""

    def __len__(self):
        return 4

    def __getitem__(self, i):
        return cv2.getNumThreads()


def test_loader_workers_start_with_the_loader_without_opencv_threads():
    from utils.infinite_loader import InfiniteDataLoader, worker_init
    loader = InfiniteDataLoader(_CvThreads(), batch_size=2, num_workers=2, worker_init_fn=worker_init)
    assert loader._epoch_iterator is not None and len(loader._epoch_iterator._workers) == 2  # started already
    assert [int(x) for b in loader for x in b] == [1] * 4  # cv2.setNumThreads(0) -> getNumThreads() == 1
    assert InfiniteDataLoader(_CvThreads(), batch_size=2)._epoch_iterator is None  # no workers: made when used


def test_closing_a_loader_stops_its_workers_at_once():
    import time

    from utils.infinite_loader import InfiniteDataLoader, worker_init
    loader = InfiniteDataLoader(_CvThreads(), batch_size=1, num_workers=2, worker_init_fn=worker_init)
    assert [int(x) for b in loader for x in b] == [1] * 4  # workers have prefetched the next epoch's batches
    workers = list(loader._epoch_iterator._workers)
    t0 = time.time()
    loader.close()
    assert time.time() - t0 < 3 and not any(w.is_alive() for w in workers)  # PyTorch's own shutdown: 5 s each
    loader.close()  # twice is harmless
    assert [int(x) for b in loader for x in b] == [1] * 4  # a new epoch starts new workers
    loader.close()
