"""Run folders: one writer at a time (a lock file), and resuming only the run a checkpoint belongs to.

Rules:

* A training run holds ``<run>/.lock`` (an OS file lock, released automatically when the process ends, even on
  SIGKILL) for as long as it writes there. A second ``train.py`` pointed at the same folder
  (``--name exp --exist-ok``, or ``--resume`` of a run that is still training) stops at once with a message
  naming the running process; it never mixes its checkpoints or ``results.csv`` rows with the first one's.
* ``--resume path/to/run/weights/x.pt`` writes into ``path/to/run`` (where the checkpoint is), not into the
  folder recorded in its ``opt.yaml``, so a copied run folder resumes in the copy.
* A checkpoint resumes only inside the run it was saved by: each run gets an id (``run_id`` in ``opt.yaml``
  and in every checkpoint it saves), and a checkpoint whose id differs from its folder's is refused.
* ``results.csv`` rows from the epochs a resume will train again are dropped, so each epoch appears once.
"""

from __future__ import annotations

import argparse
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from utils.general import LOGGER, InputError, atomic_write

try:  # POSIX
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt

LOCK_NAME = ".lock"


class RunInUseError(InputError):
    """Another process is writing into the run folder."""


class ResumeError(InputError):
    """A ``--resume`` target that is not a checkpoint of a resumable run."""


def new_run_id() -> str:
    """A fresh random id for a training run."""
    return uuid.uuid4().hex[:16]


_WIN_LOCK_BYTE = 1 << 20  # Windows locks a byte range: one far past the owner text, which stays readable


def _try_lock(fd: int) -> bool:
    """Take an exclusive, non-blocking lock on ``fd``; False when another process holds it."""
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            os.lseek(fd, _WIN_LOCK_BYTE, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        return True
    except OSError:
        return False


def _unlock(fd: int) -> None:
    """Release the lock taken by :func:`_try_lock` (closing the file releases it too on POSIX)."""
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
        else:
            os.lseek(fd, _WIN_LOCK_BYTE, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    except OSError:
        pass


class RunLock:
    """Exclusive use of a run folder for one process (a context manager).

    The lock is an OS lock on ``<folder>/.lock``, which holds the owner's pid, host and start time for the
    message a second process gets. It is released by :meth:`release`, on exit of the ``with`` block, or by the
    OS when the process dies.
    """

    def __init__(self, folder: str | Path, what: str = "train.py"):
        self.folder, self.what = Path(folder), what
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        """Take the lock.

        Raises:
            RunInUseError: another live process holds it (the message names it).
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(10):  # retry when the owner removed the file between our open and our lock
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if not _try_lock(fd):
                owner = _read_owner(fd)
                os.close(fd)
                raise RunInUseError(
                    f"{self.folder} is in use by another run ({owner}). Two processes writing one folder would "
                    f"overwrite each other's results. Wait for it to finish, or write elsewhere (another --name; "
                    f"without --exist-ok train.py makes a new folder for each run).")
            if _same_file(self.path, fd):
                remove_stale_temporaries(self.folder)
                os.ftruncate(fd, 0)
                since = time.strftime("%Y-%m-%d %H:%M:%S")
                os.write(fd, f"{self.what} pid {os.getpid()} on {socket.gethostname()}, since {since}".encode())
                self._fd = fd
                return self
            os.close(fd)  # the file we locked was unlinked by its previous owner: lock the new one
        raise RunInUseError(f"{self.folder}: could not take {self.path} (it keeps being replaced)")

    def release(self) -> None:
        """Remove the lock file and release the lock (no-op when not held)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still locked: a waiting process re-checks the inode
        except OSError:  # Windows cannot remove an open file; the next owner reuses it
            pass
        finally:
            _unlock(self._fd)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def remove_stale_temporaries(folder: Path) -> None:
    """Delete the temporary files of atomic writes (``.<name>.<pid>-<id>.tmp``) that a killed run left in
    ``folder`` and ``folder/weights``; only called by the lock holder, so no live writer owns one."""
    for d in (folder, folder / "weights"):
        for f in d.glob(".*.tmp") if d.is_dir() else ():
            f.unlink(missing_ok=True)


def _same_file(path: Path, fd: int) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (it may have been removed and created again)."""
    try:
        a, b = os.stat(path), os.fstat(fd)
    except OSError:
        return False
    return (a.st_ino, a.st_dev) == (b.st_ino, b.st_dev)


def _read_owner(fd: int) -> str:
    """The owner description written in a lock file, or a generic one."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        s = os.read(fd, 512).decode(errors="replace").strip()
    except OSError:
        s = ""
    return s or "another process"


def resume_target(resume: str | os.PathLike | bool, latest: str = "") -> tuple[Path, Path, argparse.Namespace]:
    """The checkpoint, run folder and saved options of a ``--resume`` request.

    Args:
        resume: True (the latest run: ``latest``), a run folder, or a checkpoint path.
        latest: the most recent ``last.pt`` found, used when ``resume`` is True.

    Returns:
        ``(checkpoint, run folder, options from its opt.yaml with save_dir set to that folder)``.

    Raises:
        FileNotFoundError: no checkpoint there.
        ResumeError: the checkpoint is not inside a run folder with an ``opt.yaml``.
    """
    ckpt = Path(latest) if resume is True and latest else None if resume is True else Path(resume)
    if ckpt is not None and ckpt.is_dir():
        ckpt = ckpt / "weights" / "last.pt"
    if ckpt is None or not ckpt.is_file():
        raise FileNotFoundError(f"ERROR: --resume checkpoint does not exist: {ckpt or '(no last.pt found)'}")
    run_dir = ckpt.resolve().parent.parent
    opt_file = run_dir / "opt.yaml"
    if ckpt.resolve().parent.name != "weights" or not opt_file.is_file():
        raise ResumeError(f"--resume {ckpt}: not inside a training run folder (expected <run>/weights/{ckpt.name} "
                          f"with <run>/opt.yaml). To train further from these weights, start a new run with "
                          f"--weights {ckpt}")
    with open(opt_file, errors="ignore") as f:
        d = yaml.safe_load(f)
    if not isinstance(d, dict):
        raise ResumeError(f"--resume: {opt_file} is not a training options file")
    opt = argparse.Namespace(**d)
    opt.save_dir = str(run_dir)  # write where the checkpoint is, even if the folder was copied or moved
    return ckpt, run_dir, opt


def check_belongs(ckpt: dict, ckpt_file: str | Path, opt: argparse.Namespace) -> None:
    """Refuse to resume a checkpoint that was saved by another run than the folder it sits in.

    Raises:
        ResumeError: the checkpoint's ``run_id`` differs from the folder's ``opt.yaml`` one.
    """
    a, b = ckpt.get("run_id") if isinstance(ckpt, dict) else None, getattr(opt, "run_id", None)
    if a and b and a != b:
        raise ResumeError(f"--resume {ckpt_file}: this checkpoint was saved by run {a}, but its folder "
                          f"{Path(opt.save_dir)} belongs to run {b} (a checkpoint copied between runs). Resume it "
                          f"from its own run folder, or start a new run with --weights {ckpt_file}")


def trim_results_csv(save_dir: str | Path, start_epoch: int) -> int:
    """Drop ``results.csv`` rows of epochs >= ``start_epoch`` (they are trained again); returns rows dropped."""
    f = Path(save_dir) / "results.csv"
    if not f.is_file():
        return 0
    lines = f.read_text().splitlines(keepends=True)
    keep = lines[:1]
    for line in lines[1:]:
        try:
            epoch = float(line.split(",", 1)[0])
        except ValueError:
            continue  # a torn last line from a killed run
        if epoch < start_epoch:
            keep.append(line)
    dropped = len(lines) - len(keep)
    if dropped:
        atomic_write(f, lambda fh: fh.write("".join(keep).encode()))
        LOGGER.info(f"Resuming at epoch {start_epoch}: removed {dropped} later row(s) from {f}")
    return dropped
