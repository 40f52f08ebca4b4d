"""Embedded demo dataset: coloured shapes on noisy backgrounds, generated offline on first use.

This is a **demo / smoke-test** dataset (``data/shapes.yaml``), not a benchmark: it lets ``train.py`` and
``val.py`` run out of the box without downloads. Images are generated deterministically from a seed with
numpy + OpenCV drawing only, so every machine gets byte-identical label files (and, with the same OpenCV/libjpeg,
identical JPEGs).

Content: ``train`` + ``val`` JPEG images of about ``img_size`` px per side (each side varies by up to
``size_jitter`` px, so aspect ratios vary and rectangular batches matter), 0..``max_objects`` non-overlapping
filled shapes per image (classes from ``names``: circle, square, triangle, star, ellipse) with random size,
colour and rotation on a gradient + blotchy + pixel-noise background with a few distractor lines; about
``empty_fraction`` of the images have no objects (empty label file). Boxes are exact: the pixel extent of
the drawn polygon.

Layout written: ``<root>/images/{train,val}/*.jpg``, ``<root>/labels/{train,val}/*.txt``, ``<root>/README.txt``.
Generation goes into a temporary sibling folder that is renamed to ``<root>`` at the end, so an interrupted
run never leaves a half dataset.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import yaml

from utils.general import LOGGER

SHAPES = ("circle", "square", "triangle", "star", "ellipse")  # the shapes the generator can draw
_SPLITS = {"train": 0, "val": 1}


def _polygon(shape: str, r: float, angle: float, rng: np.random.Generator) -> np.ndarray:
    """(k, 2) outline of ``shape`` with circumradius ``r`` centred at the origin, rotated by ``angle``."""
    if shape == "circle":
        t = np.linspace(0, 2 * math.pi, 48, endpoint=False)
        pts = np.stack((np.cos(t), np.sin(t)), 1) * r
    elif shape == "ellipse":
        t = np.linspace(0, 2 * math.pi, 48, endpoint=False)
        pts = np.stack((np.cos(t) * r, np.sin(t) * r * rng.uniform(0.4, 0.7)), 1)
    elif shape in ("square", "triangle"):
        k = 4 if shape == "square" else 3
        t = np.arange(k) * 2 * math.pi / k
        pts = np.stack((np.cos(t), np.sin(t)), 1) * r
    elif shape == "star":
        t = np.arange(10) * math.pi / 5
        rad = np.where(np.arange(10) % 2 == 0, r, r * 0.45)
        pts = np.stack((np.cos(t) * rad, np.sin(t) * rad), 1)
    else:
        raise ValueError(f"unknown synthetic shape '{shape}' (known: {', '.join(SHAPES)})")
    c, s = math.cos(angle), math.sin(angle)
    return pts @ np.array([[c, s], [-s, c]])


def _background(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """(h, w, 3) float32 textured background: colour gradient + low-frequency blotches."""
    c0, c1 = rng.uniform(30, 225, 3), rng.uniform(30, 225, 3)
    a = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = (xx * math.cos(a) + yy * math.sin(a)) / max(h, w)
    t = (t - t.min()) / (t.max() - t.min() + 1e-6)
    im = c0 * (1 - t[..., None]) + c1 * t[..., None]
    blotches = cv2.resize(rng.normal(0, 20, (6, 6, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    return (im + blotches).astype(np.float32)


def _draw_image(rng: np.random.Generator, classes: list[int], names: list[str], img_size: int, size_jitter: int,
                max_objects: int, empty_fraction: float, wh: tuple[int, int] | None = None
                ) -> tuple[np.ndarray, list[str]]:
    """One BGR uint8 image and its label lines (``wh``: a fixed (width, height) instead of a jittered size)."""
    w, h = (int(img_size + rng.integers(-size_jitter, size_jitter + 1)) for _ in range(2))
    if wh is not None:
        w, h = wh
    im = _background(h, w, rng)
    for _ in range(int(rng.integers(0, 5))):  # distractor lines (not objects)
        p1, p2 = (int(rng.integers(0, w)), int(rng.integers(0, h))), (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.line(im, p1, p2, tuple(float(x) for x in rng.uniform(0, 255, 3)), int(rng.integers(1, 3)))
    n = 0 if rng.random() < empty_fraction else int(rng.integers(1, max_objects + 1))
    boxes, lines = [], []
    for _ in range(n):
        cls = int(rng.choice(classes))
        r = rng.uniform(0.05, 0.18) * min(w, h)
        for _attempt in range(30):  # find a place inside the image that overlaps no other object
            pts = _polygon(names[cls], r, rng.uniform(0, 2 * math.pi), rng)
            lo, hi = pts.min(0), pts.max(0)
            centre = rng.uniform(-lo + 1, np.array([w, h]) - hi - 2)
            poly = np.round(pts + centre).astype(np.int32)
            x1, y1 = poly.min(0)
            x2, y2 = poly.max(0) + 1  # pixel edges: the box covers every drawn pixel
            if all(x1 >= bx2 + 2 or x2 + 2 <= bx1 or y1 >= by2 + 2 or y2 + 2 <= by1 for bx1, by1, bx2, by2 in boxes):
                break
        else:
            continue  # no room left
        local = im[y1:y2, x1:x2].reshape(-1, 3).mean(0)
        colour = rng.uniform(0, 255, 3)
        if np.abs(colour - local).sum() < 180:  # keep the object visible against its background
            colour = 255 - local
        cv2.fillPoly(im, [poly], tuple(float(x) for x in colour), lineType=cv2.LINE_8)
        boxes.append((x1, y1, x2, y2))
        lines.append(f"{cls} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}")
    im += rng.standard_normal((h, w, 3), dtype=np.float32) * 6  # sensor noise
    return np.clip(im, 0, 255).astype(np.uint8), lines


def generate_dataset(root: str | Path, names: list[str] | tuple[str, ...] = SHAPES, seed: int = 0,
                     train: int = 240, val: int = 60, img_size: int = 320, size_jitter: int = 64,
                     max_objects: int = 6, empty_fraction: float = 0.08, jpeg_quality: int = 90) -> Path:
    """Generate the shapes demo dataset into ``root`` (see the module docstring).

    Args:
        root: dataset folder to create; must not exist yet.
        names: class names in class-id order, each one of :data:`SHAPES`.
        seed: random seed; the same arguments always give the same dataset.
        train, val: number of images per split.
        img_size, size_jitter: each image side is ``img_size ± size_jitter`` px.
        max_objects: at most this many objects per image.
        empty_fraction: probability of an image without objects.
        jpeg_quality: JPEG quality of the written images.

    Returns:
        ``root``.

    Raises:
        FileExistsError: ``root`` already exists (delete it to regenerate).
        ValueError: a name that is not a known shape.
    """
    root = Path(root)
    names = [str(x) for x in names]
    unknown = [x for x in names if x not in SHAPES]
    if unknown:
        raise ValueError(f"synthetic dataset: unknown class names {unknown} (known shapes: {', '.join(SHAPES)})")
    if root.exists():
        raise FileExistsError(f"{root} exists but is not a complete dataset; delete it to regenerate the demo data")
    t0 = time.time()
    LOGGER.info(f"Generating the synthetic shapes demo dataset (seed {seed}: {train} train + {val} val images, "
                f"{len(names)} classes) in {root} ...")
    tmp = root.parent / f".{root.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    n_obj = n_empty = 0
    try:
        for split, count in (("train", train), ("val", val)):
            (tmp / "images" / split).mkdir(parents=True)
            (tmp / "labels" / split).mkdir(parents=True)
            for i in range(count):
                rng = np.random.default_rng([seed, _SPLITS[split], i])  # independent stream per image
                im, lines = _draw_image(rng, list(range(len(names))), names, img_size, size_jitter, max_objects,
                                        empty_fraction)
                stem = f"{split}_{i:04d}"
                if not cv2.imwrite(str(tmp / "images" / split / f"{stem}.jpg"), im,
                                   [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]):
                    raise OSError(f"could not write {tmp / 'images' / split / stem}.jpg")
                (tmp / "labels" / split / f"{stem}.txt").write_text("".join(x + "\n" for x in lines))
                n_obj += len(lines)
                n_empty += not lines
        (tmp / "README.txt").write_text(
            f"Synthetic shapes demo dataset generated by utils/synthetic.py (seed={seed}, train={train}, val={val}, "
            f"img_size={img_size}, size_jitter={size_jitter}, max_objects={max_objects}, "
            f"empty_fraction={empty_fraction}).\nClasses: {names}.\nDemo / smoke-test data only. Delete this "
            f"folder to regenerate it.\n")
        try:
            os.rename(tmp, root)  # atomic: the dataset appears complete or not at all
        except OSError:
            if not root.exists():
                raise
            LOGGER.info(f"{root} was created meanwhile by another process; using it")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    LOGGER.info(f"Synthetic dataset ready: {train + val} images, {n_obj} objects, {n_empty} background images "
                f"({time.time() - t0:.1f}s) in {root}")
    return root


SAMPLE_IMAGES = {"shapes_landscape.jpg": (640, 480), "shapes_portrait.jpg": (480, 640)}  # name: (w, h)


def sample_images(folder: str | Path, seed: int = 0, jpeg_quality: int = 90) -> list[Path]:
    """Write the shippable sample images of ``data/images`` (drawn here, so free of any licence) into ``folder``.

    Each shows up to 6 shapes on a textured background, as the demo dataset does; the same seed gives the same
    pixels before JPEG encoding. Returns the written files.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i, (name, wh) in enumerate(SAMPLE_IMAGES.items()):
        rng = np.random.default_rng([seed, 99, i])
        im, _ = _draw_image(rng, list(range(len(SHAPES))), list(SHAPES), 0, 0, 6, 0.0, wh=wh)
        if not cv2.imwrite(str(folder / name), im, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]):
            raise OSError(f"could not write {folder / name}")
        files.append(folder / name)
    return files


def tiny_dataset(folder: str | Path, train: int = 32, val: int = 16, img_size: int = 96) -> Path:
    """A small shapes dataset in ``folder/shapes`` (generated once) and its yaml ``folder/tiny.yaml``, for smoke
    tests and dry runs; returns the yaml."""
    folder = Path(folder)
    root = folder / "shapes"
    if not root.exists():
        generate_dataset(root, train=train, val=val, img_size=img_size, size_jitter=img_size // 6)
    f = folder / "tiny.yaml"
    f.write_text(yaml.safe_dump({"path": str(root.resolve()), "train": "images/train", "val": "images/val",
                                 "nc": len(SHAPES), "names": list(SHAPES)}))
    return f
