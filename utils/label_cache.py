"""The label cache file: its pickle-free format, its change-detecting hash and where it is written.

Format: a NumPy ``.npz`` (zip) archive written under the ``.cache`` name, holding plain arrays only, so loading it
never runs code (it is read with ``allow_pickle=False``):

* ``files`` (N,) unicode: image paths, in scan order;
* ``labels`` (sum of counts, 5) float32 ``[cls, x, y, w, h]`` and ``label_counts`` (N,) int64;
* ``shapes`` (N, 2) int64: ``(w, h)`` of each decoded image;
* ``seg_points`` (P, 2) float32, ``seg_sizes`` (S,) int64 points per polygon, ``seg_counts`` (N,) int64
  polygons per image (0 when the label file has no polygon rows);
* ``meta`` 0-d unicode: JSON ``{"format", "version", "hash", "results", "msgs"}``.

Any file that is not exactly this (a YOLOv5 v6.1 cache, which is a pickled dict, a malicious pickle, a truncated
or foreign file, another version or hash) is treated as absent and rebuilt; it is never unpickled.

In memory the cache is the dict used by :class:`utils.datasets.LoadImagesAndLabels`:
``{im_file: [labels (n, 5) float32, (w, h), segments], "hash": str, "results": (nf, nm, ne, nc, n),
"msgs": [str], "version": CACHE_VERSION}``.

Location: ``<labels dir>.cache`` (or ``<list file>.cache``). When that folder is not writeable (a read-only dataset;
read-only permission bits are respected even when running as root) the cache goes to a per-user fallback folder:
``$YOLOV5_CACHE_DIR`` if set, else ``<repo>/runs/.cache`` (git-ignored), else ``<tmp>/yolov5-cache-<user>``,
under the name ``<md5 of the primary cache path>[:16]-<primary name>``. The "not writeable" warning is logged once
per folder per process.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import tempfile
from multiprocessing.pool import ThreadPool
from pathlib import Path

import numpy as np

from utils.general import LOGGER, NUM_THREADS, ROOT, atomic_write

CACHE_VERSION = 0.7  # 0.7: pickle-free .npz archive and a size + mtime + label-content hash (v6.1 wrote 0.6)
CACHE_FORMAT = "yolov5-label-cache-npz"
CACHE_ARRAYS = ("files", "labels", "label_counts", "shapes", "seg_points", "seg_sizes", "seg_counts", "meta")
META_KEYS = ("hash", "results", "msgs", "version")  # the non-image keys of the in-memory dict
CONTENT_SUFFIXES = (".txt",)  # files whose bytes (not only size and mtime) enter the hash: label files
ZIP_MAGIC = b"PK\x03\x04"

_warned_dirs: set[str] = set()  # cache folders already reported as not writeable in this process


def _file_state(path: str) -> bytes:
    """Size and modification time of ``path``, plus an md5 of its bytes for label files; ``b"-"`` if missing."""
    try:
        st = os.stat(path)
    except OSError:
        return b"-"
    state = f"{st.st_size}:{st.st_mtime_ns}".encode()
    if path.endswith(CONTENT_SUFFIXES):
        try:
            with open(path, "rb") as f:
                state += b":" + hashlib.md5(f.read(), usedforsecurity=False).digest()
        except OSError:
            state += b":unreadable"
    return state


def get_hash(paths: list[str]) -> str:
    """md5 hex digest of every path with its size and ``st_mtime_ns``, and the content of label (``.txt``) files.

    An image or label replaced, touched or edited in place (even keeping its size and mtime, for label files)
    changes the hash, so the label cache is rebuilt.
    """
    if len(paths) > 256:
        with ThreadPool(NUM_THREADS) as pool:
            states = pool.map(_file_state, paths, chunksize=64)
    else:
        states = [_file_state(p) for p in paths]
    h = hashlib.md5(usedforsecurity=False)
    for p, s in zip(paths, states):
        h.update(os.fsencode(p) + b"\0" + s + b"\n")
    return h.hexdigest()


def _pack(cache: dict) -> dict[str, np.ndarray]:
    """The in-memory cache dict as the plain arrays of the archive."""
    entries = [(k, v) for k, v in cache.items() if k not in META_KEYS]
    labels = [np.asarray(v[0], np.float32).reshape(-1, 5) for _, v in entries]
    segs = [[np.asarray(s, np.float32).reshape(-1, 2) for s in v[2]] for _, v in entries]
    flat = [s for per_image in segs for s in per_image]
    meta = {"format": CACHE_FORMAT, "version": cache["version"], "hash": cache["hash"],
            "results": [int(x) for x in cache["results"]], "msgs": [str(m) for m in cache["msgs"]]}
    return {"files": np.array([k for k, _ in entries], dtype=np.str_),
            "labels": np.concatenate(labels) if labels else np.zeros((0, 5), np.float32),
            "label_counts": np.array([len(x) for x in labels], np.int64),
            "shapes": np.array([v[1] for _, v in entries], np.int64).reshape(-1, 2),
            "seg_points": np.concatenate(flat) if flat else np.zeros((0, 2), np.float32),
            "seg_sizes": np.array([len(s) for s in flat], np.int64),
            "seg_counts": np.array([len(x) for x in segs], np.int64),
            "meta": np.array(json.dumps(meta))}


def _split(a: np.ndarray, counts: np.ndarray) -> list[np.ndarray]:
    """``a`` cut into consecutive pieces of ``counts`` rows; raises ValueError when they do not add up."""
    if counts.ndim != 1 or (counts < 0).any() or counts.sum() != len(a):
        raise ValueError("inconsistent counts")
    return np.split(a, np.cumsum(counts)[:-1]) if len(counts) else []


def _unpack(z: np.lib.npyio.NpzFile, meta: dict) -> dict:
    """The in-memory cache dict from the archive ``z`` (already opened with ``allow_pickle=False``)."""
    files, labels, shapes = z["files"], z["labels"], z["shapes"]
    seg_points, seg_sizes, seg_counts = z["seg_points"], z["seg_sizes"], z["seg_counts"]
    n = len(files)
    if (files.dtype.kind != "U" or files.ndim != 1 or labels.dtype != np.float32 or labels.ndim != 2
            or labels.shape[1] != 5 or shapes.shape != (n, 2) or shapes.dtype.kind != "i"
            or seg_points.dtype != np.float32 or seg_points.ndim != 2 or seg_points.shape[1] != 2
            or len(z["label_counts"]) != n or len(seg_counts) != n):
        raise ValueError("unexpected array layout")
    per_label = _split(labels, z["label_counts"])
    polygons = _split(seg_points, seg_sizes)
    per_seg = _split(np.arange(len(polygons)), seg_counts)
    cache: dict = {}
    for f, lb, (w, h), idx in zip(files.tolist(), per_label, shapes.tolist(), per_seg):
        cache[f] = [lb.copy(), (int(w), int(h)), [polygons[j].copy() for j in idx]]
    if len(cache) != n or ((seg_counts != 0) & (seg_counts != z["label_counts"])).any():
        raise ValueError("duplicate image paths or one polygon set per image that does not match its labels")
    cache["hash"], cache["results"] = str(meta["hash"]), tuple(int(x) for x in meta["results"])
    cache["msgs"], cache["version"] = [str(m) for m in meta["msgs"]], meta["version"]
    return cache


def read_label_cache(path: str | Path, hash_: str | None = None) -> dict | None:
    """The cache dict in ``path`` if it is a cache of this format and version (and hash, when given), else None.

    The file is checked to be a zip archive before NumPy sees it and is read with ``allow_pickle=False``: nothing
    in it is ever unpickled.
    """
    try:
        with open(path, "rb") as f:
            if f.read(len(ZIP_MAGIC)) != ZIP_MAGIC:
                return None  # e.g. a pickle or a v6.1 .npy cache
        with np.load(str(path), allow_pickle=False) as z:
            if sorted(z.files) != sorted(CACHE_ARRAYS):
                return None
            meta = json.loads(z["meta"].item())
            if (not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT
                    or meta.get("version") != CACHE_VERSION or (hash_ is not None and meta.get("hash") != hash_)):
                return None
            return _unpack(z, meta)
    except Exception:  # missing, unreadable, truncated or foreign file: treated as absent
        return None


def load_label_cache(path: Path, hash_: str) -> dict | None:
    """The cache dict at ``path`` if it loads and has this format, version and hash, else None."""
    return read_label_cache(path, hash_)


def dir_writeable(d: Path) -> tuple[bool, str]:
    """Whether files may be created in ``d`` (respecting read-only permission bits even for root) and why not."""
    if not d.is_dir():
        return False, f"{d} does not exist"
    if not os.access(d, os.W_OK) or not d.stat().st_mode & 0o222:
        return False, "read-only folder"
    return True, ""


def fallback_dirs() -> list[Path]:
    """Per-user folders for caches of read-only datasets, in order of preference."""
    env = os.getenv("YOLOV5_CACHE_DIR")
    try:
        user = getpass.getuser()
    except Exception:
        user = str(os.getuid()) if hasattr(os, "getuid") else "user"
    tmp = Path(tempfile.gettempdir()) / f"yolov5-cache-{user}"
    return ([Path(env)] if env else []) + [ROOT / "runs" / ".cache", tmp]


def fallback_path(primary: Path) -> Path | None:
    """Where the cache (or ``_npy`` folder) ``primary`` goes when its folder is not writeable; None if nowhere."""
    name = f"{hashlib.md5(str(primary.resolve()).encode()).hexdigest()[:16]}-{primary.name}"
    for d in fallback_dirs():
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if dir_writeable(d)[0]:
            return d / name
    return None


def writeable_location(primary: Path, prefix: str = "") -> Path | None:
    """``primary`` if its folder is writeable, else its fallback (warning once per folder)."""
    ok, why = dir_writeable(primary.parent)
    if ok:
        return primary
    alt = fallback_path(primary)
    if str(primary.parent) not in _warned_dirs:
        _warned_dirs.add(str(primary.parent))
        LOGGER.warning(f"{prefix}WARNING: Cache directory {primary.parent} is not writeable: {why}"
                       + (f"; using {alt.parent} instead" if alt else ""))
    return alt


def save_label_cache(cache: dict, primary: Path, prefix: str = "") -> Path | None:
    """Write ``cache`` atomically to ``primary`` or its fallback; returns the path written (None on failure)."""
    path = writeable_location(primary, prefix)
    if path is None:
        return None
    try:
        atomic_write(path, lambda f: np.savez(f, **_pack(cache)))
    except OSError as e:
        LOGGER.warning(f"{prefix}WARNING: Cache directory {path.parent} is not writeable: {e}")
        return None
    LOGGER.info(f"{prefix}New cache created: {path}")
    return path
