"""General helpers: the project logger, coloured strings, file lookup, run-folder naming."""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import logging
import math
import os
import platform
import re
import shutil
import uuid
import urllib.parse
from pathlib import Path
from typing import Any, BinaryIO, Callable, Sequence

FILE = Path(__file__).resolve()
ROOT = FILE.parents[1]  # repository root
RANK = int(os.getenv("RANK", -1))
VERBOSE = str(os.getenv("YOLOv5_VERBOSE", True)).lower() == "true"
NUM_THREADS = min(8, max(1, (os.cpu_count() or 1) - 1))
DATASETS_DIR = ROOT.parent / "datasets"  # v6.1's default dataset folder, beside the repository
FONT = "Arial.ttf"
NCOLS = 0 if Path("/workspace").exists() else shutil.get_terminal_size().columns  # tqdm width (0 in Docker)

# v6.1 names of utils.general that live in modules importing this one: resolved on first use (PEP 562).
_LAZY = {
    **dict.fromkeys(("xyxy2xywh", "xywh2xyxy", "xywhn2xyxy", "xyxy2xywhn", "xyn2xy", "segment2box", "segments2boxes",
                     "resample_segments", "scale_coords", "clip_coords"), "utils.boxes"),
    **dict.fromkeys(("box_iou", "fitness", "labels_to_class_weights", "labels_to_image_weights"), "utils.metrics"),
    **dict.fromkeys(("init_seeds", "intersect_dicts"), "utils.torch_utils"),
    **dict.fromkeys(("is_ascii", "is_chinese"), "utils.annotator"),
    "non_max_suppression": "utils.nms", "strip_optimizer": "utils.checkpoint", "check_dataset": "utils.dataset_yaml",
    "coco80_to_coco91_class": "utils.coco", "check_imshow": "utils.inference_loaders", "methods": "utils.train_setup",
    **dict.fromkeys(("CONFIG_DIR", "user_config_dir", "check_online", "check_git_status", "check_python",
                     "check_requirements", "check_font"), "utils.checks"),
    **dict.fromkeys(("Profile", "Timeout"), "utils.timers"),
    **dict.fromkeys(("download", "gsutil_getsize"), "utils.downloads"),
    "print_mutation": "utils.evolve", "apply_classifier": "utils.second_stage",
}
_LAZY_MODULES = {"np": "numpy", "pd": "pandas"}  # dataset yamls run ``from utils.general import np, pd``


def __getattr__(name: str) -> Any:
    """Import a v6.1 name listed in ``_LAZY``/``_LAZY_MODULES`` from where it is implemented (no second copy)."""
    if name in _LAZY_MODULES:
        value = importlib.import_module(_LAZY_MODULES[name])
    elif name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later look-ups skip this hook
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_LAZY_MODULES))


def set_logging(name: str = "yolov5", verbose: bool = True) -> logging.Logger:
    """Configure and return the project logger: plain ``%(message)s`` lines, INFO on rank -1/0 when verbose."""
    level = logging.INFO if verbose and RANK in (-1, 0) else logging.WARNING
    log = logging.getLogger(name)
    log.setLevel(level)
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
    log.propagate = False
    return log


LOGGER = set_logging(verbose=VERBOSE)  # the one logger


class InputError(ValueError):
    """Bad user input (a flag, a yaml, a data file, a checkpoint): the scripts print its message, no traceback."""


def run_cli(main: Any, parse_opt: Any, script: str) -> Any:
    """``main(parse_opt())`` for a script's ``__main__``: an :class:`InputError` or a missing file is logged as one
    ``script: message`` line and the process exits with status 1 (other exceptions keep their traceback)."""
    try:
        return main(parse_opt())
    except (InputError, FileNotFoundError) as e:
        LOGGER.error(f"{script}: {e}")
        raise SystemExit(1) from None


def emojis(str: str = "") -> str:  # noqa: A002  (v6.1's parameter name, for keyword callers)
    """Strip emojis on Windows consoles that cannot print them."""
    return str.encode().decode("ascii", "ignore") if platform.system() == "Windows" else str


_COLORS = {
    "black": "\033[30m", "red": "\033[31m", "green": "\033[32m", "yellow": "\033[33m", "blue": "\033[34m",
    "magenta": "\033[35m", "cyan": "\033[36m", "white": "\033[37m",
    "bright_black": "\033[90m", "bright_red": "\033[91m", "bright_green": "\033[92m", "bright_yellow": "\033[93m",
    "bright_blue": "\033[94m", "bright_magenta": "\033[95m", "bright_cyan": "\033[96m", "bright_white": "\033[97m",
    "end": "\033[0m", "bold": "\033[1m", "underline": "\033[4m",
}


def colorstr(*input: str) -> str:
    """Colour a string with ANSI codes: ``colorstr('blue', 'bold', 'hello')`` (default blue bold)."""
    *args, string = input if len(input) > 1 else ("blue", "bold", input[0])
    return "".join(_COLORS[x] for x in args) + f"{string}" + _COLORS["end"]


def is_docker() -> bool:
    """True inside the YOLOv5 Docker image (``/workspace`` exists)."""
    return Path("/workspace").exists()


def is_colab() -> bool:
    """True in Google Colab (``google.colab`` importable)."""
    return importlib.util.find_spec("google") is not None and importlib.util.find_spec("google.colab") is not None


def is_kaggle() -> bool:
    """True in a Kaggle notebook (its working directory and URL environment variables)."""
    return os.environ.get("PWD") == "/kaggle/working" and os.environ.get("KAGGLE_URL_BASE") == "https://www.kaggle.com"


def is_pip() -> bool:
    """True when this package was installed by pip (this file sits under ``site-packages``)."""
    return "site-packages" in FILE.parts


def is_writeable(dir: str | Path, test: bool = False) -> bool:
    """Whether files can be written in ``dir``: with ``test`` by creating (and removing) a file, else by os.access."""
    if not test:
        return os.access(dir, os.R_OK)  # v6.1 checks R_OK here (its own comment admits it is not reliable)
    try:
        (Path(dir) / "tmp.txt").touch()
        (Path(dir) / "tmp.txt").unlink()
        return True
    except OSError:
        return False


def file_size(path: str | Path) -> float:
    """Size of a file, or of all files under a folder, in MB (1E6 bytes); 0.0 when it does not exist."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size / 1e6
    return sum(f.stat().st_size for f in path.glob("**/*") if f.is_file()) / 1e6 if path.is_dir() else 0.0


def url2file(url: str) -> str:
    """File name of a URL without its query: ``https://a.com/b/c.txt?auth=1`` -> ``c.txt``."""
    return Path(urllib.parse.unquote(str(Path(url)).replace(":/", "://"))).name.split("?")[0]


def clean_str(s: str) -> str:
    """Replace each of ``|@#!¡·$€%&()=?¿^*;:,¨´><+`` with ``_``."""
    return re.sub(r"[|@#!¡·$€%&()=?¿^*;:,¨´><+]", "_", s)


def try_except(func: Callable) -> Callable:
    """Decorator: log the exception raised by ``func`` instead of raising it (the call then returns None)."""
    def handler(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except Exception as e:
            LOGGER.info(e)
    return handler


class WorkingDirectory(contextlib.ContextDecorator):
    """Context manager/decorator: run with ``new_dir`` as the current directory, then change back."""

    def __init__(self, new_dir: str | Path) -> None:
        self.dir, self.cwd = new_dir, Path.cwd().resolve()

    def __enter__(self) -> None:
        os.chdir(self.dir)

    def __exit__(self, *exc: Any) -> None:
        os.chdir(self.cwd)


def check_version(current: str = "0.0.0", minimum: str = "0.0.0", name: str = "version ", pinned: bool = False,
                  hard: bool = False, verbose: bool = False) -> bool:
    """Whether ``current`` >= ``minimum`` (== when ``pinned``); ``hard`` raises AssertionError, ``verbose`` warns."""
    from packaging.version import parse

    result = parse(current) == parse(minimum) if pinned else parse(current) >= parse(minimum)
    msg = f"WARNING: {name}{minimum} required by YOLOv5, but {name}{current} is currently installed"
    assert result or not hard, emojis(msg)
    if verbose and not result:
        LOGGER.warning(msg)
    return result


def make_divisible(x: float, divisor: Any = 8) -> int:
    """Smallest multiple of ``divisor`` that is >= ``x`` (a tensor divisor counts as its max)."""
    if hasattr(divisor, "max"):
        divisor = int(divisor.max())
    return math.ceil(x / divisor) * divisor


def print_args(name: str, opt: Any) -> None:
    """Log ``name: k=v, k=v`` for a namespace or dict of arguments."""
    d = vars(opt) if not isinstance(opt, dict) else opt
    LOGGER.info(colorstr(f"{name}: ") + ", ".join(f"{k}={v}" for k, v in d.items()))


def check_suffix(file: str | Path | list = "yolov5s.pt", suffix: str | tuple = (".pt",), msg: str = "") -> None:
    """Raise if a file name does not end in one of ``suffix``."""
    if file and suffix:
        suffix = (suffix,) if isinstance(suffix, str) else suffix
        for f in file if isinstance(file, (list, tuple)) else [file]:
            s = Path(f).suffix.lower()
            if s and s not in suffix:
                raise ValueError(f"{msg}{f} acceptable suffix is {suffix}")


def check_file(file: str | Path, suffix: str | tuple = "") -> str:
    """Return the path of an existing file, searching ``data/``, ``models/`` and ``utils/`` for a bare name.

    Raises:
        FileNotFoundError: no match (the message names the file).
        ValueError: several matches.
    """
    check_suffix(file, suffix)
    file = str(file)
    if Path(file).is_file() or not file:
        return file
    if file.startswith(("http:/", "https:/")):
        raise FileNotFoundError(f"{file} is a URL; download it first (this project never downloads at run time)")
    files = []
    for d in "data", "models", "utils":
        files.extend(glob.glob(str(ROOT / d / "**" / file), recursive=True))
    if not files:
        raise FileNotFoundError(f"File not found: {file}")
    if len(files) > 1:
        raise ValueError(f"Multiple files match '{file}', specify exact path: {files}")
    return files[0]


def check_yaml(file: str | Path, suffix: tuple = (".yaml", ".yml")) -> str:
    """:func:`check_file` for yaml files."""
    return check_file(file, suffix)


def increment_path(path: str | Path, exist_ok: bool = False, sep: str = "", mkdir: bool = False) -> Path:
    """``runs/exp`` -> ``runs/exp2``, ``exp3``... when the path exists.

    With ``mkdir`` (and not ``exist_ok``) the folder is reserved atomically: two processes started at the same
    moment get two different folders.
    """
    path = Path(path)
    for _ in range(1000):
        p = _next_free(path, sep) if path.exists() and not exist_ok else path
        if not mkdir:
            return p
        try:
            p.mkdir(parents=True, exist_ok=exist_ok)
            return p
        except FileExistsError:  # another process took it between the check and the mkdir
            continue
    raise FileExistsError(f"could not create a new folder next to {path}")


def _next_free(path: Path, sep: str) -> Path:
    """``path`` with the next free number appended (``exp`` -> ``exp2``; ``a.txt`` -> ``a2.txt``)."""
    path, suffix = (path.with_suffix(""), path.suffix) if path.is_file() else (path, "")
    dirs = glob.glob(f"{glob.escape(str(path))}{sep}*")
    matches = [re.fullmatch(rf"{re.escape(path.stem)}{re.escape(sep)}(\d+)", Path(d).stem if suffix else Path(d).name)
               for d in dirs]
    n = max([int(m.groups()[0]) for m in matches if m], default=1) + 1
    return Path(f"{path}{sep}{n}{suffix}")


def expand_imgsz(imgsz: int | Sequence[int]) -> list[int]:
    """``640`` or ``[640]`` -> ``[640, 640]``; ``[h, w]`` stays (the --imgsz convention of detect/export)."""
    return [imgsz] * 2 if isinstance(imgsz, int) else list(imgsz) * (2 if len(imgsz) == 1 else 1)


def check_img_size(imgsz: int | list, s: int = 32, floor: int = 0) -> int | list:
    """Round an image size up to a multiple of the stride ``s`` (at least ``floor``), warning when it changes."""
    if isinstance(imgsz, int):
        new_size = max(make_divisible(imgsz, int(s)), floor)
    else:
        new_size = [max(make_divisible(x, int(s)), floor) for x in imgsz]
    if new_size != imgsz:
        LOGGER.warning(f"WARNING: --img-size {imgsz} must be multiple of max stride {s}, updating to {new_size}")
    return new_size


def one_cycle(y1: float = 0.0, y2: float = 1.0, steps: int = 100):
    """Cosine ramp from y1 to y2 over ``steps``."""
    return lambda x: ((1 - math.cos(x * math.pi / steps)) / 2) * (y2 - y1) + y1


def get_latest_run(search_dir: str | Path = ".") -> str:
    """Path of the most recently created ``last*.pt`` under ``search_dir`` ('' if none), for ``--resume``."""
    last_list = glob.glob(f"{search_dir}/**/last*.pt", recursive=True)
    return max(last_list, key=os.path.getctime) if last_list else ""


class OutputNames:
    """One output name (stem) per source file, unique within a run.

    Outputs are named after their source (``labels/a.txt`` for ``a.jpg``), so ``a.jpg`` and ``a.png``, or
    ``x/a.jpg`` and ``y/a.jpg``, would write into the same files. The first source keeps its stem; each later
    source with a stem already taken gets ``<stem>_2``, ``<stem>_3``... (with a warning naming both files).
    """

    def __init__(self) -> None:
        self._stem_of: dict[str, str] = {}  # source -> stem
        self._owner: dict[str, str] = {}  # stem -> source

    def __call__(self, source: str | Path) -> str:
        key = str(source)
        if key in self._stem_of:
            return self._stem_of[key]
        stem = base = Path(key).stem
        n = 1
        while stem in self._owner:
            n += 1
            stem = f"{base}_{n}"
        if n > 1:
            LOGGER.warning(f"WARNING: {key} has the same name as {self._owner[base]}; its outputs are saved as "
                           f"{stem}.* so that neither overwrites the other")
        self._stem_of[key], self._owner[stem] = stem, key
        return stem


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None], durable: bool = False) -> None:
    """Call ``write`` on a new uniquely named file next to ``path``, then rename it to ``path``.

    A reader never sees a half-written file, and concurrent writers (several processes or threads) never share a
    temporary file. The temporary file is removed on failure and the error re-raised. ``durable`` also flushes
    the data to disk before the rename (a power cut leaves the old file or the new one).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, "xb") as f:
            write(f)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
