"""Annotation converters of the official datasets to YOLO label lines ``cls xc yc w h`` (normalised).

Pure functions: they read annotation text/data (and, where the size is not in the annotations, image sizes) and
return label lines; fetching and writing files is :mod:`utils.dataset_downloads`. Each keeps the formula and the
numeric format of the original conversion (``str()`` of the float, ``%.5f`` or ``%.6f``); a ``str()`` value may differ
from a file made by another implementation in its last digit (float rounding), never more.
"""

from __future__ import annotations

import csv
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from PIL import Image

from utils.boxes import xyxy2xywh, xyxy2xywhn
from utils.general import LOGGER

# xView type_id -> class index (60 classes); every other type_id is dropped
XVIEW_CLASSES = dict(zip(
    (11, 12, 13, 15, 17, 18, 19, 20, 21, 23, 24, 25, 26, 27, 28, 29, 32, 33, 34, 35, 36, 37, 38, 40, 41, 42, 44, 45,
     47, 49, 50, 51, 52, 53, 54, 55, 56, 57, 59, 60, 61, 62, 63, 64, 65, 66, 71, 72, 73, 74, 76, 77, 79, 83, 84, 86,
     89, 91, 93, 94), range(60)))
ARGOVERSE_SIZE = (1920, 1200)  # every Argoverse-HD image is 1920x1200; boxes are normalised by it


def voc_xml_to_yolo(xml: str | Path, names: Sequence[str]) -> list[str]:
    """Lines of one VOC annotation file (a path, or the XML text).

    Objects whose name is not in ``names`` or marked ``difficult`` (1) are dropped. With the image size (W, H) from
    ``size``: ``x = ((xmin + xmax)/2 - 1)/W``, ``y = ((ymin + ymax)/2 - 1)/H``, ``w = (xmax - xmin)/W``,
    ``h = (ymax - ymin)/H``, each written with ``str()``.
    """
    text = Path(xml).read_text(encoding="utf-8") if isinstance(xml, Path) or not str(xml).lstrip().startswith("<") \
        else str(xml)
    root = ET.fromstring(text)
    size = root.find("size")
    w, h = int(size.find("width").text), int(size.find("height").text)
    lines = []
    for obj in root.iter("object"):
        cls = obj.find("name").text
        difficult = obj.find("difficult")
        if cls not in names or (difficult is not None and int(difficult.text) == 1):
            continue
        bb = obj.find("bndbox")
        xmin, xmax, ymin, ymax = (float(bb.find(k).text) for k in ("xmin", "xmax", "ymin", "ymax"))
        box = (((xmin + xmax) / 2 - 1) / w, ((ymin + ymax) / 2 - 1) / h, (xmax - xmin) / w, (ymax - ymin) / h)
        lines.append(" ".join(str(a) for a in (names.index(cls), *box)))
    return lines


def visdrone_to_yolo(text: str, image_size: tuple[int, int]) -> list[str]:
    """Lines of one VisDrone annotation text (rows ``left,top,w,h,score,category,...``) for an image of
    ``image_size = (W, H)``.

    Rows with score ``0`` (ignored regions) are skipped; ``cls = category - 1``; box
    ``((left + w/2)/W, (top + h/2)/H, w/W, h/H)`` in ``%.6f``.
    """
    W, H = image_size
    lines = []
    for row in text.strip().splitlines():
        row = row.split(",")
        if row[4] == "0":
            continue
        left, top, w, h = map(int, row[:4])
        box = ((left + w / 2) / W, (top + h / 2) / H, w / W, h / H)
        lines.append(f"{int(row[5]) - 1} " + " ".join(f"{x:.6f}" for x in box))
    return lines


def image_size(file: str | Path) -> tuple[int, int]:
    """(width, height) of an image file, read from its header."""
    with Image.open(file) as im:
        return im.size


def xview_geojson_to_labels(data: dict, image_dir: str | Path,
                            size: Callable[[Path], tuple[int, int]] = image_size) -> dict[str, list[str]]:
    """Label lines per image stem from the xView ``xView_train.geojson`` dict.

    Each feature with non-empty ``bounds_imcoords`` (``x1,y1,x2,y2`` pixels) of an existing image
    ``image_dir/<image_id>`` gives ``cls xc yc w h`` (``%.6f``): ``type_id`` mapped by :data:`XVIEW_CLASSES`, the box
    clipped to the image (size from ``size``), normalised and converted to xywh. Features of missing images are
    skipped silently; a bad box or an unmapped ``type_id`` is skipped with a warning.
    """
    image_dir, sizes = Path(image_dir), {}
    labels: dict[str, list[str]] = defaultdict(list)
    for feature in data["features"]:
        p = feature["properties"]
        if not p.get("bounds_imcoords"):
            continue
        file = image_dir / p["image_id"]
        if not file.exists():
            continue
        try:
            box = np.array(p["bounds_imcoords"].split(","), dtype=int)
            if box.shape != (4,):
                raise ValueError(f"bounds_imcoords has {box.size} values, expected 4")
            type_id = int(p["type_id"])
            if type_id not in XVIEW_CLASSES:
                raise KeyError(f"type_id {type_id} is not one of the 60 classes")
            if file not in sizes:
                sizes[file] = size(file)
            w, h = sizes[file]
            xywh = xyxy2xywhn(box[None].astype(float), w=w, h=h, clip=True)[0]  # (1, 4) -> (4,)
            labels[file.stem].append(f"{XVIEW_CLASSES[type_id]} " + " ".join(f"{x:.6f}" for x in xywh))
        except Exception as e:
            LOGGER.warning(f"WARNING: skipping one label for {file}: {e}")
    return dict(labels)


def sku_csv_to_labels(rows: str | Path | Iterable[Sequence[str]]) -> tuple[list[str], dict[str, list[str]]]:
    """SKU-110K annotations (no header; ``image, x1, y1, x2, y2, class, image_width, image_height``).

    Returns ``(image list lines, labels)``: ``./images/<image>`` per unique image (sorted), and per image stem the
    lines ``0 xc yc w h`` (xyxy divided by the image size, then xywh, ``%.5f``); the class column is ignored.
    """
    if isinstance(rows, (str, Path)):
        with open(rows, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    labels: dict[str, list[str]] = defaultdict(list)
    images = set()
    for r in rows:
        if not r:
            continue
        image, (x1, y1, x2, y2), (w, h) = r[0], map(float, r[1:5]), map(float, r[6:8])
        images.add(image)
        xywh = xyxy2xywh(np.array([[x1 / w, y1 / h, x2 / w, y2 / h]]))[0]  # (1, 4) -> (4,)
        labels[Path(image).stem].append("0 " + " ".join(f"{x:.5f}" for x in xywh))
    return [f"./images/{s}" for s in sorted(images)], dict(labels)


def argoverse_json_to_labels(data: dict) -> dict[str, list[str]]:
    """Label lines per label file (``<sequence dir>/<image name with 'txt' for its last 3 characters>``) from an
    Argoverse-HD annotation dict (``images``, ``annotations``, ``seq_dirs``).

    ``cls = category_id``; box ``((x + w/2)/1920, (y + h/2)/1200, w/1920, h/1200)`` written with ``str()``.
    """
    W, H = ARGOVERSE_SIZE
    labels: dict[str, list[str]] = defaultdict(list)
    for a in data["annotations"]:
        img = data["images"][a["image_id"]]  # image_id is the list index
        x, y, w, h = a["bbox"]  # top-left x, y, width, height in pixels
        box = ((x + w / 2) / W, (y + h / 2) / H, w / W, h / H)
        key = f"{data['seq_dirs'][img['sid']]}/{img['name'][:-3]}txt"
        labels[key].append(" ".join(str(v) for v in (a["category_id"], *box)))
    return dict(labels)


def coco_json_to_labels(coco: Any) -> dict[str, list[str]]:
    """Label lines per image stem from a ``pycocotools.coco.COCO`` object (Objects365 uses this format).

    The class index is the category's position in ``loadCats(getCatIds())``; lines are grouped by class. Each bbox
    (top-left x, y, w, h) becomes xyxy, is clipped to the image, normalised and converted to xywh (``%.5f``). Crowd
    boxes are kept; an image that fails is reported and skipped.
    """
    labels: dict[str, list[str]] = defaultdict(list)
    for cid, cat in enumerate(coco.loadCats(coco.getCatIds())):
        cat_ids = coco.getCatIds(catNms=[cat["name"]])
        for im in coco.loadImgs(coco.getImgIds(catIds=cat_ids)):
            try:
                stem = Path(im["file_name"]).stem
                for a in coco.loadAnns(coco.getAnnIds(imgIds=im["id"], catIds=cat_ids, iscrowd=None)):
                    x, y, w, h = a["bbox"]
                    xyxy = np.array([[x, y, x + w, y + h]], dtype=float)
                    xywh = xyxy2xywhn(xyxy, w=im["width"], h=im["height"], clip=True)[0]  # (1, 4) -> (4,)
                    labels[stem].append(f"{cid} " + " ".join(f"{v:.5f}" for v in xywh))
            except Exception as e:
                LOGGER.warning(f"WARNING: skipping image {im.get('file_name')}: {type(e).__name__}: {e}")
    return dict(labels)
