"""Hyperparameter files (``data/hyps/*.yaml``): loading and checking before any training starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from utils.general import LOGGER, InputError
from utils.iou import canonical_iou_type

# every key the training recipe reads (loss gains, optimizer, warmup, augmentation)
REQUIRED = ("lr0", "lrf", "momentum", "weight_decay", "warmup_epochs", "warmup_momentum", "warmup_bias_lr", "box",
            "cls", "cls_pw", "obj", "obj_pw", "anchor_t", "fl_gamma", "hsv_h", "hsv_s", "hsv_v", "degrees",
            "translate", "scale", "shear", "perspective", "flipud", "fliplr", "mosaic", "mixup", "copy_paste")
OPTIONAL = ("iou_t", "anchors", "nam_l1", "label_smoothing",  # read when present
            "iou_type", "iou_alpha", "iou_gamma", "wiou_alpha", "wiou_delta", "wiou_momentum")  # box loss
TEXT = ("iou_type",)  # the optional keys whose value is a name, not a number
# box-loss keys that only one iou_type reads: (key, the iou_type, allowed range as text, test)
_IOU_KEYS = (("iou_alpha", "AlphaIoU", "> 0", lambda v: v > 0), ("iou_gamma", "EIoU", ">= 0", lambda v: v >= 0),
             ("wiou_alpha", "WIoU", "> 0", lambda v: v > 0), ("wiou_delta", "WIoU", "> 0", lambda v: v > 0),
             ("wiou_momentum", "WIoU", "in (0, 1]", lambda v: 0 < v <= 1))


class HypError(InputError):
    """A hyperparameter file that cannot be trained with; the message names the file and the keys."""


def load_hyp(hyp: str | Path | dict) -> dict[str, Any]:
    """Read and check a hyp yaml (or dict): every required key present and numeric.

    Unknown keys (a typo such as ``lr_0``) are reported and ignored.

    Raises:
        FileNotFoundError: the file does not exist.
        HypError: invalid yaml, a missing key, a non-numeric value, an unknown ``iou_type`` or a box-loss
            parameter out of range (the message names the file).
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
    bad = {k: v for k, v in hyp.items() if k in REQUIRED + OPTIONAL and k not in TEXT and
           (isinstance(v, bool) or not isinstance(v, (int, float)) or (k == "anchors" and v < 0))}
    if bad:
        raise HypError(f"{src}: hyperparameters must be numbers, got {bad}")
    unknown = [k for k in hyp if k not in REQUIRED + OPTIONAL]
    if unknown:
        LOGGER.warning(f"WARNING: {src}: unknown hyperparameter(s) {', '.join(map(str, unknown))} are ignored")
    return check_box_loss(dict(hyp), src)


def check_box_loss(hyp: dict[str, Any], src: str) -> dict[str, Any]:
    """Canonicalise ``iou_type`` (absent means CIoU, v6.1's loss; nothing is added) and check its parameters.

    A parameter of another iou_type (``iou_alpha`` with ``iou_type: SIoU``) is reported and ignored.

    Raises:
        HypError: an unknown ``iou_type`` (the message lists the valid names) or a parameter out of range.
    """
    if "iou_type" in hyp:
        try:
            hyp["iou_type"] = canonical_iou_type(hyp["iou_type"])
        except ValueError as e:
            raise HypError(f"{src}: {e}") from None
    iou_type = hyp.get("iou_type", "CIoU")
    for key, owner, allowed, ok in _IOU_KEYS:
        if key in hyp and not ok(hyp[key]):
            raise HypError(f"{src}: {key} must be {allowed}, got {hyp[key]}")
        if key in hyp and owner != iou_type:
            LOGGER.warning(f"WARNING: {src}: {key} is read only with iou_type {owner} (this file trains {iou_type}); "
                           f"it is ignored")
    return hyp
