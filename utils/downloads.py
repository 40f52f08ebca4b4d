"""Fetching official release weights, the one place that may touch the network (and never at import)."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from utils.general import LOGGER, atomic_write

RELEASE_URL = "https://github.com/ultralytics/yolov5/releases/download/v6.1/{name}"
ASSETS = [f"yolov5{s}{p}.pt" for s in "nsmlx" for p in ("", "6")]  # official v6.1 release assets


def attempt_download(file: str | Path, timeout: float = 10.0) -> str:
    """Return ``file`` if it exists; fetch an official release asset (``yolov5s.pt``...) when a network exists.

    Raises:
        FileNotFoundError: the file is missing and is not a release asset, or the download failed (offline);
            the message says what to do.
    """
    file = Path(str(file).strip().replace("'", ""))
    if file.exists():
        return str(file)
    name = file.name
    if name not in ASSETS:
        raise FileNotFoundError(f"weights not found: {file}")
    url = RELEASE_URL.format(name=name)

    def fetch(f) -> None:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            data = r.read()
        if len(data) < 1e5:
            raise OSError(f"download too small ({len(data)} bytes)")
        f.write(data)

    try:
        LOGGER.info(f"Downloading {url} to {file}...")
        file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(file, fetch)  # a unique temporary name: concurrent downloads never mix
        return str(file)
    except Exception as e:
        raise FileNotFoundError(f"weights not found: {file}, and downloading {url} failed ({type(e).__name__}: {e}). "
                                f"Without a network, copy {name} there by hand, name other weights with "
                                f"--weights, or train from scratch with --weights '' --cfg <model.yaml>.") from None
