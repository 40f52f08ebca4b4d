"""Fetching and converting the official datasets, as named Python functions (a yaml's ``download:`` entry).

A dataset yaml's ``download:`` is either an ``http(s)://...zip`` URL (fetched, unzipped beside the dataset folder,
deleted) or the name of a function in :data:`DOWNLOADS` (``download: voc``); yaml text is never run as code.

Each function takes the checked dataset dict (``data['path']`` = the dataset root) and, like the original
scripts, fetches the archives, moves folders into place and converts the annotations to YOLO labels
(:mod:`utils.converters`). An archive or extracted folder already in place is not fetched again: without a network,
put the files where the error message says and rerun; only the conversion runs. Offline, a fetch fails at once
with a :class:`DatasetDownloadError` naming the URLs and the places.
"""

from __future__ import annotations

import json
import random
import shutil
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

from tqdm import tqdm

from utils.converters import (argoverse_json_to_labels, coco_json_to_labels, image_size, sku_csv_to_labels,
                              visdrone_to_yolo, voc_xml_to_yolo, xview_geojson_to_labels)
from utils.downloads import DownloadError, download
from utils.general import DATASETS_DIR, LOGGER
from utils.labels import IMG_FORMATS, img2label_paths

GH = "https://github.com/ultralytics/yolov5/releases/download/v1.0/"
MAX_LISTED = 5  # failed URLs listed in a message; the rest are counted


class DatasetDownloadError(FileNotFoundError):
    """A dataset could not be fetched; the message names the URLs and what to put where by hand."""


def _fetch(items: Sequence[tuple[str, bool]], dir: Path, placement: str, skip: bool = False, **kwargs) -> list[str]:
    """Download the URLs of ``(url, already present)`` pairs that are not present into ``dir`` (see
    :func:`utils.downloads.download` for ``kwargs``); returns problem descriptions (empty when all went well).

    ``skip`` (an earlier fetch failed) reports the URLs as not tried, so that an offline failure stays immediate.
    """
    todo = [u for u, present in items if not present]
    if len(todo) < len(items):
        LOGGER.info(f"{len(items) - len(todo)} of {len(items)} file(s) already in place in {dir}, not fetched")
    try:
        if todo and skip:
            raise DownloadError([(u, dir, ConnectionError("not tried: an earlier download failed")) for u in todo])
        if todo:
            download(todo, dir=dir, **kwargs)
    except DownloadError as e:
        fails = [f"{u} ({type(x).__name__}: {x})" for u, _, x in e.failures]
        more = f"\n  ... and {len(fails) - MAX_LISTED} more" if len(fails) > MAX_LISTED else ""
        return ["could not fetch:\n  " + "\n  ".join(fails[:MAX_LISTED]) + more + f"\nWithout a network: {placement}"]
    return []


def _check(problems: list[str], name: str) -> None:
    """Raise :class:`DatasetDownloadError` listing ``problems``, if any."""
    if problems:
        raise DatasetDownloadError(f"{name} download failed: " + "\n".join(problems) + "\nThen rerun.")


def _write_lines(file: Path, lines: Sequence[str]) -> None:
    """Write ``lines`` to ``file``, each ending in a newline (an empty file for no lines)."""
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text("".join(f"{x}\n" for x in lines), encoding="utf-8")


def download_zip(url: str, data: dict) -> None:
    """A ``download: https://...zip`` entry: fetch the zip into the parent of the dataset root, unzip it there and
    delete it (a zip already there is only unzipped)."""
    root = Path(data["path"])
    name = url.rsplit("/", 1)[-1]
    _check(_fetch([(url, False)], root.parent, f"download {name} elsewhere and place it in {root.parent} (it is "
                                                f"unzipped there), or its extracted folder as {root}"), name)


def coco(data: dict, segments: bool = False) -> None:
    """COCO 2017: the YOLO labels zip (with the image lists) unzipped beside the root, then train/val/test images
    into ``<root>/images`` (3 threads, zips deleted)."""
    root = Path(data["path"])
    labels = "coco2017labels-segments.zip" if segments else "coco2017labels.zip"
    problems = _fetch([(GH + labels, (root / "val2017.txt").is_file())], root.parent,
                      f"place {labels} in {root.parent} (it unzips to {root.name}/labels/ and {root.name}/*.txt)")
    sets = ("train2017", "val2017", "test2017")
    items = [(f"http://images.cocodataset.org/zips/{s}.zip", (root / "images" / s).is_dir()) for s in sets]
    problems += _fetch(items, root / "images", f"place {', '.join(s + '.zip' for s in sets)} in {root / 'images'}, "
                                               f"or the extracted {', '.join(s + '/' for s in sets)} folders there",
                       skip=bool(problems), threads=3)
    _check(problems, "COCO")


VOC_ZIPS = (("VOCtrainval_06-Nov-2007.zip", "2007", "train"), ("VOCtest_06-Nov-2007.zip", "2007", "test"),
            ("VOCtrainval_11-May-2012.zip", "2012", "train"))  # (zip, year, an image set it provides)
VOC_SETS = (("2012", "train"), ("2012", "val"), ("2007", "train"), ("2007", "val"), ("2007", "test"))


def voc(data: dict) -> None:
    """PASCAL VOC 2007+2012: the three zips into ``<root>/images`` (kept), then per (year, image set) the images
    are moved to ``images/<set><year>/`` and their labels written to ``labels/<set><year>/``."""
    root = Path(data["path"])
    images = root / "images"
    dev = images / "VOCdevkit"
    items = [(GH + z, (dev / f"VOC{y}" / "ImageSets" / "Main" / f"{s}.txt").is_file()) for z, y, s in VOC_ZIPS]
    _check(_fetch(items, images, f"place {', '.join(z for z, _, _ in VOC_ZIPS)} in {images}, or the extracted "
                                 f"VOCdevkit folder (VOCdevkit/VOC2007, VOCdevkit/VOC2012) there", delete=False,
                  threads=3), "VOC")
    for year, image_set in VOC_SETS:
        src = dev / f"VOC{year}"
        imgs, lbs = images / f"{image_set}{year}", root / "labels" / f"{image_set}{year}"
        imgs.mkdir(parents=True, exist_ok=True)
        ids = (src / "ImageSets" / "Main" / f"{image_set}.txt").read_text().split()
        for id in tqdm(ids, desc=f"{image_set}{year}"):
            f = src / "JPEGImages" / f"{id}.jpg"
            if f.exists():  # already moved by an earlier run otherwise
                f.replace(imgs / f.name)
            _write_lines(lbs / f"{id}.txt", voc_xml_to_yolo(src / "Annotations" / f"{id}.xml", data["names"]))


VISDRONE = ("VisDrone2019-DET-train", "VisDrone2019-DET-val", "VisDrone2019-DET-test-dev",
            "VisDrone2019-DET-test-challenge")


def visdrone(data: dict) -> None:
    """VisDrone2019-DET: four zips unzipped into the root and deleted; train, val and test-dev annotations are
    converted to ``<split>/labels/`` (no file for an image without a kept row)."""
    root = Path(data["path"])
    _check(_fetch([(f"{GH}{s}.zip", (root / s).is_dir()) for s in VISDRONE], root,
                  f"place {', '.join(s + '.zip' for s in VISDRONE)} in {root}, or the extracted folders there"),
           "VisDrone")
    for split in VISDRONE[:3]:
        d = root / split
        (d / "labels").mkdir(parents=True, exist_ok=True)
        for f in tqdm(sorted((d / "annotations").glob("*.txt")), desc=split):
            lines = visdrone_to_yolo(f.read_text(), image_size(d / "images" / f"{f.stem}.jpg"))
            if lines:
                _write_lines(d / "labels" / f.name, lines)


WHEAT_DOMAINS = ("arvalis_1", "arvalis_2", "arvalis_3", "ethz_1", "rres_1", "inrae_1", "usask_1", "utokyo_1",
                 "utokyo_2", "nau_1", "uq_1")


def global_wheat(data: dict) -> None:
    """Global Wheat 2020: the images zip and the YOLO labels zip unzipped into the root and deleted; each domain
    folder is moved to ``images/<domain>`` and its ``<domain>.json`` to ``annotations/`` (no conversion)."""
    root = Path(data["path"])
    images_present = all((root / d).is_dir() or (root / "images" / d).is_dir() for d in WHEAT_DOMAINS)
    urls = [("https://zenodo.org/record/4298502/files/global-wheat-codalab-official.zip", images_present),
            (GH + "GlobalWheat2020_labels.zip", (root / "labels").is_dir())]
    _check(_fetch(urls, root, f"place global-wheat-codalab-official.zip and GlobalWheat2020_labels.zip in {root}, "
                              f"or their extracted contents (the domain folders and labels/) there"), "GlobalWheat2020")
    for d in "annotations", "images", "labels":
        (root / d).mkdir(parents=True, exist_ok=True)
    for d in WHEAT_DOMAINS:
        if (root / d).is_dir() and not (root / "images" / d).exists():
            (root / d).rename(root / "images" / d)
        if (root / f"{d}.json").is_file():
            (root / f"{d}.json").replace(root / "annotations" / f"{d}.json")


def sku110k(data: dict) -> None:
    """SKU-110K: the tar.gz into the root's parent (kept, extracted there), ``SKU110K_fixed`` renamed to the root;
    ``{train,val,test}.txt`` image lists and ``labels/`` from the three annotation csv files."""
    root = Path(data["path"])
    fixed = root.parent / "SKU110K_fixed"
    present = (root / "annotations").is_dir() or fixed.is_dir()
    _check(_fetch([("http://trax-geometry.s3.amazonaws.com/cvpr_challenge/SKU110K_fixed.tar.gz", present)],
                  root.parent, f"place SKU110K_fixed.tar.gz in {root.parent}, or its extracted SKU110K_fixed "
                               f"folder there", delete=False), "SKU-110K")
    if fixed.is_dir():
        if root.exists():
            LOGGER.info(f"Replacing {root} by {fixed}")
            shutil.rmtree(root)
        fixed.rename(root)
    labels: dict[str, list[str]] = {}
    for split in "train", "val", "test":
        files, lab = sku_csv_to_labels(root / "annotations" / f"annotations_{split}.csv")
        _write_lines(root / f"{split}.txt", files)
        for stem, lines in lab.items():
            labels.setdefault(stem, []).extend(lines)
    (root / "labels").mkdir(exist_ok=True)
    for stem, lines in tqdm(labels.items(), desc="SKU-110K labels"):
        _write_lines(root / "labels" / f"{stem}.txt", lines)


O365 = "https://dorc.ks3-cn-beijing.ksyun.com/data-set/2020Objects365%E6%95%B0%E6%8D%AE%E9%9B%86/"


def objects365(data: dict) -> None:
    """Objects365 v2: annotations and image patches (curl, 8 threads, kept) into the root and ``images/<split>``,
    every jpg moved up into ``images/<split>/``, labels from the json via pycocotools.

    Raises:
        ModuleNotFoundError: pycocotools is not installed.
    """
    try:
        from pycocotools.coco import COCO
    except ImportError:
        raise ModuleNotFoundError("Objects365's download needs pycocotools: pip install pycocotools") from None
    root = Path(data["path"])
    problems = []
    for split, patches in ("train", 51), ("val", 44):
        LOGGER.info(f"Processing {split} in {patches} patches ...")
        images, url = root / "images" / split, f"{O365}{split}/"
        ann = "zhiyuan_objv2_train.tar.gz" if split == "train" else "zhiyuan_objv2_val.json"
        problems += _fetch([(url + ann, (root / f"zhiyuan_objv2_{split}.json").is_file())], root,
                           f"place {ann} in {root}", skip=bool(problems), delete=False, curl=True)
        have = any(images.glob("*.jpg"))
        names = ([f"patch{i}.tar.gz" for i in range(51)] if split == "train" else
                 [f"images/v{1 + (i > 15)}/patch{i}.tar.gz" for i in range(44)])  # val: v1 0-15, v2 16-43
        src = url if split == "train" else f"{url}images/v1/ and {url}images/v2/"
        problems += _fetch([(url + n, have) for n in names], images, f"place patch0.tar.gz ... "
                           f"patch{patches - 1}.tar.gz (from {src}) in {images}", skip=bool(problems), delete=False,
                           curl=True, threads=8)
    _check(problems, "Objects365")
    for split in "train", "val":
        images = root / "images" / split
        images.mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for f in tqdm(list(images.rglob("*.jpg")), desc=f"Moving {split} images"):
            if f.parent != images:
                f.replace(images / f.name)
        labels = coco_json_to_labels(COCO(str(root / f"zhiyuan_objv2_{split}.json")))
        for stem, lines in tqdm(labels.items(), desc=f"{split} labels"):
            _write_lines(root / "labels" / split / f"{stem}.txt", lines)


def argoverse(data: dict) -> None:
    """Argoverse-HD: the full zip into the root (kept); ``Argoverse-1.1/tracking`` renamed to ``images``; labels of
    ``Argoverse-HD/annotations/{train,val}.json`` written under ``Argoverse-1.1/labels/``."""
    root = Path(data["path"])
    a11, ann = root / "Argoverse-1.1", root / "Argoverse-HD" / "annotations"
    present = (ann / "val.json").is_file() and ((a11 / "tracking").is_dir() or (a11 / "images").is_dir())
    _check(_fetch([("https://argoverse-hd.s3.us-east-2.amazonaws.com/Argoverse-HD-Full.zip", present)], root,
                  f"place Argoverse-HD-Full.zip in {root}, or its extracted Argoverse-1.1/ and Argoverse-HD/ "
                  f"folders there", delete=False), "Argoverse")
    if (a11 / "tracking").is_dir() and not (a11 / "images").exists():
        (a11 / "tracking").rename(a11 / "images")
    for split in "train", "val":
        labels = argoverse_json_to_labels(json.loads((ann / f"{split}.json").read_text()))
        for key, lines in tqdm(labels.items(), desc=f"Argoverse {split}"):
            _write_lines(a11 / "labels" / key, lines)


def xview(data: dict) -> None:
    """xView (downloaded by hand after registration): labels of ``xView_train.geojson`` into ``labels/train``,
    ``train_images``/``val_images`` renamed to ``images/train``/``images/val``, then an autosplit of the train images.

    Raises:
        DatasetDownloadError: the geojson or the train images are not in place (the message says where).
    """
    root = Path(data["path"])
    geojson = root / "xView_train.geojson"
    train = root / "train_images" if (root / "train_images").is_dir() else root / "images" / "train"
    if not geojson.is_file() or not train.is_dir():
        missing = [str(p) for p in (geojson, root / "train_images") if not p.exists()]
        raise DatasetDownloadError(
            f"xView is downloaded by hand (registration needed) from https://challenge.xviewdataset.org: unpack "
            f"train_labels.zip (xView_train.geojson), train_images.zip (train_images/) and val_images.zip "
            f"(val_images/) into {root}, then rerun. Missing: {missing}")
    LOGGER.info(f"Loading {geojson}...")
    labels_dir = root / "labels" / "train"
    shutil.rmtree(labels_dir, ignore_errors=True)
    labels_dir.mkdir(parents=True)
    for stem, lines in xview_geojson_to_labels(json.loads(geojson.read_text()), train).items():
        _write_lines(labels_dir / f"{stem}.txt", lines)
    (root / "images").mkdir(exist_ok=True)
    for src, dst in ("train_images", "train"), ("val_images", "val"):
        if (root / src).is_dir() and not (root / "images" / dst).exists():
            (root / src).rename(root / "images" / dst)
    autosplit(root / "images" / "train", weights=(0.9, 0.1, 0.0))


def autosplit(path: str | Path = DATASETS_DIR / "coco128/images", weights: Sequence[float] = (0.9, 0.1, 0.0),
              annotated_only: bool = False) -> None:
    """Split the images under ``path`` (recursive, sorted) at random (seed 0) into train/val/test lists.

    Writes ``autosplit_{train,val,test}.txt`` beside ``path`` (earlier ones are deleted; a split with no image gets
    no file), one ``./<image path relative to path.parent>`` per line. ``annotated_only`` keeps only images with a
    label file.
    """
    path = Path(path)
    files = sorted(x for x in path.rglob("*.*") if x.suffix[1:].lower() in IMG_FORMATS)
    indices = random.Random(0).choices([0, 1, 2], weights=weights, k=len(files))
    txt = ["autosplit_train.txt", "autosplit_val.txt", "autosplit_test.txt"]
    for x in txt:
        (path.parent / x).unlink(missing_ok=True)
    LOGGER.info(f"Autosplitting images from {path}" + ", using *.txt labeled images only" * annotated_only)
    splits: list[list[str]] = [[], [], []]
    for i, img in zip(indices, files):
        if not annotated_only or Path(img2label_paths([str(img)])[0]).exists():
            splits[i].append("./" + img.relative_to(path.parent).as_posix())
    for x, lines in zip(txt, splits):
        if lines:
            _write_lines(path.parent / x, lines)


DOWNLOADS: dict[str, Callable[[dict], None]] = {
    "coco": coco, "voc": voc, "visdrone": visdrone, "global_wheat": global_wheat, "sku110k": sku110k,
    "objects365": objects365, "argoverse": argoverse, "xview": xview}


def get_downloader(spec: str) -> Callable[[dict], None] | None:
    """The function for a yaml ``download:`` value: a registered name (case-insensitive) or an ``http(s)://...zip``
    URL; None for anything else (such text is never run)."""
    s = str(spec).strip()
    if s.lower() in DOWNLOADS:
        return DOWNLOADS[s.lower()]
    if s.startswith(("http://", "https://")) and s.split("?")[0].endswith(".zip") and not any(c.isspace() for c in s):
        return partial(download_zip, s)
    return None
