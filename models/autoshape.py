"""``AutoShape`` and ``Detections``: YOLOv5 v6.1's image-in, boxes-out inference API (what torch.hub returns).

``AutoShape(model)`` wraps a ``models.yolo.Model`` or a ``models.backends.DetectMultiBackend``. It takes images as
they come (file paths, http(s) URLs, PIL images, HWC RGB numpy arrays, or a list of these), letterboxes them into
one batch, runs the model and NMS, maps the boxes back to each original image and returns a :class:`Detections`.
A BCHW tensor in 0..1 goes straight to the model and its raw output comes back.

Usage:
    from models.autoshape import AutoShape
    from models.backends import DetectMultiBackend
    model = AutoShape(DetectMultiBackend('yolov5s.pt'))
    model.conf = 0.4                                   # NMS confidence threshold (also iou, classes, max_det...)
    results = model(['zidane.jpg', pil_image, rgb_array], size=640)
    results.print()                                    # image 1/3: 720x1280 2 persons, 1 tie ...
    results.pandas().xyxy[0]                           # xmin ymin xmax ymax confidence class name

v6.1 defines both classes in ``models/common.py``, which re-exports them from here (lazily: this module imports
``models.backends``, which is built on top of ``models.common``).
"""

from __future__ import annotations

import io
import urllib.parse
import urllib.request
from contextlib import nullcontext
from copy import copy
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

from models.backends import DetectMultiBackend
from utils.annotator import Annotator, colors
from utils.augmentations import letterbox
from utils.boxes import scale_coords, xyxy2xywh
from utils.general import LOGGER, colorstr, increment_path, make_divisible
from utils.labels import exif_transpose
from utils.nms import non_max_suppression
from utils.plots import save_one_box
from utils.torch_utils import copy_attr, time_sync

ImageInput = Union[str, Path, Image.Image, np.ndarray]
URL_TIMEOUT = 10.0  # seconds to fetch an image URL
DEFAULT_SAVE_DIR = "runs/detect/exp"  # the one save_dir that is incremented (exp2, exp3...)


def fetch_image(url: str, timeout: float = URL_TIMEOUT) -> Image.Image:
    """The image at ``url``.

    Raises:
        ConnectionError: the download failed (offline, bad URL, timeout); the message names the URL.
    """
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            data = r.read()
    except Exception as e:  # URLError, timeouts, HTTP errors, bad URLs: one clear message
        raise ConnectionError(f"could not download the image {url} ({type(e).__name__}: {e}). Without a network, "
                              f"save the image locally and pass its path or the loaded image instead.") from None
    return Image.open(io.BytesIO(data))


def load_image(im: ImageInput, index: int = 0) -> tuple[np.ndarray, str]:
    """One AutoShape input as a contiguous HWC 3-channel numpy array, and its output file name.

    Files and URLs are opened with PIL and turned upright by their EXIF orientation, PIL images too; numpy arrays
    are used as they are (assumed RGB). There is no colour-mode conversion: a 2-D array is tiled to 3 channels,
    channels past the third (alpha) are dropped, and an array whose first axis is < 5 is taken as CHW.

    Args:
        im: a file path, an ``http(s)://`` URL, a PIL image or a numpy array.
        index: the image's position in the batch, which names unnamed inputs (``image<index>.jpg``).

    Returns:
        ``(array, name)``; ``name`` is the input's base name with a ``.jpg`` suffix (``data/a.png`` -> ``a.jpg``).
    """
    f = f"image{index}"
    if isinstance(im, (str, Path)):
        s = str(im)
        if s.startswith("http"):
            im, f = fetch_image(s), urllib.parse.urlsplit(s).path or f
        else:
            im, f = Image.open(s), s
        im = np.asarray(exif_transpose(im))
    elif isinstance(im, Image.Image):
        f = getattr(im, "filename", "") or f
        im = np.asarray(exif_transpose(im))
    elif not isinstance(im, np.ndarray):
        raise TypeError(f"AutoShape takes file paths, URLs, PIL images, numpy arrays or a list of them; image {index} "
                        f"is a {type(im).__name__}")
    if im.ndim == 3 and im.shape[0] < 5:  # CHW -> HWC
        im = im.transpose((1, 2, 0))
    im = im[..., :3] if im.ndim == 3 else np.tile(im[..., None], 3)  # (h, w) -> (h, w, 3)
    return np.ascontiguousarray(im), Path(Path(f).name or f"image{index}").with_suffix(".jpg").name


def batch_shape(shapes: Sequence[Sequence[int]], size: float, stride: Any = 32) -> list[int]:
    """(h, w) of the inference batch: every (h, w) scaled so its longer side is ``size``, the largest height and
    width over the batch, each rounded up to a multiple of ``stride`` (a tensor stride counts as its max).

    Example: ``batch_shape([(720, 1280), (1080, 810)], 640)`` is ``[640, 640]``; ``[(720, 1280)]`` gives
    ``[384, 640]``.
    """
    scaled = []
    for s in shapes:
        g = size / max(s[0], s[1])
        scaled.append([s[0] * g, s[1] * g])
    return [make_divisible(x, stride) for x in np.array(scaled).max(0)]


class AutoShape(nn.Module):
    """Input-robust inference wrapper: images in any common form in, :class:`Detections` out.

    Attributes (class defaults, set per instance, e.g. ``model.conf = 0.5``):
        conf: NMS confidence threshold. iou: NMS IoU threshold. agnostic: class-agnostic NMS.
        multi_label: several labels per box. classes: class indices to keep (None: all).
        max_det: most detections per image. amp: CUDA autocast for inference and NMS (never on the CPU).

    ``.to()``, ``.cuda()`` and ``.half()`` also convert the Detect head's ``stride``, ``grid`` and ``anchor_grid``
    (plain attributes, not buffers): ``models.yolo.Model`` does it for every PyTorch model, wrapped or not.
    """

    conf = 0.25
    iou = 0.45
    agnostic = False
    multi_label = False
    classes: list[int] | None = None
    max_det = 1000
    amp = False

    def __init__(self, model: nn.Module):
        """Wrap ``model`` (a ``Model`` or a ``DetectMultiBackend``), which is put in eval mode.

        ``yaml``, ``nc``, ``hyp``, ``names``, ``stride`` and ``abc`` are copied from the model where it has them.
        """
        super().__init__()
        LOGGER.info("Adding AutoShape... ")
        copy_attr(self, model, include=("yaml", "nc", "hyp", "names", "stride", "abc"), exclude=())
        self.dmb = isinstance(model, DetectMultiBackend)
        self.pt = not self.dmb or model.pt  # a PyTorch model inside
        self.model = model.eval()

    def _first_param(self) -> torch.Tensor:
        """A tensor with the device and dtype inputs must have: the model's first parameter (PyTorch, TorchScript),
        or a float32 zero on the backend's device (ONNX)."""
        if self.pt:
            return next(self.model.parameters())
        p = next(self.model.parameters(), None)
        return p if p is not None else torch.zeros(1, device=getattr(self.model, "device", "cpu"))

    def _run(self, x: torch.Tensor, augment: bool, profile: bool) -> Any:
        """The wrapped model on ``x`` (``profile`` reaches a plain Model only: DetectMultiBackend's third argument
        is ``visualize``)."""
        return self.model(x, augment=augment) if self.dmb else self.model(x, augment, profile)

    def _input_shape(self, shape1: list[int], size: float) -> tuple[int, int]:
        """(h, w) to letterbox to: the batch shape where the model takes any size, else the export's fixed size."""
        if not self.dmb or getattr(self.model, "dynamic", self.pt):
            return shape1[0], shape1[1]
        s = getattr(self.model, "input_shape", None)
        if s and len(s) == 4 and s[2] and s[3]:
            return int(s[2]), int(s[3])
        return int(size), int(size)

    def preprocess(self, imgs: ImageInput | list, size: float,
                   p: torch.Tensor) -> tuple[torch.Tensor, list[np.ndarray], list, tuple[int, int], list[str]]:
        """Load and letterbox ``imgs`` into one batch.

        A caller's list is modified in place: its elements become the loaded numpy arrays (as in v6.1).

        Returns:
            ``(x, imgs, shapes0, shape_in, files)``: the (n, 3, h, w) float batch in 0..1, the list of HWC
            arrays, their original (h, w), the letterboxed (h, w) and the output file names.
        """
        if isinstance(size, bool) or not isinstance(size, (int, float)):
            raise TypeError(f"AutoShape size must be one number (the longer image side), got {size!r}")
        imgs = imgs if isinstance(imgs, list) else list(imgs) if isinstance(imgs, tuple) else [imgs]
        files = []
        for i, im in enumerate(imgs):
            imgs[i], f = load_image(im, i)
            files.append(f)
        if not imgs:
            raise ValueError("AutoShape got an empty list of images")
        shapes0 = [im.shape[:2] for im in imgs]
        shape_in = self._input_shape(batch_shape(shapes0, size, getattr(self, "stride", 32)), size)
        x = np.stack([letterbox(im, shape_in, auto=False)[0] for im in imgs], 0)  # (n, h, w, 3)
        x = np.ascontiguousarray(x.transpose((0, 3, 1, 2)))  # (n, h, w, 3) -> (n, 3, h, w)
        return torch.from_numpy(x).to(p.device).type_as(p) / 255, imgs, shapes0, shape_in, files

    @torch.no_grad()
    def forward(self, imgs: ImageInput | list | torch.Tensor, size: float = 640, augment: bool = False,
                profile: bool = False) -> Detections | Any:
        """Detect objects in ``imgs``.

        Args:
            imgs: one input or a list (see :func:`load_image`), or a (b, 3, h, w) tensor in 0..1.
            size: inference size of the longer image side; the batch shape is rounded up to the stride.
            augment: test-time augmentation. profile: per-layer timing (plain ``Model`` only).

        Returns:
            A :class:`Detections`; for a tensor input, the model's own output (``DetectMultiBackend``: the
            prediction tensor; ``Model``: ``(prediction, level outputs)``).
        """
        t = [time_sync()]
        p = self._first_param()
        autocast = torch.autocast("cuda") if self.amp and p.device.type == "cuda" else nullcontext()
        if isinstance(imgs, torch.Tensor):
            with autocast:
                return self._run(imgs.to(p.device).type_as(p), augment, profile)
        x, imgs, shapes0, shape_in, files = self.preprocess(imgs, size, p)
        t.append(time_sync())
        with autocast:
            y = self._run(x, augment, profile)
            t.append(time_sync())
            y = non_max_suppression(y if self.dmb else y[0], self.conf, iou_thres=self.iou, classes=self.classes,
                                    agnostic=self.agnostic, multi_label=self.multi_label, max_det=self.max_det)
            for det, shape0 in zip(y, shapes0):
                scale_coords(shape_in, det[:, :4], shape0)  # in place, to original-image pixels
            t.append(time_sync())
        return Detections(imgs, y, files, t, self.names, x.shape)


class Detections:
    """Detections of one AutoShape batch, with print/show/save/crop/render/pandas helpers.

    Attributes:
        imgs: HWC RGB numpy images. pred, xyxy: per image an (n, 6) tensor ``x1, y1, x2, y2, conf, cls`` in
            original-image pixels. xywh: centre x, centre y, width, height (conf, cls kept). xyxyn, xywhn: the
            same divided by the image's [w, h, w, h]. names: class names. files: output file names.
        times: the 4 raw timestamps. n: number of images. t: ms per image for pre-process, inference and NMS.
        s: the inference batch shape (b, 3, h, w).
    """

    def __init__(self, imgs: list[np.ndarray], pred: list[torch.Tensor], files: list[str],
                 times: Sequence[float] = (0, 0, 0, 0), names: Sequence[str] | None = None, shape: Any = None):
        d = pred[0].device  # at least one image
        gn = [torch.tensor([im.shape[1], im.shape[0], im.shape[1], im.shape[0], 1, 1], device=d) for im in imgs]
        self.imgs, self.pred, self.names, self.files, self.times = imgs, pred, names, files, times
        self.xyxy = pred
        self.xywh = [xyxy2xywh(x) for x in pred]
        self.xyxyn = [x / g for x, g in zip(self.xyxy, gn)]
        self.xywhn = [x / g for x, g in zip(self.xywh, gn)]
        self.n = len(self.pred)
        self.t = tuple((times[i + 1] - times[i]) * 1000 / self.n for i in range(3))  # ms per image
        self.s = shape

    def summary(self, i: int) -> str:
        """``image 1/2: 720x1280 2 persons, 1 tie`` (classes in ascending index), or ``... (no detections)``."""
        im, pred = self.imgs[i], self.pred[i]
        s = f"image {i + 1}/{self.n}: {im.shape[0]}x{im.shape[1]} "
        if not pred.shape[0]:
            return s + "(no detections)"
        for c in pred[:, -1].unique():  # sorted
            k = int((pred[:, -1] == c).sum())
            s += f"{k} {self.names[int(c)]}{'s' * (k > 1)}, "
        return s.rstrip(", ")

    def _annotated(self, i: int) -> np.ndarray:
        """A copy of image ``i`` with its boxes and ``name conf`` labels drawn (highest confidence on top)."""
        annotator = Annotator(self.imgs[i].copy(), example=str(self.names))
        for *box, conf, cls in reversed(self.pred[i]):
            annotator.box_label(box, f"{self.names[int(cls)]} {float(conf):.2f}", color=colors(int(cls)))
        return np.require(annotator.result(), requirements=["C", "W"])  # PIL mode gives a read-only array

    def _crops(self, i: int, save: bool, save_dir: Path | None) -> list[dict]:
        """One crop dict per box of image ``i`` (reverse order); saved to ``crops/<name>/<file>`` when ``save``."""
        bgr = np.ascontiguousarray(self.imgs[i][..., ::-1])  # save_one_box writes BGR with OpenCV
        out = []
        for *box, conf, cls in reversed(self.pred[i]):
            name = self.names[int(cls)]
            file = save_dir / "crops" / name / self.files[i] if save else Path(self.files[i])
            im = save_one_box(torch.stack(box), bgr, file=file, BGR=True, save=save)  # RGB input -> reversed (BGR)
            out.append({"box": box, "conf": conf, "cls": cls, "label": f"{name} {float(conf):.2f}", "im": im})
        return out

    def display(self, pprint: bool = False, show: bool = False, save: bool = False, crop: bool = False,
                render: bool = False, save_dir: Path = Path("")) -> list[dict]:
        """The worker behind print/show/save/crop/render; returns the crop dicts (empty unless ``crop``)."""
        crops: list[dict] = []
        for i in range(self.n):
            im = self.imgs[i]
            if pprint:
                LOGGER.info(self.summary(i))
            if self.pred[i].shape[0] and (show or save or render or crop):
                if crop:
                    crops += self._crops(i, save, save_dir)  # crops and full images stay un-annotated
                else:
                    im = self._annotated(i)
            if show:
                Image.fromarray(im.astype(np.uint8)).show(self.files[i])
            if save:
                Image.fromarray(im.astype(np.uint8)).save(Path(save_dir) / self.files[i])
                if i == self.n - 1:
                    LOGGER.info(f"Saved {self.n} image{'s' * (self.n > 1)} to {colorstr('bold', save_dir)}")
            if render:
                self.imgs[i] = im
        return crops

    def print(self) -> None:
        """Log one line per image, then ``Speed: ...ms pre-process, ...ms inference, ...ms NMS per image at shape``."""
        self.display(pprint=True)
        shape = tuple(self.s) if self.s is not None else None
        LOGGER.info(f"Speed: %.1fms pre-process, %.1fms inference, %.1fms NMS per image at shape {shape}" % self.t)

    def show(self) -> None:
        """Open each annotated image in the system viewer (PIL ``show``)."""
        self.display(show=True)

    def save(self, save_dir: str | Path = DEFAULT_SAVE_DIR) -> None:
        """Save annotated images to ``save_dir/<file>``; the default ``runs/detect/exp`` increments (exp2...)."""
        save_dir = increment_path(save_dir, exist_ok=save_dir != DEFAULT_SAVE_DIR, mkdir=True)
        self.display(save=True, save_dir=save_dir)

    def crop(self, save: bool = True, save_dir: str | Path = DEFAULT_SAVE_DIR) -> list[dict]:
        """Crop every box; with ``save``, write ``save_dir/crops/<name>/<file>`` and the un-annotated images.

        Returns:
            One dict per box with keys ``box`` (4 scalar tensors), ``conf``, ``cls``, ``label`` and ``im``
            (the crop, channels reversed from the input: BGR for RGB images).
        """
        save_dir = increment_path(save_dir, exist_ok=save_dir != DEFAULT_SAVE_DIR, mkdir=True) if save else None
        crops = self.display(crop=True, save=save, save_dir=save_dir)
        if save:
            LOGGER.info(f"Saved results to {save_dir}\n")
        return crops

    def render(self) -> list[np.ndarray]:
        """Draw the boxes into ``self.imgs`` (replaced by annotated copies) and return them."""
        self.display(render=True)
        return self.imgs

    def pandas(self) -> Detections:
        """A shallow copy whose ``xyxy``, ``xyxyn``, ``xywh`` and ``xywhn`` are lists of DataFrames.

        Columns: ``xmin ymin xmax ymax confidence class name`` (xyxy, xyxyn) or ``xcenter ycenter width height
        confidence class name`` (xywh, xywhn); five floats, the class as an int, then its name.
        """
        import pandas as pd  # only needed here

        new = copy(self)
        ca = "xmin", "ymin", "xmax", "ymax", "confidence", "class", "name"
        cb = "xcenter", "ycenter", "width", "height", "confidence", "class", "name"
        for k, c in zip(("xyxy", "xyxyn", "xywh", "xywhn"), (ca, ca, cb, cb)):
            rows = [[[*r[:5], int(r[5]), self.names[int(r[5])]] for r in x.tolist()] for x in getattr(self, k)]
            setattr(new, k, [pd.DataFrame(r, columns=c) for r in rows])
        return new

    def tolist(self) -> list[Detections]:
        """One single-image Detections per image (same times, names and shape; so each ``t`` is the batch's)."""
        return [Detections([self.imgs[i]], [self.pred[i]], [self.files[i]], self.times, self.names, self.s)
                for i in range(self.n)]

    def __len__(self) -> int:
        return self.n
