"""Hyperparameter files (``data/hyps/*.yaml``): loading and checking before any training starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from utils.general import LOGGER, InputError

# every key the training recipe reads (loss gains, optimizer, warmup, augmentation)
REQUIRED = ("lr0", "lrf", "momentum", "weight_decay", "warmup_epochs", "warmup_momentum", "warmup_bias_lr", "box",
            "cls", "cls_pw", "obj", "obj_pw", "anchor_t", "fl_gamma", "hsv_h", "hsv_s", "hsv_v", "degrees",
            "translate", "scale", "shear", "perspective", "flipud", "fliplr", "mosaic", "mixup", "copy_paste")
OPTIONAL = ("iou_t", "anchors", "nam_l1", "label_smoothing")  # read when present


class HypError(InputError):
    """A hyperparameter file that cannot be trained with; the message names the file and the keys."""


def load_hyp(hyp: str | Path | dict) -> dict[str, Any]:
    """Read and check a hyp yaml (or dict): every required key present and numeric.

    Unknown keys (a typo such as ``lr_0``) are reported and ignored.

    Raises:
        FileNotFoundError: the file does not exist.
        HypError: invalid yaml, a missing key, or a non-numeric value (the message names the file).
    """
    src = "hyp dict" if isinstance(hyp, dict) else str(hyp)
    if not isinstance(hyp, dict):
        if not Path(hyp).is_file():
            raise FileNotFoundError(f"hyperparameter file not found: {hyp}")
        try:
            hyp = yaml.safe_load(Path(hyp).read_text(encoding="utf-8", errors="ignore"))
        except yaml.YAMLError as e:
            raise HypError(f"{src}: not valid yaml: {e}") from None
        if not isinstance(hyp, dict):
            raise HypError(f"{src}: a hyp file is a mapping of names to numbers (see data/hyps/hyp.scratch-low.yaml)")
    missing = [k for k in REQUIRED if k not in hyp]
    if missing:
        raise HypError(f"{src}: missing hyperparameter(s) {', '.join(missing)} (see data/hyps/hyp.scratch-low.yaml "
                       f"for every key and its default)")
    bad = {k: v for k, v in hyp.items() if k in REQUIRED + OPTIONAL and
           (isinstance(v, bool) or not isinstance(v, (int, float)) or (k == "anchors" and v < 0))}
    if bad:
        raise HypError(f"{src}: hyperparameters must be numbers, got {bad}")
    unknown = [k for k in hyp if k not in REQUIRED + OPTIONAL]
    if unknown:
        LOGGER.warning(f"WARNING: {src}: unknown hyperparameter(s) {', '.join(map(str, unknown))} are ignored")
    return dict(hyp)
