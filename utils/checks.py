"""Environment checks of v6.1's ``utils.general``: settings folder, network, git status, Python, requirements, font.

Nothing here changes the environment by itself: no package is ever installed and no file downloaded. A missing
package or font is reported with the command or URL that fixes it by hand. ``utils.general`` re-exports every
public name of this module.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Iterable

from utils.general import FONT, LOGGER, ROOT, check_version, colorstr, emojis, is_docker

REPO_URL = "https://github.com/ultralytics/yolov5"
FONT_URL = "https://ultralytics.com/assets/{}"  # where v6.1 downloads its fonts from
_CONFIG_BASE = {"Windows": "AppData/Roaming", "Linux": ".config", "Darwin": "Library/Application Support"}


def config_dir_path(dir: str = "Ultralytics", env_var: str = "YOLOV5_CONFIG_DIR") -> Path:
    """The settings folder :func:`user_config_dir` uses, computed without creating anything.

    ``$env_var`` when set (used as is); else ``<home>/<OS settings folder>/<dir>`` (``~/.config/<dir>`` on Linux),
    or ``<temp dir>/<dir>`` when that folder is not writeable (read-only home on cloud functions).
    """
    env = os.getenv(env_var)
    if env:
        return Path(env)
    base = Path.home() / _CONFIG_BASE.get(platform.system(), "")
    probe = next((p for p in (base, *base.parents) if p.exists()), base)  # nearest existing folder
    return (base if os.access(probe, os.W_OK) else Path(tempfile.gettempdir())) / dir


def user_config_dir(dir: str = "Ultralytics", env_var: str = "YOLOV5_CONFIG_DIR") -> Path:
    """The user settings folder (see :func:`config_dir_path`), created when missing."""
    path = config_dir_path(dir, env_var)
    path.mkdir(parents=True, exist_ok=True)
    return path


CONFIG_DIR = config_dir_path()  # v6.1's settings folder (fonts live here); not created at import


def check_online() -> bool:
    """True when a TCP connection to 1.1.1.1:443 opens within 5 seconds."""
    try:
        with socket.create_connection(("1.1.1.1", 443), timeout=5):
            return True
    except OSError:
        return False


class _Skip(Exception):
    """Why :func:`check_git_status` skipped its check (the message)."""


class _GitFailed(_Skip):
    """A git command exited with an error (its message says which and why)."""


def _git(args: Iterable[str], timeout: float) -> str:
    """stdout of ``git <args>`` run in the repository root; a failure raises :class:`_GitFailed` with git's
    message, a timeout :class:`_Skip`."""
    cmd = ["git", *args]
    try:
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise _Skip(f"skipping check ('{' '.join(cmd)}' took over {timeout:g}s)") from None
    if r.returncode:
        raise _GitFailed(f"skipping check ('{' '.join(cmd)}' failed with exit status {r.returncode}: "
                             f"{(r.stderr or r.stdout).strip()})")
    return r.stdout.strip()


def _git_status(timeout: float) -> str:
    """The status line of :func:`check_git_status`; :class:`_Skip` says why the check was skipped."""
    see = f", for updates see {REPO_URL}"
    if not (ROOT / ".git").exists():
        raise _Skip(f"skipping check (not a git repository){see}")
    if is_docker():
        raise _Skip(f"skipping check (Docker image){see}")
    if not check_online():
        raise _Skip(f"skipping check (offline){see}")
    try:
        url = _git(["config", "--get", "remote.origin.url"], timeout)
    except _GitFailed:
        raise _Skip(f"skipping check (no 'origin' remote){see}") from None
    _git(["fetch", "--quiet"], timeout)
    branch = _git(["rev-parse", "--abbrev-ref", "HEAD"], timeout)
    try:  # the remote's default branch (v6.1 assumed 'master'); else the remote copy of the current branch
        upstream = _git(["rev-parse", "--abbrev-ref", "origin/HEAD"], timeout)
    except _GitFailed:
        upstream = f"origin/{branch}"
    n = int(_git(["rev-list", f"{branch}..{upstream}", "--count"], timeout))
    if n > 0:
        return (f"⚠️ YOLOv5 is out of date by {n} commit{'s' * (n > 1)}. Use `git pull` or `git clone {url}` "
                f"to update.")
    return f"up to date with {url} ✅"


def check_git_status(timeout: float = 30.0) -> str:
    """Log whether this checkout is behind its ``origin`` remote (``git fetch`` first; each git call limited to
    ``timeout`` seconds). Never raises: outside a git repository, in Docker, offline or when git fails, the
    logged line says the check was skipped and why. Returns the logged text (without the ``github:`` prefix)."""
    try:
        s = _git_status(timeout)
    except (_Skip, OSError, ValueError) as e:  # OSError: no git executable
        s = str(e) if isinstance(e, _Skip) else f"skipping check ({e})"
    LOGGER.info(emojis(f"{colorstr('github: ')}{s}"))
    return s


def check_python(minimum: str = "3.6.2") -> bool:
    """Hard check of the running Python version: AssertionError naming both versions when it is older."""
    return check_version(platform.python_version(), minimum, name="Python ", hard=True)


def _parse_requirements(requirements: str | Path | Iterable[str], exclude: Iterable[str]) -> tuple[list, str]:
    """(packaging ``Requirement`` objects not excluded and applying to this platform, their source for messages)."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    if isinstance(requirements, str) and not requirements.endswith(".txt") and not Path(requirements).exists():
        requirements = [requirements]  # one requirement such as 'onnx>=1.9.0' (later releases pass these)
    if isinstance(requirements, (str, Path)):
        file = Path(requirements)
        if not file.is_file():
            raise FileNotFoundError(f"requirements file {file.resolve()} not found, check failed")
        lines, source = file.read_text().splitlines(), file.name
    else:
        lines, source = list(requirements), ""
    skip = {canonicalize_name(x) for x in exclude}
    reqs = []
    for line in lines:
        line = line.split("#", 1)[0].strip()  # comments; also drops '#egg=' URL fragments (pip-only syntax)
        if not line or line.startswith("-"):  # blank, or a pip option such as -r / --index-url
            continue
        try:
            r = Requirement(line)
        except InvalidRequirement as e:
            LOGGER.warning(f"{colorstr('red', 'bold', 'requirements:')} WARNING: skipping '{line}': {e}")
            continue
        if canonicalize_name(r.name) not in skip and (r.marker is None or r.marker.evaluate()):
            reqs.append(r)
    return reqs, source


def check_requirements(requirements: str | Path | Iterable[str] = ROOT / "requirements.txt",
                       exclude: Iterable[str] = (), install: bool = True) -> list[str]:
    """Check that installed packages satisfy ``requirements``; log the ``pip install`` command for the others.

    Unlike v6.1, this never installs anything: ``install=True`` (the v6.1 default, which ran pip) only adds the
    reminder that nothing is installed at run time; the log names ``pip install "<requirement>"`` for each
    missing or outdated package either way.

    Args:
        requirements: a requirements file (a Path, or a str naming an existing file or ending in ``.txt``), one
            requirement string, or an iterable of requirement strings.
        exclude: package names to skip.
        install: accepted for v6.1 compatibility; nothing is installed either way.

    Returns:
        The unmet requirements as ``name[extras]specifier`` strings (empty when all are satisfied).

    Raises:
        FileNotFoundError: ``requirements`` names a file that does not exist. Nothing else raises: a line that
        cannot be parsed or checked is logged and skipped, as v6.1 never fails on a requirement.
    """
    prefix = colorstr("red", "bold", "requirements:")
    reqs, source = _parse_requirements(requirements, exclude)
    unmet = []
    for r in reqs:
        spec = f"{r.name}{'[' + ','.join(sorted(r.extras)) + ']' if r.extras else ''}{r.specifier}"
        try:
            version = importlib.metadata.version(r.name)
            if r.specifier.contains(version, prereleases=True):
                continue
            why = f"outdated ({r.name}=={version} is installed)"
        except importlib.metadata.PackageNotFoundError:
            why = "not found"
        except Exception as e:  # broken metadata or a version packaging cannot parse: report it, never raise
            why = f"not checkable ({type(e).__name__}: {e})"
        LOGGER.warning(f"{prefix} {spec} {why} and is required by YOLOv5: pip install \"{spec}\"")
        unmet.append(spec)
    if unmet:
        n = len(unmet)
        LOGGER.warning(f"{prefix} {n} package{'s' * (n > 1)} missing or outdated{' per ' + source if source else ''}"
                       f"; install {'them' if n > 1 else 'it'} with: pip install "
                       + " ".join(f'"{s}"' for s in unmet)
                       + (" (this project never installs packages at run time)" if install else ""))
    return unmet


def check_font(font: str | Path = FONT) -> Path:
    """Path of a font file found locally: ``font`` itself, ``CONFIG_DIR/<name>``, or a system/matplotlib font folder.

    v6.1 downloads a missing font; this project never downloads at run time.

    Raises:
        FileNotFoundError: not found; the message names the download URL and the folder to put it in.
    """
    from utils.annotator import FONT_DIRS, find_font

    name = Path(font).name
    for p in Path(font), CONFIG_DIR / name:
        if p.is_file():
            return p
    found = find_font(name)
    if found is not None:
        return found
    raise FileNotFoundError(f"Font {font} not found locally and this project never downloads at run time: download "
                            f"{FONT_URL.format(name)} by hand and place it in {CONFIG_DIR} (or a font folder: "
                            f"{', '.join(str(d) for d in FONT_DIRS[:3])})")
