"""v6.1's dataset maintenance helpers of ``utils.datasets`` (re-exported there): recreate a folder, flatten a
dataset, crop its boxes for a classifier, and per-split label statistics (optionally an Ultralytics HUB copy).

Also the module ``__getattr__`` of ``utils.datasets`` (:func:`datasets_getattr`), which resolves the v6.1 names of
that module implemented elsewhere (these helpers included) on first use.
"""

from __future__ import annotations

import glob
import importlib
import json
import os
import shutil
import tempfile
import time
import zipfile
from multiprocessing.pool import ThreadPool
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml
from PIL import Image
from tqdm import tqdm

from utils.boxes import xywh2xyxy
from utils.general import DATASETS_DIR, LOGGER, NUM_THREADS
from utils.labels import BAR_FORMAT, IMG_FORMATS, img2label_paths, parse_label_file

HUB_MAX_DIM = 512  # HUB image copies are shrunk to at most this side (px)
orientation = 274  # EXIF tag id of 'Orientation' (v6.1 leaves it in utils.datasets after a tag look-up loop)
_DATASETS_NAMES = {  # v6.1 names of utils.datasets: the module that implements each
    **dict.fromkeys(("orientation", "create_folder", "flatten_recursive", "extract_boxes", "dataset_stats"), __name__),
    **dict.fromkeys(("exif_size", "exif_transpose"), "utils.labels"), "get_hash": "utils.label_cache",
    "LoadWebcam": "utils.webcam", "autosplit": "utils.dataset_downloads"}


def datasets_getattr(name: str) -> Any:
    """Module ``__getattr__`` of ``utils.datasets`` (PEP 562): its v6.1 names implemented in other modules, imported
    on first use (so that they resolve once those modules define them, without import cycles)."""
    if name in _DATASETS_NAMES:
        return getattr(importlib.import_module(_DATASETS_NAMES[name]), name)
    raise AttributeError(f"module 'utils.datasets' has no attribute {name!r}")


def create_folder(path: str | Path = "./new") -> Path:
    """Create ``path`` empty: an existing folder there is deleted first, with all its contents."""
    path = Path(path)
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def flatten_recursive(path: str | Path = DATASETS_DIR / "coco128") -> Path:
    """Copy every file under ``path`` (all sub-folders) into one flat folder ``<path>_flat`` (recreated).

    Files with the same name overwrite each other, later ones (in glob order) winning. Returns the new folder.
    """
    new_path = create_folder(f"{str(path).rstrip('/')}_flat")
    for file in tqdm(glob.glob(f"{glob.escape(str(Path(path)))}/**/*.*", recursive=True), bar_format=BAR_FORMAT):
        if os.path.isfile(file):
            shutil.copyfile(file, new_path / Path(file).name)
    return new_path


def extract_boxes(path: str | Path = DATASETS_DIR / "coco128") -> Path:
    """Crop every labelled box of a detection dataset into ``<path>/classifier/<class>/`` (a classification set).

    Each box is enlarged to ``1.2 * size + 3`` px, clipped to its image and saved as
    ``<dataset name>_<image stem>_<row>.jpg``. The ``classifier`` folder is recreated. Crops keep the image's
    colours (v6.1 saved them with red and blue swapped). Returns the ``classifier`` folder.
    """
    path = Path(path)
    out = path / "classifier"
    if out.exists():
        shutil.rmtree(out)
    files = sorted(path.rglob("*.*"))
    for im_file in tqdm(files, total=len(files), bar_format=BAR_FORMAT):
        if im_file.suffix[1:].lower() not in IMG_FORMATS:
            continue
        lb_file = Path(img2label_paths([str(im_file)])[0])
        if not lb_file.is_file():
            continue
        im = cv2.imread(str(im_file))
        if im is None:
            LOGGER.warning(f"WARNING: extract_boxes: cannot read {im_file}, skipped")
            continue
        h, w = im.shape[:2]
        lb, _, msgs, _ = parse_label_file(str(lb_file))
        if msgs:
            LOGGER.warning("\n".join(msgs))
        for j, x in enumerate(lb):
            f = out / f"{int(x[0])}" / f"{path.stem}_{im_file.stem}_{j}.jpg"
            f.parent.mkdir(parents=True, exist_ok=True)
            b = x[1:] * [w, h, w, h]  # pixel xywh
            b[2:] = b[2:] * 1.2 + 3  # pad
            b = xywh2xyxy(b.reshape(-1, 4)).ravel().astype(int)
            b[[0, 2]] = np.clip(b[[0, 2]], 0, w)
            b[[1, 3]] = np.clip(b[[1, 3]], 0, h)
            if not cv2.imwrite(str(f), im[b[1]:b[3], b[0]:b[2]]):
                raise OSError(f"box failure in {f}")
    return out


def _unzip(path: Path) -> tuple[dict, Path] | None:
    """For a ``dataset.zip``: extract it beside itself and return (its yaml loaded, with ``path`` set to the
    extracted folder; the yaml file). None for anything else."""
    if path.suffix.lower() != ".zip":
        return None
    if not path.is_file():
        raise FileNotFoundError(f"Error unzipping {path}, file not found")
    with zipfile.ZipFile(path) as z:
        z.extractall(path.parent)
    folder = path.with_suffix("")
    files = sorted(folder.glob("*.yaml")) or sorted(folder.rglob("*.yaml"))
    if len(files) > 1:
        files = [f for f in files if f.stem == folder.stem]
    if len(files) != 1:
        raise FileNotFoundError(f"expected one *.yaml in {folder} (named {folder.stem}.yaml when there are several), "
                                f"found {len(files)}")
    data = yaml.safe_load(files[0].read_text(encoding="utf-8"))
    data.update(path=str(folder.resolve()), yaml_file=str(files[0]))
    return data, files[0]


def _hub_image(f: str, im_dir: Path) -> None:
    """Save a copy of image ``f`` into ``im_dir``: JPEG quality 75, shrunk to at most HUB_MAX_DIM px per side."""
    im = Image.open(f)
    r = HUB_MAX_DIM / max(im.height, im.width)
    if r < 1.0:
        im = im.resize((int(im.width * r), int(im.height * r)))
    im.convert("RGB").save(im_dir / Path(f).name, "JPEG", quality=75, optimize=True)


def _split_stats(dataset, nc: int) -> dict:
    """Instance and image counts per class, and the rounded labels per image, of one LoadImagesAndLabels split."""
    x = np.array([np.bincount(lb[:, 0].astype(int), minlength=nc) for lb in dataset.labels]).reshape(-1, nc)
    return {"instance_stats": {"total": int(x.sum()), "per_class": x.sum(0).tolist()},  # x: (images, nc) counts
            "image_stats": {"total": int(dataset.n), "unlabelled": int(np.all(x == 0, 1).sum()),
                            "per_class": (x > 0).sum(0).tolist()},
            "labels": [{Path(k).name: [[int(c), *(round(float(v), 4) for v in pts)] for c, *pts in lb.tolist()]}
                       for k, lb in zip(dataset.img_files, dataset.labels)]}


def _profile_stats(stats: dict) -> None:
    """Log how long saving and loading ``stats`` takes as .npy and as .json (in a temporary folder)."""
    with tempfile.TemporaryDirectory() as d:
        for suffix, save, load in ((".npy", lambda f: np.save(f, stats), lambda f: np.load(f, allow_pickle=True)),
                                   (".json", lambda f: f.write_text(json.dumps(stats)),
                                    lambda f: json.loads(f.read_text()))):
            f = Path(d) / f"stats{suffix}"
            t0 = time.perf_counter()
            save(f)
            t1 = time.perf_counter()
            load(f)
            t2 = time.perf_counter()
            LOGGER.info(f"stats{suffix} times: {t2 - t1:.3f}s read, {t1 - t0:.3f}s write")


def dataset_stats(path: str | Path = "coco128.yaml", autodownload: bool = False, verbose: bool = False,
                  profile: bool = False, hub: bool = False) -> dict:
    """Statistics of a detection dataset, per split: instances and images per class, unlabelled images, labels.

    Returns ``{'nc', 'names', 'train', 'val', 'test'}``; a split absent from the yaml is None, else
    ``{'instance_stats': {'total', 'per_class'}, 'image_stats': {'total', 'unlabelled', 'per_class'},
    'labels': [{image name: [[cls, x, y, w, h] (4 decimals), ...]}, ...]}``.

    Args:
        path: dataset yaml, or a ``<name>.zip`` holding ``<name>/<name>.yaml`` (extracted beside the zip).
        autodownload: passed to :func:`utils.dataset_yaml.check_dataset` (True fetches a missing dataset through its yaml's ``download:``).
        verbose: also log the statistics as JSON.
        profile: log how long saving/loading the statistics as .npy and .json takes.
        hub: write ``<dataset path>-hub/images/`` (copies at most 512 px, JPEG quality 75) and
            ``<dataset path>-hub/stats.json`` for Ultralytics HUB.
    """
    from utils.dataset_yaml import check_dataset
    from utils.datasets import LoadImagesAndLabels

    zipped = _unzip(Path(path))
    data = check_dataset(zipped[0] if zipped else path, autodownload)
    hub_dir = Path(f"{data['path']}-hub")
    stats: dict = {"nc": data["nc"], "names": data["names"]}
    for split in "train", "val", "test":
        if not data.get(split):
            stats[split] = None
            continue
        dataset = LoadImagesAndLabels(data[split], nc=data["nc"])
        stats[split] = _split_stats(dataset, data["nc"])
        if hub:
            im_dir = hub_dir / "images"
            im_dir.mkdir(parents=True, exist_ok=True)
            with ThreadPool(NUM_THREADS) as pool:
                for _ in tqdm(pool.imap(lambda f: _hub_image(f, im_dir), dataset.img_files), total=dataset.n,
                              desc="HUB Ops", bar_format=BAR_FORMAT):
                    pass
    if profile:
        _profile_stats(stats)
    if hub:
        f = hub_dir / "stats.json"
        LOGGER.info(f"Saving {f.resolve()}...")
        f.write_text(json.dumps(stats))
    if verbose:
        LOGGER.info(json.dumps(stats, indent=2, sort_keys=False))
    return stats
