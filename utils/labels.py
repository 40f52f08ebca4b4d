"""Image/label file discovery and verification, and building or reusing the label cache.

Image and label files: ``.../images/.../x.jpg`` has its labels in ``.../labels/.../x.txt`` (the last ``images``
folder of the path becomes ``labels``), one ``class x y w h`` row (normalised) or ``class x1 y1 x2 y2 ...`` polygon
row per object. Label files and ``.txt`` list files may start with a UTF-8 byte order mark, which is ignored.

Bad-input policy (stricter and friendlier than v6.1): every problem is logged as a warning that names the file
(and ``file:line`` for label rows) and the reason, and the run goes on without losing anything valid:

* an unusable image (zero bytes, not an image, < 10 px, unsupported format, or not decodable by OpenCV's
  ``cv2.imread``, which the loader uses) is dropped and counted as corrupt; the scan decodes every image exactly
  as the loader does and takes its ``(w, h)`` from the decoded array, so the scan and the loader agree;
* a JPEG without its end marker that still decodes is kept, with a warning; user files are never rewritten;
* a bad label row (field count, non-numeric, negative, out of range, zero size, non-integer class) drops only
  that row; duplicate rows are removed; a missing label file means a background image, an empty one no labels.
  ``class >= nc`` is checked by the dataset (see :func:`class_range_problems`), not here, so the cache does not
  depend on ``nc``.

The cache file format, its hash and its location are in :mod:`utils.label_cache` (names re-exported here).
"""

from __future__ import annotations

import os
import re
from multiprocessing.pool import ThreadPool
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from utils.general import NUM_THREADS
from utils.label_cache import (CACHE_VERSION, dir_writeable, fallback_dirs,  # noqa: F401 (re-exports)
                               fallback_path, get_hash, load_label_cache, read_label_cache, save_label_cache,
                               writeable_location)

IMG_FORMATS = ["bmp", "dng", "jpeg", "jpg", "mpo", "png", "tif", "tiff", "webp"]  # image suffixes
VID_FORMATS = ["asf", "avi", "gif", "m4v", "mkv", "mov", "mp4", "mpeg", "mpg", "wmv"]  # video suffixes
HELP_URL = "See https://github.com/ultralytics/yolov5/wiki/Train-Custom-Data"
COORD_EPS = 1e-6  # rounding slack allowed outside [0, 1] for coordinates (values are clipped back)
MAX_ROW_MSGS = 10  # per label file; further bad rows are summarised in one line
BAR_FORMAT = "{l_bar}{bar:10}{r_bar}{bar:-10b}"


def img2label_paths(img_paths: list[str]) -> list[str]:
    """Label path of each image: last ``/images/`` -> ``/labels/``, extension -> ``.txt``."""
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    return [sb.join(str(x).rsplit(sa, 1)).rsplit(".", 1)[0] + ".txt" for x in img_paths]


def img_files_from_path(path: str | Path | list, prefix: str = "") -> list[str]:
    """Sorted image files of a folder (recursive), a ``.txt`` list file, or a list of those.

    Raises:
        FileNotFoundError: a folder or list file does not exist, or no images are found (message names it).
    """
    files: list[str] = []
    for p in path if isinstance(path, (list, tuple)) else [path]:
        p = Path(p)
        if p.is_dir():
            files += [str(x) for x in p.glob("**/*.*")]
        elif p.is_file():
            parent = str(p.parent) + os.sep
            lines = [x.strip() for x in p.read_text(encoding="utf-8-sig").splitlines() if x.strip()]
            files += [parent + x[2:] if x.startswith("./") else x for x in lines]  # ./ = relative to the list
        else:
            raise FileNotFoundError(f"{prefix}Error loading data from {path}: {prefix}{p} does not exist\n{HELP_URL}")
    img_files = sorted(x.replace("/", os.sep) for x in files if x.split(".")[-1].lower() in IMG_FORMATS)
    if not img_files:
        raise FileNotFoundError(f"{prefix}Error loading data from {path}: {prefix}No images found\n{HELP_URL}")
    return img_files


def exif_size(img: Image.Image) -> tuple[int, int]:
    """(w, h) of a PIL image after its EXIF orientation (tags 6 and 8 swap width and height)."""
    s = img.size
    try:
        if img.getexif().get(274) in (6, 8):  # 274 = Orientation
            s = (s[1], s[0])
    except Exception:  # unreadable EXIF: keep the stored size
        pass
    return s


def exif_transpose(image: Image.Image) -> Image.Image:
    """``image`` turned upright by its EXIF orientation (tag 0x0112), with that tag removed from its EXIF.

    Orientations 2-8 map to flip left-right, rotate 180, flip top-bottom, transpose, rotate 270, transverse and
    rotate 90; a missing tag or orientation 1 returns ``image`` itself (PIL's ``ImageOps.exif_transpose`` also
    rewrites other tags and XMP, which this does not).
    """
    t = getattr(Image, "Transpose", Image)  # Pillow >= 9.1 keeps the constants in an enum
    methods = {2: t.FLIP_LEFT_RIGHT, 3: t.ROTATE_180, 4: t.FLIP_TOP_BOTTOM, 5: t.TRANSPOSE, 6: t.ROTATE_270,
               7: t.TRANSVERSE, 8: t.ROTATE_90}
    method = methods.get(image.getexif().get(0x0112, 1))
    if method is None:
        return image
    image = image.transpose(method)  # a new image: the caller's keeps its EXIF
    exif = image.getexif()
    exif.pop(0x0112, None)
    image.info["exif"] = exif.tobytes()
    return image


class LabelCheck(NamedTuple):
    """Result of :func:`verify_image_label` for one image."""

    im_file: str | None  # None when the image is dropped
    labels: np.ndarray  # (n, 5) float32 [cls, x, y, w, h] normalised
    shape: tuple[int, int] | None  # (w, h) of the image as cv2.imread decodes it (EXIF orientation applied)
    segments: list  # n (k, 2) float32 polygons when the file has polygon rows, else []
    nm: int  # 1 if the label file is missing
    nf: int  # 1 if the label file is found
    ne: int  # 1 if it gives no labels
    nc: int  # 1 if the image is dropped as corrupt
    msgs: list[str]  # warnings


class _BadImage(Exception):
    """An image that cannot be used; the message is the reason."""


def _decoded_shape(im_file: str, truncated: bool) -> tuple[int, int]:
    """(w, h) of the image decoded with ``cv2.imread`` exactly as the loader does; :class:`_BadImage` if it fails."""
    try:
        im = cv2.imread(im_file)
    except cv2.error as e:  # e.g. larger than OpenCV's pixel limit
        raise _BadImage(f"OpenCV cannot decode it ({str(e).strip()})") from None
    if im is None:
        raise _BadImage("truncated JPEG (no end marker) that cannot be decoded" if truncated else
                        "OpenCV cannot decode it (cv2.imread returned None; the loader reads images with it)")
    return im.shape[1], im.shape[0]


def _check_image(im_file: str, prefix: str) -> tuple[tuple[int, int], list[str]]:
    """(w, h) of a usable image and warnings; raises :class:`_BadImage` with the reason otherwise."""
    if os.path.getsize(im_file) == 0:
        raise _BadImage("empty file (0 bytes)")
    try:
        with Image.open(im_file) as im:
            fmt = (im.format or "").lower()
            im.verify()  # must come first after open
    except UnidentifiedImageError:
        raise _BadImage("not an image file (unrecognised content)") from None
    except Exception as e:
        raise _BadImage(f"undecodable image ({type(e).__name__}: {e})") from None
    if fmt not in IMG_FORMATS:
        raise _BadImage(f"invalid image format {fmt}")
    truncated = False
    if fmt in ("jpg", "jpeg"):
        with open(im_file, "rb") as f:
            f.seek(-2, 2)
            truncated = f.read() != b"\xff\xd9"
    shape = _decoded_shape(im_file, truncated)  # EXIF orientation applied, as in the loader
    if shape[0] < 10 or shape[1] < 10:
        raise _BadImage(f"image size {shape} <10 pixels")
    msgs = [f"{prefix}WARNING: {im_file}: JPEG has no end marker (truncated?) but decodes; "
            "used as is (file not modified)"] if truncated else []
    return shape, msgs


def _row_problem(v: list[float], k: int) -> str | None:
    """Why a parsed row (class + coordinates) is unusable, or None."""
    cls, xy = v[0], np.array(v[1:])
    if cls < 0 or (xy < -COORD_EPS).any():
        return f"negative label values {[x for x in v if x < 0]}"
    if not float(cls).is_integer():
        return f"non-integer class {cls:g}"
    if (xy > 1 + COORD_EPS).any():
        return f"non-normalized or out of bounds coordinates {[x for x in v[1:] if x > 1]}"
    if k == 5:
        w, h = v[3], v[4]
    else:
        pts = xy.reshape(-1, 2)
        w, h = np.ptp(pts[:, 0]), np.ptp(pts[:, 1])
    if w <= 0 or h <= 0:
        return f"zero-size box (w={w:g}, h={h:g})"
    return None


def parse_label_file(lb_file: str, prefix: str = "") -> tuple[np.ndarray, list, list[str], list[int]]:
    """Read a label file, dropping bad rows one by one.

    Returns:
        ``(labels (n, 5) float32, segments, warnings, line numbers (1-based) of the kept rows)``; segments are
        [] unless the file has polygon rows, then one (k, 2) polygon per kept row (box rows become rectangles).

    Raises:
        OSError / UnicodeDecodeError: the file cannot be read as text.
    """
    with open(lb_file, encoding="utf-8-sig") as f:  # a leading byte order mark is not part of row 1
        lines = f.read().splitlines()
    rows, polys, line_nos, msgs, n_bad, n_poly = [], [], [], [], 0, 0
    for i, line in enumerate(lines, 1):
        parts = line.split()
        if not parts:
            continue  # blank line
        k, problem = len(parts), None
        if k != 5 and not (k > 8 and k % 2 == 1):
            problem = (f"labels require 5 columns, {k} columns detected" if k <= 8 else
                       f"polygon rows need class + x,y pairs (odd count), {k} values detected")
        else:
            try:
                v = [float(x) for x in parts]
                problem = None if np.isfinite(v).all() else f"non-finite value in {line.strip()!r}"
            except ValueError:
                problem = f"non-numeric value in {line.strip()!r}"
            problem = problem or _row_problem(v, k)
        if problem:
            n_bad += 1
            if n_bad <= MAX_ROW_MSGS:
                msgs.append(f"{prefix}WARNING: {lb_file}:{i}: label row ignored: {problem}")
            continue
        xy = np.clip(np.array(v[1:], dtype=np.float32), 0, 1)
        if k == 5:
            x, y, w, h = xy
            rows.append([v[0], x, y, w, h])
            polys.append(np.array([[x - w / 2, y - h / 2], [x + w / 2, y - h / 2],
                                   [x + w / 2, y + h / 2], [x - w / 2, y + h / 2]], dtype=np.float32))
        else:
            pts = xy.reshape(-1, 2)
            (x1, y1), (x2, y2) = pts.min(0), pts.max(0)
            rows.append([v[0], (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1])
            polys.append(pts)
            n_poly += 1
        line_nos.append(i)
    if n_bad > MAX_ROW_MSGS:
        msgs.append(f"{prefix}WARNING: {lb_file}: {n_bad - MAX_ROW_MSGS} more label rows ignored (not listed)")
    labels = np.array(rows, dtype=np.float32).reshape(-1, 5)
    segments = polys if n_poly else []
    if len(labels):
        _, first = np.unique(labels, axis=0, return_index=True)
        if len(first) < len(labels):  # exact duplicates: keep the first of each, in file order
            keep = np.sort(first)
            msgs.append(f"{prefix}WARNING: {lb_file}: {len(labels) - len(keep)} duplicate labels removed")
            labels = labels[keep]
            segments = [segments[j] for j in keep] if segments else []
            line_nos = [line_nos[j] for j in keep]
    return labels, segments, msgs, line_nos


def _dropped(msg: str) -> LabelCheck:
    return LabelCheck(None, np.zeros((0, 5), np.float32), None, [], 0, 0, 0, 1, [msg])


def verify_image_label(args: tuple[str, str, str]) -> LabelCheck:
    """Check one ``(im_file, lb_file, prefix)`` pair with the bad-input policy of this module."""
    im_file, lb_file, prefix = args
    try:
        shape, msgs = _check_image(im_file, prefix)
    except (_BadImage, OSError) as e:
        return _dropped(f"{prefix}WARNING: {im_file}: ignoring corrupt image: {e}")
    if not os.path.isfile(lb_file):  # background image
        return LabelCheck(im_file, np.zeros((0, 5), np.float32), shape, [], 1, 0, 0, 0, msgs)
    try:
        labels, segments, lmsgs, _ = parse_label_file(lb_file, prefix)
    except (OSError, UnicodeDecodeError) as e:
        return _dropped(f"{prefix}WARNING: {im_file}: ignoring image, its label file {lb_file} is unreadable: {e}")
    except Exception as e:  # safety net: one odd file must not stop the scan
        return _dropped(f"{prefix}WARNING: {im_file}: ignoring corrupt image/label: {type(e).__name__}: {e}")
    return LabelCheck(im_file, labels, shape, segments, 0, 1, int(len(labels) == 0), 0, msgs + lmsgs)


def class_range_problems(lb_file: str, labels: np.ndarray, nc: int, prefix: str = "") -> tuple[np.ndarray, list[str]]:
    """Mask of rows of ``labels`` (from ``lb_file``) with ``class < nc`` and a warning per other row (file:line)."""
    ok = labels[:, 0] < nc
    if ok.all():
        return ok, []
    try:  # re-read the file only to name the lines
        _, _, _, line_nos = parse_label_file(lb_file)
        if len(line_nos) != len(labels):
            raise ValueError
    except (OSError, UnicodeDecodeError, ValueError):
        line_nos = ["?"] * len(labels)
    msgs = [f"{prefix}WARNING: {lb_file}:{line_nos[j]}: label row ignored: class {int(labels[j, 0])} >= nc {nc}"
            for j in np.flatnonzero(~ok)]
    return ok, msgs


def count_row_issues(msgs: list[str]) -> tuple[int, int]:
    """(label rows ignored, duplicate rows removed) counted from the warnings of a scan."""
    rows = dups = 0
    for m in msgs:
        if re.search(r":(\d+|\?): label row ignored: ", m):
            rows += 1
        elif r := re.search(r": (\d+) more label rows ignored", m):
            rows += int(r.group(1))
        elif d := re.search(r": (\d+) duplicate labels removed", m):
            dups += int(d.group(1))
    return rows, dups


def summary_line(results: tuple, rows: int = 0, dups: int = 0) -> str:
    """``{nf} found, {nm} missing, {ne} empty, {nc} corrupt`` plus row counts when non-zero."""
    nf, nm, ne, nc = results[:4]
    s = f"{nf} found, {nm} missing, {ne} empty, {nc} corrupt"
    return s + (f", {rows} label rows ignored" if rows else "") + (f", {dups} duplicate labels removed" if dups else "")


def scan_labels(img_files: list[str], label_files: list[str], desc: str, prefix: str = "",
                hash_: str | None = None) -> dict:
    """Verify every image/label pair in a thread pool; returns the in-memory cache dict (see utils.label_cache)."""
    x: dict = {}
    nm = nf = ne = nc = 0
    msgs: list[str] = []
    with ThreadPool(NUM_THREADS) as pool:
        it = pool.imap(verify_image_label, zip(img_files, label_files, [prefix] * len(img_files)))
        pbar = tqdm(it, desc=desc, total=len(img_files), bar_format=BAR_FORMAT, leave=False)
        for r in pbar:
            nm, nf, ne, nc = nm + r.nm, nf + r.nf, ne + r.ne, nc + r.nc
            if r.im_file:
                x[r.im_file] = [r.labels, r.shape, r.segments]
            msgs += r.msgs
            pbar.desc = f"{desc}{nf} found, {nm} missing, {ne} empty, {nc} corrupt"
        pbar.close()
    x["hash"] = hash_ or get_hash(label_files + img_files)  # callers that already hashed pass it in
    x["results"] = nf, nm, ne, nc, len(img_files)
    x["msgs"] = msgs
    x["version"] = CACHE_VERSION
    return x


def load_or_scan_labels(img_files: list[str], label_files: list[str], cache_path: Path,
                        prefix: str = "") -> tuple[dict, Path | None, bool]:
    """Reuse a valid cache (primary location, then fallback) or scan and save a new one.

    Returns:
        ``(cache dict, path it was read from / written to (None if not saved), reused)``.
    """
    hash_ = get_hash(label_files + img_files)
    candidates = [cache_path]
    if not dir_writeable(cache_path.parent)[0]:
        alt = fallback_path(cache_path)
        candidates += [alt] if alt else []
    for p in candidates:
        if p.is_file() and (cache := load_label_cache(p, hash_)) is not None:
            return cache, p, True
    desc = f"{prefix}Scanning '{cache_path.parent / cache_path.stem}' images and labels..."
    cache = scan_labels(img_files, label_files, desc, prefix, hash_)
    return cache, save_label_cache(cache, cache_path, prefix), False
