"""Run YOLOv5 detection on images, videos, folders, globs and streams.

Usage - sources:
    $ python detect.py --weights best.pt --source 0                 # webcam
                                                  img.jpg           # image
                                                  vid.mp4           # video
                                                  path/             # directory
                                                  'path/*.jpg'      # glob
                                                  streams.txt       # one stream/video/webcam per line
                                                  'rtsp://example.com/media.mp4'  # RTSP, RTMP, HTTP stream

Usage - formats (through models.backends.DetectMultiBackend):
    $ python detect.py --weights best.pt | best.torchscript | best.onnx [--dnn] | best_openvino_model | best.engine

Nothing is downloaded: weights must exist locally, and an http(s) URL naming an image/video *file* is refused
(fetch it yourself); http/rtsp/rtmp *streams* are opened by OpenCV.
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.backends.cudnn as cudnn

FILE = Path(__file__).resolve()
ROOT = FILE.parents[0]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))
ROOT = Path(os.path.relpath(ROOT, Path.cwd()))  # relative

from models.attention_vis import CAM_METHODS, AttentionVisualizer  # noqa: E402
from models.backends import DetectMultiBackend, names_from_data  # noqa: E402
from models.compiled import add_speed_args  # noqa: E402
from models.experimental import safe_classes  # noqa: E402
from utils.checkpoint import strip_optimizer  # noqa: E402
from utils.detect_results import Results  # noqa: E402
from utils.downloads import ASSETS, attempt_download  # noqa: E402
from utils.general import (LOGGER, InputError, check_img_size, colorstr, expand_imgsz,  # noqa: E402
                           increment_path, print_args, run_cli)
from utils.inference_loaders import LoadImages, LoadStreams, check_imshow, is_url  # noqa: E402
from utils.labels import IMG_FORMATS, VID_FORMATS  # noqa: E402
from utils.nms import NMS_METHODS, non_max_suppression  # noqa: E402
from utils.torch_utils import select_device, time_sync  # noqa: E402

SOURCE_HINT = ("pass --source with an image, video, directory, glob, .txt stream list or webcam index, "
               "e.g. --source ../shared/data/images")


class MissingInputError(InputError, FileNotFoundError):
    """A ``--source`` or ``--weights`` path that does not exist (an InputError and a FileNotFoundError)."""


def check_source(source: str) -> tuple[bool, bool]:
    """Classify ``source`` as (webcam/stream, saveable) and fail early with a clear message when it is unusable.

    Raises:
        InputError: a URL naming an image/video file (nothing is downloaded).
        MissingInputError: a local path, glob root or stream list that does not exist.
    """
    is_file = Path(source).suffix[1:].lower() in IMG_FORMATS + VID_FORMATS
    url = is_url(source)
    webcam = source.isnumeric() or source.endswith(".txt") or (url and not is_file)
    if url and is_file:
        raise InputError(f"--source {source} is a URL to a file: this project never downloads. Fetch it yourself "
                         f"and pass the local path (http/rtsp/rtmp *streams* are fine)")
    if not (source.isnumeric() or url) and "*" not in source and not Path(source).exists():
        raise MissingInputError(f"--source {source} does not exist: {SOURCE_HINT}")
    return webcam, not source.endswith(".txt")


def check_weights(weights: str | Path | Sequence[str | Path]) -> None:
    """Make sure every weights file is here: an official release name (``yolov5s.pt``...) is fetched when a
    network exists; anything else missing raises :class:`MissingInputError` naming it and what to do."""
    for w in weights if isinstance(weights, (list, tuple)) else [weights]:
        if Path(w).exists():
            continue
        hint = ("Pass --weights path/to/model.pt (.torchscript, .onnx, _openvino_model, .engine), e.g. "
                "runs/train/exp/weights/best.pt")
        if Path(w).name in ASSETS:  # v6.1's default and the other official checkpoints
            try:
                attempt_download(w)
                continue
            except FileNotFoundError as e:
                raise MissingInputError(f"{e}\n{hint}") from None
        raise MissingInputError(f"weights not found: {w}. {hint}; only the official release checkpoints "
                                f"({ASSETS[0]}...{ASSETS[-1]}) are fetched, when a network exists")


def check_options(imgsz: int | Sequence[int], conf_thres: float, iou_thres: float, max_det: int,
                  nms: str = "nms", soft_sigma: float = 0.5, vid_stride: int = 1) -> list[int]:
    """Check the numeric flags and the NMS method, and return ``imgsz`` as ``[h, w]``.

    Raises:
        InputError: naming the flag, what it takes and what it got.
    """
    size = expand_imgsz(imgsz)
    if len(size) != 2 or not all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in size):
        raise InputError(f"--imgsz takes one or two positive integer sizes (h w), got {imgsz}")
    for flag, v in (("--conf-thres", conf_thres), ("--iou-thres", iou_thres)):
        if not 0 <= v <= 1:
            raise InputError(f"{flag} must lie in [0, 1], got {v}")
    if max_det < 1:
        raise InputError(f"--max-det must be at least 1, got {max_det}")
    if vid_stride < 1:
        raise InputError(f"--vid-stride must be at least 1, got {vid_stride}")
    if nms not in NMS_METHODS:
        raise InputError(f"--nms must be one of {', '.join(NMS_METHODS)}, got {nms!r}")
    if nms == "soft-gaussian" and not soft_sigma > 0:
        raise InputError(f"--soft-sigma must be positive, got {soft_sigma}")
    return size


def model_names(model: DetectMultiBackend, data: str | Path | None) -> list[str]:
    """The model's class names; those of the ``data`` yaml only when the model carries none (an export without
    metadata), as in v6.1 where ``.pt`` names always win."""
    names = list(model.names)
    if data and not model.has_names:
        if Path(data).is_file():
            names = names_from_data(data) or names
        else:
            LOGGER.warning(f"WARNING: --data {data} not found; classes are named class0, class1, ...")
    return names


def eager_only(visualize: bool, attention_maps: bool, cam_layer: int | None) -> bool:
    """True (with a warning for ``--compile``) when an option hooks the eager model's layers."""
    if visualize or attention_maps or cam_layer is not None:
        LOGGER.warning("WARNING: --compile is off with --visualize, --attention-maps and --cam-layer (they hook the "
                       "eager model's layers)")
        return True
    return False


def load_model(weights: str | Path | list, device: str, dnn: bool, data: str | Path | None, half: bool,
               imgsz: list[int], channels_last: bool = True, compile_mode: str | None = None
               ) -> tuple[DetectMultiBackend, torch.device, list[str], list[int], bool]:
    """Load the backend on its device, name its classes, and settle the precision and the image size.

    Returns:
        ``(model, device, class names, imgsz rounded up to the stride, half)``; half is off on the CPU (with a
        warning).
    """
    dev = select_device(device)
    model = DetectMultiBackend(weights, device=dev, dnn=dnn, channels_last=channels_last,
                               compile_mode=compile_mode)  # data: see model_names()
    names = model_names(model, data)
    imgsz = check_img_size(imgsz, s=int(model.stride))
    if half and dev.type == "cpu":
        LOGGER.warning("WARNING: --half is supported on CUDA only; running in FP32 on CPU")
    half &= dev.type != "cpu"  # fp16 on CUDA (an OpenVINO model runs on the CPU and casts its input)
    if (model.pt or model.jit) and hasattr(model, "model"):
        model.model.half() if half else model.model.float()
    return model, dev, names, imgsz, half


def load_source(source: str, webcam: bool, imgsz: list[int], stride: int, pt: bool,
                vid_stride: int = 1) -> LoadImages | LoadStreams:
    """The loader of ``source``: streams (webcam index, URL, ``.txt`` list) or files (every ``vid_stride``-th
    video frame)."""
    if webcam:
        cudnn.benchmark = True  # constant image size
        return LoadStreams(source, img_size=imgsz, stride=stride, auto=pt)
    return LoadImages(source, img_size=imgsz, stride=stride, auto=pt, vid_stride=vid_stride)


def preprocess(im, device: torch.device, half: bool) -> torch.Tensor:
    """A loader's uint8 image(s) (3, h, w) or (B, 3, h, w) -> a (B, 3, h, w) float batch in 0..1 on ``device``."""
    x = torch.from_numpy(im).to(device)
    x = x.half() if half else x.float()
    x /= 255  # 0-255 -> 0.0-1.0
    return x[None] if x.ndim == 3 else x  # (3, h, w) -> (1, 3, h, w)


def detect_all(model: DetectMultiBackend, dataset: LoadImages | LoadStreams, results: Results, device: torch.device,
               half: bool, webcam: bool, augment: bool, visualize: bool,
               nms: Callable[[Any], list[torch.Tensor]]) -> tuple[list[float], int]:
    """Pre-process, infer (recording the attention layers when ``results.viz`` is set), ``nms`` (the
    configured non-max suppression) and write every image of ``dataset``.

    Returns:
        Seconds spent in pre-processing, inference and NMS (summed), and the number of images.
    """
    dt, seen = [0.0, 0.0, 0.0], 0
    for path, im, im0s, vid_cap, s in dataset:
        t1 = time_sync()
        im = preprocess(im, device, half)
        t2 = time_sync()
        dt[0] += t2 - t1

        stem = Path(path[0] if webcam else path).stem
        vis = increment_path(results.save_dir / stem, mkdir=True) if visualize else False  # feature maps
        with results.viz.watch() if results.viz is not None else nullcontext():
            pred = model(im, augment=augment, visualize=vis)
        t3 = time_sync()
        dt[1] += t3 - t2

        pred = nms(pred)
        dt[2] += time_sync() - t3

        quit_ = False
        for i, det in enumerate(pred):
            seen += 1
            if webcam:
                p, im0, frame, line = Path(path[i]), im0s[i].copy(), dataset.count, f"{s}{i}: "
            else:
                p, im0, frame, line = Path(path), im0s.copy(), getattr(dataset, "frame", 0), s
            quit_ |= results.image(i, det, im, p, im0, line, frame, dataset.mode, vid_cap, t3 - t2)
        if quit_:
            LOGGER.info("Stopped from the display window ('q')")
            break
    return dt, seen


def log_summary(dt: list[float], seen: int, imgsz: list[int], save_dir: Path, save_txt: bool,
                save_img: bool) -> None:
    """The speed line and, when anything was saved, where."""
    t = tuple(x / max(seen, 1) * 1e3 for x in dt)  # ms per image
    LOGGER.info(f"Speed: %.1fms pre-process, %.1fms inference, %.1fms NMS per image at shape {(1, 3, *imgsz)}" % t)
    if save_txt or save_img:
        s = f"\n{len(list(save_dir.glob('labels/*.txt')))} labels saved to {save_dir / 'labels'}" if save_txt else ""
        LOGGER.info(f"Results saved to {colorstr('bold', save_dir)}{s}")


def make_visualizer(model: DetectMultiBackend, save_dir: Path, attention_maps: bool, cam_layer: int | None,
                    cam_method: str) -> AttentionVisualizer | None:
    """The attention heatmap / CAM visualizer the flags ask for (.pt weights only), or None.

    Raises:
        InputError: a ``--cam-layer`` outside the model (raised before the results folder is made).
    """
    if not (attention_maps or cam_layer is not None):
        return None
    return AttentionVisualizer.from_backend(model, save_dir, layers=None if attention_maps else [], cam_layer=cam_layer,
                                            cam_method=cam_method)


def strip_weights(weights: str | Path | Sequence[str | Path]) -> None:
    """``--update``: strip the optimizer (and EMA) from each ``.pt`` weights file, which halves it."""
    for w in weights if isinstance(weights, (list, tuple)) else [weights]:
        if Path(w).suffix == ".pt":
            strip_optimizer(w, allowed=safe_classes())


@torch.no_grad()
def run(weights: str | Path | list = ROOT / "yolov5s.pt",
        source: str | Path = ROOT / "data/images",
        data: str | Path | None = ROOT / "data/shapes.yaml",
        imgsz: int | Sequence[int] = (640, 640),
        conf_thres: float = 0.25,
        iou_thres: float = 0.45,
        max_det: int = 1000,
        device: str = "",
        view_img: bool = False,
        save_txt: bool = False,
        save_conf: bool = False,
        save_crop: bool = False,
        nosave: bool = False,
        classes: Sequence[int] | None = None,
        agnostic_nms: bool = False,
        augment: bool = False,
        visualize: bool = False,
        update: bool = False,
        project: str | Path = ROOT / "runs/detect",
        name: str = "exp",
        exist_ok: bool = False,
        line_thickness: int = 3,
        hide_labels: bool = False,
        hide_conf: bool = False,
        half: bool = False,
        dnn: bool = False,
        attention_maps: bool = False,
        cam_layer: int | None = None,
        cam_method: str = "eigen",
        nms: str = "nms",
        soft_sigma: float = 0.5,
        vid_stride: int = 1,
        channels_last: bool = True,
        compile: str | None = None) -> Path:
    """Detect objects in ``source`` with ``weights`` and save the results under ``project/name`` (incremented).

    Args:
        weights: model file(s): .pt (several make an ensemble), .torchscript, .onnx, _openvino_model or .engine.
        source: image, video, directory, glob, ``.txt`` stream list, webcam index or stream URL.
        data: dataset yaml whose ``names`` are used only when the model carries none (an ONNX or
            TorchScript file without metadata); a ``.pt`` model's own names always win, as in v6.1.
        imgsz: inference size, one int or (h, w); rounded up to a multiple of the model stride.
        conf_thres, iou_thres: confidence threshold, NMS IoU threshold.
        max_det, device: most detections per image; ``''`` (auto), ``'cpu'``, ``'0'``, ``'0,1'``...
        view_img: show results in a window (skipped, with one warning, where there is no display).
        save_txt, save_conf: write ``labels/*.txt`` (``cls x y w h`` normalised), with the confidence last.
        save_crop: save each box, cropped from the original image, to ``crops/<class>/``.
        nosave: do not save annotated images/videos.
        classes: keep only these class ids.
        agnostic_nms: class-agnostic NMS.
        augment: test-time augmentation (PyTorch weights).
        visualize: save feature maps of every layer to ``<save_dir>/<stem>/``.
        update: strip the optimizer (and EMA) from the weights file(s) at the end.
        project, name, exist_ok: parent of the results folder, its name (``exp``, ``exp2``...), reuse it.
        line_thickness: box line width in pixels.
        hide_labels, hide_conf: draw boxes without labels; labels without confidences.
        half: FP16 inference (CUDA only).
        dnn: OpenCV DNN for ONNX.
        attention_maps: save a heatmap (and channel bar chart) per attention layer per image to
            ``<save_dir>/attention/`` (``.pt`` weights only; other backends warn and go on).
        cam_layer: yaml index of a layer whose class activation map is saved there too.
        cam_method: ``eigen`` (EigenCAM), ``grad`` or ``gradpp`` (Grad-CAM / Grad-CAM++ of the top prediction).
        nms, soft_sigma: ``nms`` (v6.1 hard NMS), ``diou``, ``soft-linear`` or ``soft-gaussian``; σ of the latter.
        vid_stride: read every ``vid_stride``-th frame of video files (saved videos play at fps / vid_stride).
        channels_last, compile: ``.pt`` weights in NHWC layout; a compiled graph per input shape (``auto``,
            ``onednn``, ``inductor``: ``models/compiled.py``; not with ``visualize``/``attention_maps``/``cam_layer``).

    Returns:
        The results folder.

    Raises:
        InputError: a bad flag or ``--cam-layer``, a URL to a file; MissingInputError (a FileNotFoundError too):
            no source or weights.
    """
    webcam, save_img = check_source(source := str(source))
    check_weights(weights)
    imgsz = check_options(imgsz, conf_thres, iou_thres, max_det, nms, soft_sigma, vid_stride)
    compile = None if compile and eager_only(visualize, attention_maps, cam_layer) else compile
    model, device, names, imgsz, half = load_model(weights, device, dnn, data, half, imgsz, channels_last, compile)
    if view_img or webcam:  # v6.1 shows streams whenever the environment can
        view_img = check_imshow(warn=view_img)
    dataset = load_source(source, webcam, imgsz, int(model.stride), model.pt, vid_stride)
    bs = len(dataset) if webcam else 1
    save_dir = increment_path(Path(project) / name, exist_ok=exist_ok)  # created once model and source are ok
    viz = make_visualizer(model, save_dir / "attention", attention_maps, cam_layer, cam_method)  # before any mkdir
    (save_dir / "labels" if save_txt else save_dir).mkdir(parents=True, exist_ok=True)
    results = Results(save_dir, names, bs, save_img and not nosave, save_txt, save_conf, save_crop, view_img,
                      line_thickness, hide_labels, hide_conf, viz, vid_stride=1 if webcam else vid_stride)
    model.warmup(imgsz=(1 if model.pt else bs, 3, *imgsz), half=half)
    suppress = partial(non_max_suppression, conf_thres=conf_thres, iou_thres=iou_thres, classes=classes,
                       agnostic=agnostic_nms, max_det=max_det, method=nms, sigma=soft_sigma)
    try:
        dt, seen = detect_all(model, dataset, results, device, half, webcam, augment, visualize, suppress)
    finally:  # a run that stops mid-video still leaves playable files
        results.close()
        dataset.close() if isinstance(dataset, LoadStreams) else dataset.release()
    log_summary(dt, seen, imgsz, save_dir, save_txt, results.save_img)
    if update:
        strip_weights(weights)
    return save_dir


def parse_opt() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", nargs="+", type=str, default=ROOT / "yolov5s.pt", help="model path(s)")
    parser.add_argument("--source", type=str, default=ROOT / "data/images", help="file/dir/URL/glob, 0 for webcam")
    parser.add_argument("--data", type=str, default=ROOT / "data/shapes.yaml",
                        help="(optional) dataset.yaml path, for class names the model does not carry")
    parser.add_argument("--imgsz", "--img", "--img-size", nargs="+", type=int, default=[640], help="inference size h,w")
    parser.add_argument("--conf-thres", type=float, default=0.25, help="confidence threshold")
    parser.add_argument("--iou-thres", type=float, default=0.45, help="NMS IoU threshold")
    parser.add_argument("--max-det", type=int, default=1000, help="maximum detections per image")
    parser.add_argument("--device", default="", help="cuda device, i.e. 0 or 0,1,2,3 or cpu")
    parser.add_argument("--view-img", action="store_true", help="show results")
    parser.add_argument("--save-txt", action="store_true", help="save results to *.txt")
    parser.add_argument("--save-conf", action="store_true", help="save confidences in --save-txt labels")
    parser.add_argument("--save-crop", action="store_true", help="save cropped prediction boxes")
    parser.add_argument("--nosave", action="store_true", help="do not save images/videos")
    parser.add_argument("--classes", nargs="+", type=int, help="filter by class: --classes 0, or --classes 0 2 3")
    parser.add_argument("--agnostic-nms", action="store_true", help="class-agnostic NMS")
    parser.add_argument("--augment", action="store_true", help="augmented inference")
    parser.add_argument("--visualize", action="store_true", help="visualize features")
    parser.add_argument("--update", action="store_true", help="strip the optimizer from the weights file(s)")
    parser.add_argument("--project", default=ROOT / "runs/detect", help="save results to project/name")
    parser.add_argument("--name", default="exp", help="save results to project/name")
    parser.add_argument("--exist-ok", action="store_true", help="existing project/name ok, do not increment")
    parser.add_argument("--line-thickness", default=3, type=int, help="bounding box thickness (pixels)")
    parser.add_argument("--hide-labels", default=False, action="store_true", help="hide labels")
    parser.add_argument("--hide-conf", default=False, action="store_true", help="hide confidences")
    parser.add_argument("--half", action="store_true", help="use FP16 half-precision inference")
    parser.add_argument("--dnn", action="store_true", help="use OpenCV DNN for ONNX inference")
    add_speed_args(parser)
    parser.add_argument("--attention-maps", action="store_true", help="save attention heatmaps to <exp>/attention")
    parser.add_argument("--cam-layer", type=int, default=None, help="save a CAM of this layer index to <exp>/attention")
    parser.add_argument("--cam-method", default="eigen", choices=list(CAM_METHODS),
                        help="CAM: EigenCAM, Grad-CAM or Grad-CAM++")
    parser.add_argument("--nms", default="nms", choices=NMS_METHODS, help="suppression: hard NMS, DIoU-NMS, Soft-NMS")
    parser.add_argument("--soft-sigma", type=float, default=0.5, help="sigma of --nms soft-gaussian")
    parser.add_argument("--vid-stride", type=int, default=1, help="video frame-rate stride")
    opt = parser.parse_args()
    opt.imgsz *= 2 if len(opt.imgsz) == 1 else 1  # expand
    print_args(FILE.stem, opt)
    return opt


def main(opt: argparse.Namespace) -> Path:
    return run(**vars(opt))


if __name__ == "__main__":
    run_cli(main, parse_opt, "detect.py")
