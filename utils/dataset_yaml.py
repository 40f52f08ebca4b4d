"""Dataset yaml loading and checking, and the ``download:`` hook.

Differences from v6.1, on purpose:

* a relative ``path`` is resolved against the yaml file's own folder (so a dataset folder such as
  ``../shared/data/bccd`` with ``path: .`` can be moved as one unit); v6.1's rule (relative to the repository
  root) is the fallback, used when the data are found there and not beside the yaml. When neither exists, the
  yaml-folder reading is kept (so that the error names it, and a ``synthetic:`` dataset is generated there),
  except for a yaml with a ``download:`` entry in this repository's ``data/`` folder: its data go where v6.1 puts
  them, the repository-root reading (``data/VOC.yaml``'s ``../datasets/VOC`` is ``<repo>/../datasets/VOC``);
* a ``download:`` entry is never run as code: it is an ``http(s)://...zip`` URL (fetched, unzipped into the
  parent of ``path``, deleted) or the name of a Python function registered in
  :data:`utils.dataset_downloads.DOWNLOADS` (``download: voc``); anything else (v6.1's Python or ``bash`` text)
  is refused with a :class:`DatasetConfigError`. It runs only when ``check_dataset(..., autodownload=True)`` finds
  ``val`` missing; offline it fails at once, naming the URLs and where to put the files by hand;
* a yaml with a ``synthetic:`` entry has its demo data generated locally when ``val`` is missing
  (:mod:`utils.synthetic`);
* the download functions receive the dict with the resolved ``path`` (v6.1 passed the yaml text's ``path``, which
  its scripts read relative to the current folder).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from utils.dataset_downloads import DOWNLOADS, get_downloader
from utils.general import LOGGER, ROOT, InputError, check_yaml
from utils.synthetic import generate_dataset


class DatasetConfigError(InputError):
    """A dataset yaml that cannot be used; the message names the file and what is wrong."""


def _load_yaml(data: str | Path) -> tuple[dict, Path]:
    """Parse a dataset yaml; returns ``(dict, resolved file)``."""
    if str(data).lower().endswith(".zip"):
        raise DatasetConfigError(f"{data}: zipped datasets are not supported; unzip it and pass its yaml")
    f = Path(check_yaml(data)).resolve()  # FileNotFoundError names the file
    try:
        d = yaml.safe_load(f.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise DatasetConfigError(f"{f}: invalid dataset yaml: {e}") from None
    if not isinstance(d, dict):
        raise DatasetConfigError(f"{f}: a dataset yaml must be a mapping with keys path/train/val/nc/names")
    return d, f


def _resolve_root(path: str | Path, yaml_dir: Path | None, val: Any = None, downloads: bool = False) -> Path:
    """Dataset root for a yaml ``path`` entry (see module docstring).

    Candidates: the yaml's folder, then the repository root (v6.1). The first under which the (first) ``val``
    entry exists wins; if it exists under none, the first candidate (without ``val``: the first that exists),
    or the repository-root one for a yaml in the repository's ``data/`` folder that ``downloads``.
    """
    p = Path(path)
    if p.is_absolute():
        return p
    candidates = ([yaml_dir / p] if yaml_dir else []) + [ROOT / p]
    v = val[0] if isinstance(val, (list, tuple)) and val else val
    found = [c for c in candidates if (c / str(v)).exists()] if v else [c for c in candidates if c.exists()]
    if not found and downloads and yaml_dir and yaml_dir.resolve().is_relative_to((ROOT / "data").resolve()):
        return candidates[-1].resolve()  # where v6.1 downloads it
    return (found or candidates)[0].resolve()


def _prefix_split(root: Path, x: Any) -> Any:
    """Prefix one split entry (a path string or a list of them) with the dataset root."""
    if isinstance(x, (list, tuple)):
        return [str((root / str(v)).resolve()) for v in x]
    return str((root / str(x)).resolve())


def check_dataset(data: str | Path | dict, autodownload: bool = False) -> dict:
    """Load and check a dataset yaml (or dict); resolve paths; generate a synthetic demo set when declared.

    Args:
        data: yaml file (a bare name is searched under ``data/``), or an already loaded dict.
        autodownload: run the yaml's ``download:`` entry when ``val`` is missing (train.py and val.py pass True;
            the default False only reports the missing paths).

    Returns:
        The dict with absolute ``path``/``train``/``val``/``test``, an int ``nc`` and a ``names`` list.

    Raises:
        FileNotFoundError: the yaml, or a ``val`` path, does not exist (the message lists them); a download failed
            (:class:`utils.dataset_downloads.DatasetDownloadError`: the message names the URLs and where to put
            the files by hand).
        DatasetConfigError: invalid yaml, missing ``nc``, ``names`` that do not match ``nc``, or a ``download:``
            entry that is neither a zip URL nor a registered name (when it would run).
    """
    if isinstance(data, dict):
        d, yaml_dir = dict(data), None
        f = str(d.get("yaml_file") or "dataset dict")
    else:
        d, file = _load_yaml(data)
        f, yaml_dir = str(file), file.parent
    if "nc" not in d:
        raise DatasetConfigError(f"{f}: Dataset 'nc' key missing.")
    nc = d["nc"]
    try:
        ok = not isinstance(nc, (bool, float)) and int(nc) >= 1
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise DatasetConfigError(f"{f}: 'nc' (the number of classes) must be a positive integer, got {nc!r}")
    d["nc"] = int(nc)
    names = d.get("names") or [f"class{i}" for i in range(d["nc"])]
    if isinstance(names, dict):  # {0: name, ...} form
        names = [names[k] for k in sorted(names)]
    d["names"] = [str(x) for x in names]
    if len(d["names"]) != d["nc"]:
        raise DatasetConfigError(f"{f}: {len(d['names'])} names found for nc={d['nc']} dataset "
                                 f"(names and nc must match)")

    d["yaml_file"] = f  # for later messages (split_path)
    root = _resolve_root(d.get("path") or "", yaml_dir, d.get("val"), downloads=bool(d.get("download")))
    d["path"] = str(root)
    for k in "train", "val", "test":
        if d.get(k):
            d[k] = _prefix_split(root, d[k])

    val = [Path(x) for x in (d["val"] if isinstance(d.get("val"), list) else [d["val"]] if d.get("val") else [])]
    missing = [str(x) for x in val if not x.exists()]
    if missing:
        LOGGER.info(f"\nDataset not found, missing paths: {missing}")
        if d.get("synthetic") is not None:
            try:
                generate_dataset(root, names=d["names"], **dict(d["synthetic"] or {}))
            except (TypeError, ValueError) as e:  # unknown keys or class names
                raise DatasetConfigError(f"{f}: invalid 'synthetic' entry: {e}") from None
            missing = [str(x) for x in val if not x.exists()]
        ran = bool(missing and d.get("download") and autodownload)
        if ran:
            _autodownload(d, f)
            missing = [str(x) for x in val if not x.exists()]
        if missing:
            hint = "" if not d.get("download") else (
                " Its 'download:' entry ran but did not provide them; check the yaml's val entry." if ran else
                " Its 'download:' entry was not run: check_dataset(autodownload=False) never downloads (train.py "
                "and val.py run it); or fetch the data yourself.")
            raise FileNotFoundError(f"Dataset not found: {f} lists missing paths {missing}.{hint}")
    return d


def _autodownload(d: dict, f: str) -> None:
    """Run the dataset's ``download:`` entry (a zip URL or a registered function name; see module docstring).

    Raises:
        DatasetConfigError: the entry is anything else (it is not run).
        FileNotFoundError: the download failed (the message says what to put where).
    """
    fn = get_downloader(d["download"])
    if fn is None:
        text = str(d["download"]).strip()
        preview = (text.splitlines() or [""])[0][:60] + (" ..." if len(text) > 60 or "\n" in text else "")
        raise DatasetConfigError(
            f"{f}: its 'download:' entry ({preview!r}) is not run: dataset yamls are never executed as Python or "
            f"shell code. Fetch the data yourself into {d['path']}, or set 'download:' to an http(s) URL of a .zip "
            f"or to one of the registered download functions: {', '.join(DOWNLOADS)}.")
    try:
        fn(d)
    except BaseException:
        LOGGER.info("Dataset autodownload failure\n")
        raise
    LOGGER.info(f"Dataset autodownload success, saved to {d['path']}\n")


def split_path(data: dict, split: str) -> str | list[str]:
    """The ``split`` entry ('train', 'val' or 'test') of a checked dataset dict.

    Raises:
        DatasetConfigError: the dataset yaml has no such entry (the message names the yaml).
    """
    if not data.get(split):
        src = data.get("yaml_file", "the dataset yaml")
        alt = " or run val.py with --task val" if split == "test" else ""
        raise DatasetConfigError(f"{src}: no '{split}' entry: add it, e.g. '{split}: images/{split}' (relative to "
                                 f"'path'){alt}")
    return data[split]
