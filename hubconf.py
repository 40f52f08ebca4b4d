"""torch.hub entry points: YOLOv5 v6.1's models, custom checkpoints, and this project's attention models.

Usage (from a clone of this repository, no network needed for local files):
    import torch
    model = torch.hub.load('path/to/this/repo', 'yolov5s', source='local')            # official weights
    model = torch.hub.load('path/to/this/repo', 'custom', path='best.pt', source='local')  # your checkpoint
    model = torch.hub.load('path/to/this/repo', 'yolov5s_NAM', source='local', classes=3)   # attention model
    results = model('zidane.jpg')  # file, URL, PIL, numpy RGB or a list of them
    results.print()

Entry points:
    yolov5n, yolov5s, yolov5m, yolov5l, yolov5x, yolov5n6, yolov5s6, yolov5m6, yolov5l6, yolov5x6:
        ``(pretrained=True, channels=3, classes=80, autoshape=True, verbose=True, device=None)``.
    custom: ``(path='path/to/model.pt', autoshape=True, verbose=True, device=None)``; any .pt, .torchscript or
        .onnx model with its own classes and names.
    Attention models: one entry point per ``models/*.yaml`` that is not an official model, named after the file
        with ``-`` replaced by ``_`` (``yolov5s-NAM.yaml`` -> ``yolov5s_NAM``, ``yolov5n-SimAM.yaml`` ->
        ``yolov5n_SimAM``, ``yolov5s-CoTA.yaml`` -> ``yolov5s_CoTA``...). Same arguments as ``yolov5s`` but
        ``pretrained=False`` by default: there are no official weights for them. ``pretrained=True`` loads
        ``<file stem>.pt`` (e.g. ``yolov5s-NAM.pt``) from the current directory when you have one, else the
        official checkpoint of the same size (``yolov5s.pt`` for ``yolov5s-NAM``), whose every layer is
        transferred past the inserted attention layers (layers are paired by aligning the two yamls).

Missing official weights are downloaded when a network is available; offline the call fails at once, naming the URL
and where to put the file. Run ``python hubconf.py`` for a small demo.
"""

from __future__ import annotations

import re as _re
from pathlib import Path as _Path

import torch

_ROOT = _Path(__file__).resolve().parent
_OFFICIAL = tuple(f"yolov5{s}{p}" for p in ("", "6") for s in "nsmlx")
_HELP_URL = "https://github.com/ultralytics/yolov5/issues/36"


def _create(name: str | _Path, pretrained: bool = True, channels: int = 3, classes: int = 80, autoshape: bool = True,
            verbose: bool = True, device: str | torch.device | None = None) -> torch.nn.Module:
    """Create a YOLOv5 model.

    Args:
        name (str | Path): model name (``yolov5s``, looked up as ``yolov5s.pt`` / ``models/**/yolov5s.yaml``) or a
            model file path.
        pretrained (bool): load weights: with 3 channels and 80 classes the file is loaded as it is (its own classes
            and names, any supported format); otherwise the model is built from ``models/**/<stem>.yaml`` and the
            checkpoint's matching weights (same name and shape, anchors excluded) are transferred.
        channels (int): input channels. classes (int): number of classes.
        autoshape (bool): wrap the model in ``AutoShape`` (images in, ``Detections`` out).
        verbose (bool): False sets the ``yolov5`` logger to WARNING for the whole process.
        device (str | torch.device | None): ``'cpu'``, ``'0'``, ``'cuda:0'``...; None picks GPU 0 if available.

    Returns:
        The model, on ``device``.

    Raises:
        Exception: any failure after the imports, as ``<error>. Cache may be out of date, try `force_reload=True`
            or see https://github.com/ultralytics/yolov5/issues/36 for help.``, chained from the original error.
    """
    import logging

    from models.autoshape import AutoShape
    from models.backends import DetectMultiBackend
    from models.experimental import checkpoint_model, safe_classes
    from models.transfer import transfer_state_dict
    from models.yolo import Model
    from utils.checkpoint import load_checkpoint
    from utils.downloads import attempt_download
    from utils.general import LOGGER, check_requirements
    from utils.torch_utils import select_device

    if not verbose:
        LOGGER.setLevel(logging.WARNING)
    check_requirements(exclude=("tensorboard", "thop", "opencv-python"))  # advice only: never installs or raises
    path = _Path(name).with_suffix(".pt") if _Path(name).suffix == "" else _Path(name)  # yolov5s -> yolov5s.pt
    try:
        device = select_device(("0" if torch.cuda.is_available() else "cpu") if device is None else device)
        cfgs = sorted((_ROOT / "models").rglob(f"{path.stem}.yaml"), key=lambda p: (len(p.parts), str(p)))
        as_file = path.exists() or path.stem in _OFFICIAL or not cfgs  # else: an attention yaml without its .pt
        if pretrained and channels == 3 and classes == 80 and as_file:
            model = DetectMultiBackend(attempt_download(path), device=device)  # the file's own classes and names
        else:
            if not cfgs:
                raise FileNotFoundError(f"no model yaml {path.stem}.yaml under {_ROOT / 'models'}")
            model = Model(cfgs[0], channels, classes)
            if pretrained:
                weights = path if path.stem in _OFFICIAL or path.exists() else _official_base(model.yaml, path)
                ckpt = load_checkpoint(attempt_download(weights), map_location=device, allowed=safe_classes())
                src = checkpoint_model(ckpt, weights, prefer_ema=False)
                # layers paired by aligning the two yamls: an inserted attention layer shifts no weight
                csd, remapped = transfer_state_dict(src.float().state_dict(), getattr(src, "yaml", None),
                                                    model.state_dict(), model.yaml, exclude=("anchors",))
                model.load_state_dict(csd, strict=False)
                LOGGER.info(f"Transferred {len(csd)}/{len(model.state_dict())} items from {weights}"
                            + (f" ({remapped} remapped)" if remapped else ""))
                if len(getattr(src, "names", ())) == classes:
                    model.names = list(src.names)
        if autoshape:
            model = AutoShape(model)
        return model.to(device)
    except Exception as e:
        s = f"{e}. Cache may be out of date, try `force_reload=True` or see {_HELP_URL} for help."
        raise Exception(s) from e


def _official_base(cfg: dict, path: _Path) -> _Path:
    """The official checkpoint whose model a yaml extends (same depth and width multiples, P5 or P6): the
    pretrained weights of an attention model without its own ``<stem>.pt``.

    Raises:
        FileNotFoundError: no official model has these multiples (the message says what to pass instead).
    """
    import yaml

    key = (cfg.get("depth_multiple"), cfg.get("width_multiple"), len(cfg.get("anchors") or ()) == 4)
    for stem in _OFFICIAL:
        f = next((_ROOT / "models").rglob(f"{stem}.yaml"), None)
        d = yaml.safe_load(f.read_text()) if f else {}
        if (d.get("depth_multiple"), d.get("width_multiple"), len(d.get("anchors") or ()) == 4) == key:
            return _Path(f"{stem}.pt")
    raise FileNotFoundError(f"{path} not found, and no official model has depth_multiple {key[0]} and "
                            f"width_multiple {key[1]}: train it, then load it with custom(path=...)")


def custom(path: str | _Path = "path/to/model.pt", autoshape: bool = True, verbose: bool = True,
           device: str | torch.device | None = None) -> torch.nn.Module:
    """A custom or local model file (.pt, .torchscript, .onnx) with its own classes and names."""
    return _create(path, autoshape=autoshape, verbose=verbose, device=device)


def _entry(stem: str, doc: str, pretrained_default: bool = True):
    """The entry point ``<stem>(pretrained, channels, classes, autoshape, verbose, device)`` of a model; its name
    is ``stem`` with every non-identifier character replaced by ``_``."""
    def entry(pretrained: bool = pretrained_default, channels: int = 3, classes: int = 80, autoshape: bool = True,
              verbose: bool = True, device: str | torch.device | None = None) -> torch.nn.Module:
        return _create(stem, pretrained, channels, classes, autoshape, verbose, device)

    entry.__name__ = entry.__qualname__ = _re.sub(r"\W", "_", stem)
    entry.__doc__ = doc
    return entry


yolov5n = _entry("yolov5n", "YOLOv5-nano (P5, 640).")
yolov5s = _entry("yolov5s", "YOLOv5-small (P5, 640).")
yolov5m = _entry("yolov5m", "YOLOv5-medium (P5, 640).")
yolov5l = _entry("yolov5l", "YOLOv5-large (P5, 640).")
yolov5x = _entry("yolov5x", "YOLOv5-xlarge (P5, 640).")
yolov5n6 = _entry("yolov5n6", "YOLOv5-nano-P6 (1280).")
yolov5s6 = _entry("yolov5s6", "YOLOv5-small-P6 (1280).")
yolov5m6 = _entry("yolov5m6", "YOLOv5-medium-P6 (1280).")
yolov5l6 = _entry("yolov5l6", "YOLOv5-large-P6 (1280).")
yolov5x6 = _entry("yolov5x6", "YOLOv5-xlarge-P6 (1280).")


def _attention_entries() -> dict:
    """``{entry name: function}`` for every ``models/*.yaml`` that is not an official model (names are checked
    to be identifiers that clash with nothing)."""
    out = {}
    for f in sorted((_ROOT / "models").glob("*.yaml")):
        fn = _entry(f.stem, f"Model of models/{f.stem}.yaml: random weights, or with pretrained=True {f.stem}.pt if "
                    f"it is here, else the official weights of its size transferred past the attention layers. "
                    f"Arguments as yolov5s.", pretrained_default=False)
        if f.stem not in _OFFICIAL and fn.__name__.isidentifier() and fn.__name__ not in globals():
            out.setdefault(fn.__name__, fn)
    return out


globals().update(_attention_entries())


def _demo() -> None:
    """v6.1's ``python hubconf.py`` demo on local inputs: a file name, a Path, an OpenCV image flipped to RGB, a PIL
    image and a blank numpy image; official yolov5s weights if present (or downloadable), else random weights."""
    import cv2
    import numpy as np
    from PIL import Image

    from utils.general import LOGGER

    try:
        model = _create("yolov5s", pretrained=True)
    except Exception as e:
        LOGGER.warning(f"WARNING: {e}\nRunning the demo with random weights (no boxes expected)")
        model = _create("yolov5s", pretrained=False)
    files = sorted(_ROOT.glob("data/images/*.jpg"))[:2]
    if files:
        imgs = [str(files[0]), files[-1], cv2.imread(str(files[0]))[:, :, ::-1], Image.open(files[-1])]
    else:
        LOGGER.warning(f"WARNING: no sample images in {_ROOT / 'data/images'} (e.g. zidane.jpg, bus.jpg): running on "
                       f"a blank image only. URLs work too when there is a network.")
        imgs = []
    results = model(imgs + [np.zeros((320, 640, 3))], size=320)  # batched inference
    results.print()
    results.save()


if __name__ == "__main__":
    _demo()
