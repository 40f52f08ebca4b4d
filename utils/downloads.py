"""Downloads: release weights, URLs to files, dataset archives. Nothing here runs at import.

Every network access goes through :func:`open_url` (urllib, with a timeout), so that without a network each
function fails at once (a name-resolution error is immediate), and tests replace that one function. Files are
written under a temporary name and renamed when complete: an interrupted download never leaves a truncated file
under the final name.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from http.cookiejar import MozillaCookieJar
from multiprocessing.pool import ThreadPool
from pathlib import Path
from typing import Any, BinaryIO, Iterable

from utils.archive import extract, is_archive
from utils.general import LOGGER, atomic_write, url2file

RELEASE_TAG = "v6.1"  # the release whose weights match this project's models
ASSETS = [f"yolov5{s}{p}.pt" for s in "nsmlx" for p in ("", "6")]  # official v6.1 release assets
TIMEOUT = 10.0  # seconds to connect and between two received blocks
_CHUNK = 1 << 20


class DownloadError(OSError):
    """One or more URLs could not be fetched; ``failures`` holds ``(url, target file, error)`` triples."""

    def __init__(self, failures: list[tuple[str, Path, BaseException]]):
        self.failures = failures
        lines = [f"{u} -> {f} ({type(e).__name__}: {e})" for u, f, e in failures]
        super().__init__(f"could not download {len(failures)} file(s):\n  " + "\n  ".join(lines))


def open_url(url: str, timeout: float = TIMEOUT, opener: urllib.request.OpenerDirector | None = None) -> Any:
    """Open ``url`` for reading (the single network access point of this module); ``file://`` URLs work too."""
    req = urllib.request.Request(url, headers={"User-Agent": "Mozilla/5.0 (YOLOv5)"})
    return opener.open(req, timeout=timeout) if opener else urllib.request.urlopen(req, timeout=timeout)


def unreachable(e: BaseException) -> bool:
    """True for an error meaning the host cannot be reached (no network), not an HTTP error status."""
    return isinstance(e, (urllib.error.URLError, ConnectionError, TimeoutError)) and \
        not isinstance(e, urllib.error.HTTPError)


def fetch(url: str, file: str | Path, min_bytes: float = 0, timeout: float = TIMEOUT,
          opener: urllib.request.OpenerDirector | None = None) -> Path:
    """Download ``url`` to ``file`` (created complete or not at all).

    Raises:
        OSError: a network error (urllib's ``URLError`` is one), or ``min_bytes`` or fewer bytes received.
    """
    file = Path(file)
    with open_url(url, timeout=timeout, opener=opener) as r:  # nothing is created when this fails

        def write(f: BinaryIO) -> None:
            n = 0
            while chunk := r.read(_CHUNK):
                f.write(chunk)
                n += len(chunk)
            if n <= min_bytes:
                raise OSError(f"downloaded {n} bytes, expected more than min_bytes={min_bytes}")

        file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(file, write)
    return file


def _curl(url: str, file: Path) -> None:
    """Download with curl into ``<file>.part``, renamed when complete.

    A first attempt that cannot resolve the host or connect (curl exit 6, 7 or 28) fails at once (ConnectionError);
    another failure (an interrupted transfer) is retried with ``--retry 9``; both resume a ``.part`` file (``-C -``).
    """
    part = file.with_name(file.name + ".part")
    cmd = ["curl", "-fL", "-sS", "-C", "-", "--connect-timeout", str(int(TIMEOUT)), "--create-dirs", "-o", str(part),
           url]
    r = subprocess.run(cmd, check=False)
    if r.returncode in (6, 7, 28):
        raise ConnectionError(f"curl could not resolve or connect to the host (exit status {r.returncode})")
    if r.returncode != 0:
        r = subprocess.run(cmd[:1] + ["--retry", "9"] + cmd[1:], check=False)
    if r.returncode != 0 or not part.is_file():
        raise OSError(f"curl exited with status {r.returncode}")
    part.replace(file)


def safe_download(file: str | Path, url: str, url2: str | None = None, min_bytes: float = 1e0,
                  error_msg: str = "") -> None:
    """Download ``url`` to ``file``, then retry once (``url2`` if given); never raises.

    A file of ``min_bytes`` or fewer bytes counts as a failure and is deleted; failures are logged as warnings
    with ``error_msg``. Check ``Path(file).exists()`` afterwards.
    """
    file = Path(file)
    try:
        LOGGER.info(f"Downloading {url} to {file}...")
        fetch(url, file, min_bytes=min_bytes)
    except Exception as e:
        file.unlink(missing_ok=True)
        LOGGER.warning(f"ERROR: {e}\nRe-attempting {url2 or url} to {file}...")
        try:
            fetch(url2 or url, file, min_bytes=min_bytes)
        except Exception as e2:
            LOGGER.warning(f"ERROR: {e2}")
    if not file.exists() or file.stat().st_size <= min_bytes:
        file.unlink(missing_ok=True)
        LOGGER.warning(f"ERROR: Downloaded file '{file}' does not exist or size is < min_bytes={min_bytes}\n"
                       f"{error_msg}")
    LOGGER.info("")


def attempt_download(file: str | Path, repo: str = "ultralytics/yolov5", *, timeout: float = TIMEOUT) -> str:
    """Return ``file`` if it exists, else download it: a URL to its file name (in the current folder), a release
    asset name (``yolov5s.pt``...) from ``https://github.com/<repo>/releases/download/v6.1/``.

    The release is fixed to v6.1 (the weights this project's models match), not looked up as the latest.

    Raises:
        FileNotFoundError: the file is missing and is neither a URL nor a release asset, or the download failed
            (offline); the message names the URL and says what to do.
    """
    text = str(file).strip().replace("'", "")
    if text.startswith(("http:/", "https:/")):
        url = text if "://" in text else text.replace(":/", "://")  # Path() collapses '//'
        file = Path(url2file(url))
        if file.is_file():
            LOGGER.info(f"Found {url} locally at {file}")
            return str(file)
        return _download_or_explain(url, file, timeout, f"Without a network, download it elsewhere and copy it to "
                                                         f"{file.resolve()}.")
    file = Path(text)
    if file.exists():
        return str(file)
    name = file.name
    if name not in ASSETS:
        raise FileNotFoundError(f"weights not found: {file}")
    url = f"https://github.com/{repo}/releases/download/{RELEASE_TAG}/{name}"
    return _download_or_explain(url, file, timeout, f"Without a network, copy {name} there by hand (from "
                                                    f"https://github.com/{repo}/releases/), name other weights with "
                                                    f"--weights, or train from scratch with --weights '' --cfg "
                                                    f"<model.yaml>.")


def _download_or_explain(url: str, file: Path, timeout: float, advice: str) -> str:
    """:func:`fetch` with ``min_bytes=1E5``; a failure becomes a FileNotFoundError naming the URL and ``advice``."""
    try:
        LOGGER.info(f"Downloading {url} to {file}...")
        fetch(url, file, min_bytes=1e5, timeout=timeout)
        return str(file)
    except Exception as e:
        raise FileNotFoundError(f"weights not found: {file}, and downloading {url} failed ({type(e).__name__}: "
                                f"{e}). {advice}") from None


def download(url: str | Path | Iterable[str | Path], dir: str | Path = ".", unzip: bool = True, delete: bool = True,
             curl: bool = False, threads: int = 1) -> None:
    """Download each URL to ``dir/<file name>`` (skipped when that file exists) and unpack archives there.

    ``.zip`` files are extracted into ``dir``, ``.gz`` (tar) files into the archive's folder; archives are deleted
    afterwards unless ``delete=False``. ``curl=True`` uses curl when it is installed; ``threads > 1`` downloads in
    parallel after the first URL. Once a host cannot be reached (no network), the downloads not yet started are not
    tried (files already there are still unpacked). Failures are reported together.

    Raises:
        DownloadError: one or more URLs failed (each is named with its target file and the error).
    """
    dir = Path(dir)  # created by the first successful download or extraction
    urls = [url] if isinstance(url, (str, Path)) else list(url)
    down = threading.Event()  # set when a host could not be reached: the downloads not yet started are skipped

    def one(u: str | Path) -> tuple[str, Path, BaseException] | None:
        u = str(u)
        f = dir / url2file(u)
        try:
            if not f.exists():
                if down.is_set():
                    raise ConnectionError("not tried: an earlier download could not connect")
                LOGGER.info(f"Downloading {u} to {f}...")
                _curl(u, f) if curl and shutil.which("curl") else fetch(u, f, timeout=TIMEOUT)
            if unzip and is_archive(f):
                LOGGER.info(f"Unzipping {f}...")
                extract(f, dir)
                if delete:
                    f.unlink()
        except Exception as e:  # reported together below
            if unreachable(e):
                down.set()
            return u, f, e
        return None

    results = [one(u) for u in urls[:1]]  # alone first: without a network, only this one is tried
    if threads > 1:
        with ThreadPool(threads) as pool:
            results += pool.map(one, urls[1:])
    else:
        results += [one(u) for u in urls[1:]]
    failures = [r for r in results if r]
    if failures:
        raise DownloadError(failures)


def gsutil_getsize(url: str = "") -> int:
    """Size in bytes of a ``gs://`` object from ``gsutil du`` (0 when the output is empty or gsutil is absent).

    Raises:
        subprocess.CalledProcessError: gsutil failed.
    """
    if not shutil.which("gsutil"):
        return 0
    s = subprocess.check_output(["gsutil", "du", url], timeout=60).decode("utf-8")
    return int(s.split()[0]) if s.split() else 0


def get_token(cookie: str | Path = "./cookie") -> str:
    """Google Drive confirmation token: the value of the ``download`` cookie in a Netscape cookie file ('' if none)."""
    cookie = Path(cookie)
    if cookie.is_file():
        for line in cookie.read_text(errors="ignore").splitlines():
            if "download" in line:
                return line.split()[-1]
    return ""


def gdrive_download(id: str = "16TiPfZj7htmTyhntwcZyEEAejOUxuT6m", file: str | Path = "tmp.zip") -> int:
    """Download a Google Drive file (large files via the confirmation token); unzip and delete a ``.zip``.

    Cookies pass through ``./cookie`` (deleted afterwards). Returns 0 on success, 1 on failure (logged).
    """
    t = time.time()
    file, cookie = Path(file), Path("cookie")
    url = f"https://drive.google.com/uc?export=download&id={id}"
    LOGGER.info(f"Downloading {url} as {file}... ")
    file.unlink(missing_ok=True)
    cookie.unlink(missing_ok=True)
    jar = MozillaCookieJar(str(cookie))
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    try:
        with open_url(url, opener=opener) as r:
            first = r.read()
        jar.save(ignore_discard=True, ignore_expires=True)
        token = get_token(cookie)
        if token:  # large file: Drive asks to confirm
            fetch(f"{url}&confirm={token}", file, opener=opener)
        else:
            atomic_write(file, lambda f: f.write(first))
    except Exception as e:
        file.unlink(missing_ok=True)
        LOGGER.warning(f"Download error: {type(e).__name__}: {e}")
        return 1
    finally:
        cookie.unlink(missing_ok=True)
    if file.suffix == ".zip":
        LOGGER.info("unzipping... ")
        extract(file, file.parent)
        file.unlink()
    LOGGER.info(f"Done ({time.time() - t:.1f}s)")
    return 0
