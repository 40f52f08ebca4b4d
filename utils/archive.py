"""Unpacking downloaded archives: ``.zip`` and gzipped tar (``.tar.gz``, ``.tgz``, ``.gz``) files.

Members that would land outside the target folder (absolute names, ``..``) are refused, for zip and tar alike.
"""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path

ARCHIVE_SUFFIXES = (".zip", ".gz", ".tgz")  # what :func:`extract` unpacks


def is_archive(file: str | Path) -> bool:
    """True for a file name :func:`extract` can unpack (by suffix only)."""
    return Path(file).suffix.lower() in ARCHIVE_SUFFIXES


def extract(file: str | Path, dir: str | Path | None = None) -> Path:
    """Unpack ``file`` into ``dir`` (default: the archive's folder); returns ``dir``.

    Raises:
        ValueError: not an archive this function knows (by suffix), or a member escaping ``dir``.
        zipfile.BadZipFile, tarfile.TarError: a damaged archive (the message names the file).
    """
    file = Path(file)
    dir = Path(dir) if dir is not None else file.parent
    dir.mkdir(parents=True, exist_ok=True)
    suffix = file.suffix.lower()
    if suffix == ".zip":
        try:
            with zipfile.ZipFile(file) as z:
                _check_members(file, dir, z.namelist())
                z.extractall(dir)
        except zipfile.BadZipFile as e:
            raise zipfile.BadZipFile(f"{file}: not a valid zip file ({e}); delete it and download it again") from None
    elif suffix in (".gz", ".tgz"):
        try:
            with tarfile.open(file, "r:gz") as t:
                _check_members(file, dir, t.getnames())
                if hasattr(tarfile, "data_filter"):  # Python 3.9.17+, 3.10.12+, 3.11.4+
                    t.extractall(dir, filter="data")  # no links out of dir, no device files, no setuid bits
                else:
                    unsafe = [m.name for m in t.getmembers() if not (m.isfile() or m.isdir())]
                    if unsafe:
                        raise ValueError(f"{file}: refusing to extract links or special files {unsafe[:5]}")
                    t.extractall(dir)  # names checked above; only plain files and folders
        except (tarfile.TarError, OSError) as e:
            if isinstance(e, FileNotFoundError):
                raise
            raise tarfile.TarError(f"{file}: not a valid .tar.gz file ({e}); delete it and download it again") \
                from None
    else:
        raise ValueError(f"{file}: unknown archive type (expected one of {', '.join(ARCHIVE_SUFFIXES)})")
    return dir


def _check_members(file: Path, dir: Path, names: list[str]) -> None:
    """Raise ValueError when a member name would be written outside ``dir``."""
    base = dir.resolve()
    for n in names:
        target = (base / n).resolve()
        if target != base and base not in target.parents:
            raise ValueError(f"{file}: refusing to extract member {n!r} outside {dir}")
