"""Hostile or unusual dataset files: label cache safety, undecodable images, disk-cache name collisions, extreme
aspect ratios, label files with a UTF-8 BOM and label edits that keep the file size.

Every dataset here is a few tiny images written into ``tmp_path``; nothing trains.
"""

from __future__ import annotations

import os
import pickle
import random
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from PIL import Image

import utils.labels as labels_mod
from tests.conftest import ROOT
from utils.augmentations import letterbox
from utils.datasets import LoadImagesAndLabels
from utils.inference_loaders import LoadImages

pytestmark = pytest.mark.bad_input

HYP = yaml.safe_load((ROOT / "data" / "hyps" / "hyp.scratch-low.yaml").read_text())


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path, monkeypatch):
    """Any fallback cache goes to the test's own folder, never to <repo>/runs/.cache."""
    monkeypatch.setenv("YOLOV5_CACHE_DIR", str(tmp_path / "fallback-cache"))


def _image(value: int, h: int = 32, w: int = 32, seed: int | None = None) -> np.ndarray:
    """A (h, w, 3) uint8 image: constant ``value``, or random noise when ``seed`` is given."""
    if seed is not None:
        return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    return np.full((h, w, 3), value, np.uint8)


def _dataset(root: Path, files: dict[str, np.ndarray], labels: dict[str, str] | None = None) -> Path:
    """Write ``images/train/<name>`` for each image and ``labels/train/<stem>.txt`` rows; returns the images dir."""
    img_dir, lb_dir = root / "images" / "train", root / "labels" / "train"
    for name, im in files.items():
        (img_dir / name).parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(img_dir / name), im)
    for name, text in (labels or {}).items():
        (lb_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (lb_dir / name).write_text(text)
    return img_dir


class _Trap:
    """Unpickling this object creates the marker file: proof that a cache was unpickled."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


# --- 1. the label cache is never unpickled ------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["raw-pickle", "v61-npy-dict", "npz-object-arrays"])
def test_malicious_pickle_cache_is_never_unpickled(tmp_path, layout, yolo_log):
    img_dir = _dataset(tmp_path / "ds", {"a.jpg": _image(0, seed=1), "b.jpg": _image(0, seed=2)},
                       {"a.txt": "0 0.5 0.5 0.2 0.2\n", "b.txt": "1 0.4 0.4 0.2 0.2\n"})
    cache = tmp_path / "ds" / "labels" / "train.cache"
    marker = tmp_path / "pwned"
    files = sorted(str(p) for p in img_dir.iterdir())
    # a cache that a v6.1 loader would trust: right version and hash, labels that are not in the files
    fake = {f: [np.array([[7, 0.5, 0.5, 0.1, 0.1]], np.float32), (32, 32), []] for f in files}
    fake.update(hash=labels_mod.get_hash(labels_mod.img2label_paths(files) + files), results=(2, 0, 0, 0, 2),
                msgs=[], version=labels_mod.CACHE_VERSION, trap=_Trap(marker))
    with open(cache, "wb") as f:
        if layout == "raw-pickle":
            pickle.dump(fake, f)
        elif layout == "v61-npy-dict":  # what np.save(path, dict) writes, as YOLOv5 v6.1 does
            np.save(f, np.array(fake, dtype=object), allow_pickle=True)
        else:  # our archive layout and a valid header, but a member is a pickled object array
            from utils.label_cache import _pack

            arrays = _pack({k: v for k, v in fake.items() if k != "trap"})
            arrays["files"] = np.array([_Trap(marker)] + files, dtype=object)
            np.savez(f, **arrays)

    ds = LoadImagesAndLabels(str(img_dir), 32, 2)
    assert not marker.exists(), "the cache file was unpickled"
    assert [Path(f).name for f in ds.img_files] == ["a.jpg", "b.jpg"]
    assert [lb[:, 0].tolist() for lb in ds.labels] == [[0.0], [1.0]]  # rebuilt from the label files
    assert cache.read_bytes()[:4] == b"PK\x03\x04"  # replaced by the pickle-free archive
    with np.load(cache, allow_pickle=False) as z:
        assert all(z[k].dtype != object for k in z.files)


def test_label_cache_round_trip_segments_and_warnings(tmp_path):
    a, b, c = str(tmp_path / "a.jpg"), str(tmp_path / "sub" / "b ü.png"), str(tmp_path / "c.jpg")
    poly = [np.array([[0.1, 0.1], [0.3, 0.1], [0.2, 0.4]], np.float32),
            np.array([[0.5, 0.5], [0.9, 0.5], [0.9, 0.9], [0.5, 0.9]], np.float32)]
    cache = {a: [np.array([[0, 0.5, 0.5, 0.2, 0.2], [2, 0.1, 0.2, 0.1, 0.1]], np.float32), (64, 48), []],
             b: [np.array([[1, 0.2, 0.25, 0.2, 0.3], [0, 0.7, 0.7, 0.4, 0.4]], np.float32), (30, 40), poly],
             c: [np.zeros((0, 5), np.float32), (10, 3000), []],
             "hash": "0123456789abcdef0123456789abcdef", "results": (2, 1, 1, 3, 6),
             "msgs": ["WARNING: x.jpg: ignoring corrupt image: bad", "WARNING: y.txt:3: label row ignored: ü"],
             "version": labels_mod.CACHE_VERSION}
    path = labels_mod.save_label_cache(cache, tmp_path / "train.cache")
    assert path == tmp_path / "train.cache" and sorted(p.name for p in tmp_path.iterdir()) == ["train.cache"]
    with np.load(path, allow_pickle=False) as z:  # plain arrays only
        assert all(z[k].dtype != object for k in z.files)
    assert labels_mod.load_label_cache(path, "another hash") is None
    got = labels_mod.load_label_cache(path, cache["hash"])
    assert got is not None and list(got) == list(cache)
    for k in a, b, c:
        np.testing.assert_array_equal(got[k][0], cache[k][0])
        assert got[k][0].dtype == np.float32 and got[k][0].shape == cache[k][0].shape
        assert tuple(got[k][1]) == cache[k][1] and len(got[k][2]) == len(cache[k][2])
        for s0, s1 in zip(cache[k][2], got[k][2]):
            np.testing.assert_array_equal(s0, s1)
    assert tuple(got["results"]) == cache["results"] and list(got["msgs"]) == cache["msgs"]
    assert got["hash"] == cache["hash"] and got["version"] == cache["version"] != 0.6


# --- 2. images that PIL verifies but OpenCV cannot decode ---------------------------------------------------


def _png_with_garbled_idat(im: np.ndarray) -> bytes:
    """A PNG whose IDAT zlib stream is garbage while every chunk CRC is valid."""
    data, out, i = cv2.imencode(".png", im)[1].tobytes(), b"\x89PNG\r\n\x1a\n", 8
    while i < len(data):
        n = struct.unpack(">I", data[i:i + 4])[0]
        kind, body = data[i + 4:i + 8], data[i + 8:i + 8 + n]
        if kind == b"IDAT":
            body = body[:2] + bytes(x ^ 0x55 for x in body[2:])  # keep the zlib header, garble the stream
        out += struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        i += 12 + n
    return out


def _jpeg_with_bad_huffman_table(im: np.ndarray) -> bytes:
    """A JPEG (with its end marker) whose first DHT segment has impossible code counts."""
    data = bytearray(cv2.imencode(".jpg", im)[1].tobytes())
    i = data.index(b"\xff\xc4")  # DHT: marker, 2-byte length, class/id byte, 16 code counts
    data[i + 5:i + 21] = b"\xff" * 16
    return bytes(data)


def test_images_pil_verifies_but_opencv_cannot_decode_are_dropped(tmp_path, yolo_log):
    img_dir = _dataset(tmp_path, {"good.jpg": _image(0, seed=3)}, {"good.txt": "0 0.5 0.5 0.2 0.2\n"})
    bad = {"bad_zlib.png": _png_with_garbled_idat(_image(0, seed=4)),
           "bad_dht.jpg": _jpeg_with_bad_huffman_table(_image(0, seed=5))}
    for name, data in bad.items():
        (img_dir / name).write_bytes(data)
        (tmp_path / "labels" / "train" / name.replace(".png", ".txt").replace(".jpg", ".txt")).write_text(
            "0 0.5 0.5 0.2 0.2\n")
        with Image.open(img_dir / name) as im:  # the split this test is about
            im.verify()
        assert cv2.imread(str(img_dir / name)) is None

    ds = LoadImagesAndLabels(str(img_dir), 32, 2)
    assert [Path(f).name for f in ds.img_files] == ["good.jpg"]
    for name in bad:
        assert any(str(img_dir / name) in x and "ignoring corrupt image" in x and "OpenCV" in x for x in yolo_log)
    assert any("1 found, 0 missing, 0 empty, 2 corrupt" in x for x in yolo_log)
    h, w = cv2.imread(ds.img_files[0]).shape[:2]
    assert tuple(ds.shapes[0]) == (w, h)
    assert ds[0][0].shape == (3, 32, 32)


def test_scan_shape_is_the_decoded_shape(tmp_path):
    """An EXIF-rotated JPEG: the scan's (w, h) is the shape OpenCV gives the loader."""
    img_dir = _dataset(tmp_path, {})
    img_dir.mkdir(parents=True)
    exif = Image.Exif()
    exif[274] = 6  # orientation: rotate 90 degrees
    Image.fromarray(_image(0, h=20, w=50, seed=6)).save(img_dir / "rot.jpg", exif=exif.tobytes())
    ds = LoadImagesAndLabels(str(img_dir), 64, 1)
    h, w = cv2.imread(ds.img_files[0]).shape[:2]
    assert tuple(ds.shapes[0]) == (w, h) and ds.load_image(0)[1] == (h, w)


# --- 3. --cache disk file names --------------------------------------------------------------------------------


def _colliding_names_dataset(root: Path) -> Path:
    ims = {"a/img.png": _image(10), "b/img.png": _image(90), "dup.png": _image(170), "dup.jpg": _image(250)}
    return _dataset(root, ims)


def test_disk_cache_colliding_names_keep_their_own_pixels(tmp_path):
    img_dir = _colliding_names_dataset(tmp_path)
    ds = LoadImagesAndLabels(str(img_dir), 32, 4, cache_images="disk")
    assert len(ds) == 4
    for i, f in enumerate(ds.img_files):
        assert np.array_equal(ds.load_image(i)[0], cv2.imread(f)), f
    assert len(set(ds.img_npy)) == 4 and all(p.is_file() for p in ds.img_npy)
    again = LoadImagesAndLabels(str(img_dir), 32, 4, cache_images="disk")  # reuses the .npy files
    for i, f in enumerate(again.img_files):
        assert np.array_equal(again.load_image(i)[0], cv2.imread(f)), f


def test_disk_cache_rebuilt_when_image_is_newer(tmp_path):
    img_dir = _colliding_names_dataset(tmp_path)
    ds = LoadImagesAndLabels(str(img_dir), 32, 4, cache_images="disk")
    i = ds.img_files.index(str(img_dir / "dup.png"))
    npy_mtime = ds.img_npy[i].stat().st_mtime_ns
    cv2.imwrite(ds.img_files[i], _image(33))  # same shape, new pixels
    os.utime(ds.img_files[i], ns=(npy_mtime + 10**10, npy_mtime + 10**10))
    ds = LoadImagesAndLabels(str(img_dir), 32, 4, cache_images="disk")
    assert (ds.load_image(i)[0] == 33).all()


# --- 4. extreme aspect ratios ------------------------------------------------------------------------------


def _thin_dataset(root: Path) -> Path:
    ims = {"wide.png": _image(0, h=10, w=3000, seed=7), "tall.png": _image(0, h=3000, w=10, seed=8),
           "square.png": _image(0, h=40, w=40, seed=9)}
    lbs = {"wide.txt": "0 0.5 0.5 0.5 0.8\n", "tall.txt": "1 0.5 0.5 0.8 0.5\n", "square.txt": "2 0.5 0.5 0.5 0.5\n"}
    return _dataset(root, ims, lbs)


def test_extreme_aspect_ratio_mosaic_training_items_load(tmp_path):
    img_dir = _thin_dataset(tmp_path)
    ds = LoadImagesAndLabels(str(img_dir), 64, 2, augment=True, hyp={**HYP, "mosaic": 1.0, "mixup": 0.5})
    random.seed(0)
    np.random.seed(0)
    for _ in range(3):
        for k in range(len(ds)):
            img, labels, _, _ = ds[k]
            assert img.shape == (3, 64, 64) and ((labels[:, 2:] >= 0) & (labels[:, 2:] <= 1)).all()
    no_mosaic = LoadImagesAndLabels(str(img_dir), 64, 2, augment=True, hyp={**HYP, "mosaic": 0.0})
    for k in range(len(no_mosaic)):
        assert no_mosaic[k][0].shape == (3, 64, 64)


def test_extreme_aspect_ratio_rect_validation_items_load(tmp_path):
    img_dir = _thin_dataset(tmp_path)
    for cache in (False, "ram", "disk"):
        ds = LoadImagesAndLabels(str(img_dir), 64, 1, rect=True, stride=32, pad=0.5, cache_images=cache)
        for k in range(len(ds)):
            img, labels, path, shapes = ds[k]
            assert tuple(img.shape[1:]) == tuple(ds.batch_shapes[ds.batch[k]]), path
            assert min(ds.load_image(k)[2]) >= 1


@pytest.mark.parametrize("hw", [(10, 3000), (3000, 10), (1, 5000)])
def test_letterbox_never_resizes_a_side_to_zero(hw):
    im = _image(0, *hw, seed=10)
    for auto, fill in ((False, False), (True, False), (False, True)):
        out, ratio, (dw, dh) = letterbox(im, 64, auto=auto, scaleFill=fill, stride=32)
        assert min(out.shape[:2]) >= 1 and max(out.shape[:2]) == 64


def test_extreme_aspect_ratio_inference_loader(tmp_path):
    img_dir = _thin_dataset(tmp_path)
    got = [img.shape for _, img, _, _, _ in LoadImages(str(img_dir), img_size=64, stride=32)]
    assert len(got) == 3 and all(s[0] == 3 and max(s[1:]) == 64 for s in got)


# --- 5. UTF-8 byte order mark --------------------------------------------------------------------------------


def test_label_file_with_utf8_bom_keeps_its_first_row(tmp_path, yolo_log):
    img_dir = _dataset(tmp_path, {"a.jpg": _image(0, seed=11)})
    lb = tmp_path / "labels" / "train" / "a.txt"
    lb.parent.mkdir(parents=True)
    lb.write_bytes("0 0.5 0.5 0.2 0.2\n1 0.3 0.3 0.1 0.1\n".encode("utf-8-sig"))
    assert lb.read_bytes()[:3] == b"\xef\xbb\xbf"
    ds = LoadImagesAndLabels(str(img_dir), 32, 1)
    np.testing.assert_allclose(ds.labels[0], [[0, 0.5, 0.5, 0.2, 0.2], [1, 0.3, 0.3, 0.1, 0.1]], atol=1e-6)
    assert not any("label row ignored" in x for x in yolo_log)


def test_list_file_with_utf8_bom(tmp_path):
    img_dir = _dataset(tmp_path, {"a.jpg": _image(0, seed=12), "b.jpg": _image(0, seed=13)})
    lst = tmp_path / "train.txt"
    lst.write_bytes("./images/train/a.jpg\n./images/train/b.jpg\n".encode("utf-8-sig"))
    ds = LoadImagesAndLabels(str(lst), 32, 2)
    assert ds.img_files == [str(img_dir / "a.jpg"), str(img_dir / "b.jpg")]


# --- 6. label cache hash sees edits that keep the size --------------------------------------------------------


def test_label_edit_keeping_size_and_mtime_is_seen(tmp_path):
    img_dir = _dataset(tmp_path, {"a.jpg": _image(0, seed=14)}, {"a.txt": "0 0.5 0.5 0.2 0.2\n"})
    lb = tmp_path / "labels" / "train" / "a.txt"
    assert LoadImagesAndLabels(str(img_dir), 32, 1).labels[0][0, 0] == 0
    lb.write_text("1 0.5 0.5 0.2 0.2\n")  # same size
    assert LoadImagesAndLabels(str(img_dir), 32, 1).labels[0][0, 0] == 1
    st = lb.stat()
    lb.write_text("2 0.5 0.5 0.2 0.2\n")
    os.utime(lb, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and same mtime: only the content differs
    assert lb.stat().st_size == st.st_size and lb.stat().st_mtime_ns == st.st_mtime_ns
    assert LoadImagesAndLabels(str(img_dir), 32, 1).labels[0][0, 0] == 2


def test_get_hash_sees_size_mtime_and_label_content(tmp_path):
    img, lb = tmp_path / "a.jpg", tmp_path / "a.txt"
    img.write_bytes(b"x" * 10)
    lb.write_text("0 0.5 0.5 0.2 0.2\n")
    paths = [str(lb), str(img)]
    h0 = labels_mod.get_hash(paths)
    assert labels_mod.get_hash(paths) == h0
    st = img.stat()
    os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # image touched: size and content unchanged
    assert labels_mod.get_hash(paths) != h0
