"""Dataset yaml loading and checking, without any download.

Differences from v6.1, on purpose:

* a relative ``path`` is resolved against the yaml file's own folder (so a dataset folder such as
  ``../shared/data/bccd`` with ``path: .`` can be moved as one unit); v6.1's rule (relative to the repository
  root) is the fallback, used when the data are found there and not beside the yaml; when neither exists the
  yaml-folder reading is kept (so that the error names it, and a ``synthetic:`` dataset is generated there);
* nothing is ever downloaded: a missing ``val`` set raises a ``FileNotFoundError`` listing the missing paths,
  unless the yaml has a ``synthetic:`` entry, in which case the demo data are generated locally
  (:mod:`utils.synthetic`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

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


def _resolve_root(path: str | Path, yaml_dir: Path | None, val: Any = None) -> Path:
    """Dataset root for a yaml ``path`` entry (see module docstring).

    Candidates: the yaml's folder, then the repository root (v6.1). The first under which the (first) ``val``
    entry exists wins; if it exists under none, the first candidate (without ``val``: the first that exists).
    """
    p = Path(path)
    if p.is_absolute():
        return p
    candidates = ([yaml_dir / p] if yaml_dir else []) + [ROOT / p]
    v = val[0] if isinstance(val, (list, tuple)) and val else val
    found = [c for c in candidates if (c / str(v)).exists()] if v else [c for c in candidates if c.exists()]
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
        autodownload: accepted for v6.1 call compatibility; ignored (this project never downloads).

    Returns:
        The dict with absolute ``path``/``train``/``val``/``test``, an int ``nc`` and a ``names`` list.

    Raises:
        FileNotFoundError: the yaml, or a ``val`` path, does not exist (the message lists them).
        DatasetConfigError: invalid yaml, missing ``nc``, or ``names`` that do not match ``nc``.
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
    root = _resolve_root(d.get("path") or "", yaml_dir, d.get("val"))
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
        if missing:
            hint = (" Its 'download:' entry is not run: this project never downloads at run time; "
                    "fetch the data yourself." if d.get("download") else "")
            raise FileNotFoundError(f"Dataset not found: {f} lists missing paths {missing}.{hint}")
    return d


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
