"""Validate a trained YOLOv5 model on a detection dataset.

Usage:
    $ python val.py --weights runs/train/exp/weights/best.pt --data ../shared/data/bccd/bccd.yaml --img 320
    $ python val.py --weights best.pt                      # no --data: the embedded demo set (data/shapes.yaml)
    $ python val.py --weights best.onnx --img 320     # exports: .torchscript, .onnx (--dnn), _openvino_model, .engine
"""

from __future__ import annotations

import argparse
import zipfile
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

FILE = Path(__file__).resolve()
ROOT = FILE.parents[0]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))
ROOT = Path(os.path.relpath(ROOT, Path.cwd()))  # relative

from models.backends import DetectMultiBackend  # noqa: E402
from models.compiled import add_speed_args  # noqa: E402
from utils.boxes import scale_coords, xywh2xyxy, xyxy2xywh  # noqa: E402
from utils.callbacks import Callbacks  # noqa: E402
from utils.coco import append_predictions, coco80_to_coco91_class, coco_evaluate, dataset_to_coco  # noqa: E402
from utils.amp import check_half  # noqa: E402
from utils.dataset_yaml import check_dataset, split_path  # noqa: E402
from utils.datasets import create_dataloader  # noqa: E402
from utils.general import (LOGGER, InputError, OutputNames, check_img_size, check_yaml, colorstr,  # noqa: E402
                           increment_path, print_args, run_cli)
from utils.eval_records import EvalRecords  # noqa: E402
from utils.metrics import ConfusionMatrix, ap_per_class, process_batch  # noqa: E402
from utils.nms import NMS_METHODS, check_nms_method, non_max_suppression  # noqa: E402
from utils.plots import output_to_target, plot_images, plot_val_study  # noqa: E402
from utils.torch_utils import select_device, time_sync  # noqa: E402

DEFAULT_DATA = ROOT / "data" / "shapes.yaml"  # the embedded demo set, generated offline on first use
STUDY_SIZES = range(256, 1536 + 128, 128)  # --task study: 256, 384, ..., 1536


def save_one_txt(predn: torch.Tensor, save_conf: bool, shape: tuple, file: Path) -> None:
    """Append ``cls x y w h [conf]`` lines, normalised by the original image (w, h)."""
    gn = torch.tensor(shape)[[1, 0, 1, 0]]  # normalisation gain whwh
    with open(file, "a") as f:
        for *xyxy, conf, cls in predn.tolist():
            xywh = (xyxy2xywh(torch.tensor(xyxy).view(1, 4)) / gn).view(-1).tolist()
            line = (cls, *xywh, conf) if save_conf else (cls, *xywh)
            f.write(("%g " * len(line)).rstrip() % line + "\n")


def warn_nc_mismatch(model: DetectMultiBackend, data: dict, single_cls: bool = False) -> None:
    """Warn when a .pt model predicts another number of classes than the dataset has (metrics would mislead)."""
    head = getattr(getattr(model, "model", None), "model", None)
    nc_model = getattr(head[-1], "nc", None) if isinstance(head, torch.nn.Sequential) else None
    nc_data = 1 if single_cls else int(data["nc"])
    if nc_model is not None and nc_model != nc_data:
        LOGGER.warning(f"WARNING: the model predicts {nc_model} classes but {data.get('yaml_file', 'the data')} has "
                       f"nc={nc_data}: predicted class ids are scored against the dataset's, so a model trained on "
                       f"other classes gets a meaningless mAP")


@dataclass
class Validation:
    """The settings and running totals of one ``val.run`` (shared by its phases).

    Attributes:
        model, device, half, training: the model, its device, fp16 inputs, and whether train.py called.
        dataloader, nc, names, iouv, class_map: the data, classes, IoU thresholds of mAP@.5:.95, COCO ids.
        conf_thres, iou_thres, single_cls, augment, save_hybrid: NMS and inference settings.
        nms, soft_sigma: the suppression method of ``utils.nms.non_max_suppression`` and its Gaussian σ.
        save_txt, save_conf, save_json, save_dir, plots: outputs; callbacks, compute_loss: as passed to run.
        seen, dt, loss, stats, jdict: images seen, seconds (pre-process, inference, NMS), val losses,
            per-image (correct, conf, cls, target cls) and COCO predictions.
        images, stat_image: every image path in order, and the index into ``images`` of each ``stats`` entry
            (the per-image evaluation records, ``utils.eval_records``).
    """

    model: Any
    device: torch.device
    half: bool
    training: bool
    dataloader: Any
    nc: int
    names: dict
    iouv: torch.Tensor
    class_map: list
    conf_thres: float
    iou_thres: float
    single_cls: bool
    augment: bool
    save_hybrid: bool
    save_txt: bool
    save_conf: bool
    save_json: bool
    save_dir: Path
    plots: bool
    callbacks: Callbacks
    compute_loss: Any
    confusion_matrix: ConfusionMatrix
    out_name: OutputNames = field(default_factory=OutputNames)  # label files of a.jpg and a.png stay apart
    seen: int = 0
    dt: list = field(default_factory=lambda: [0.0, 0.0, 0.0])
    loss: torch.Tensor | None = None
    stats: list = field(default_factory=list)
    jdict: list = field(default_factory=list)
    images: list = field(default_factory=list)
    stat_image: list = field(default_factory=list)
    nms: str = "nms"
    soft_sigma: float = 0.5
    max_det: int = 300


@torch.no_grad()
def run(data: str | Path | dict = DEFAULT_DATA,
        weights: str | list | None = None,
        batch_size: int = 32,
        imgsz: int = 640,
        conf_thres: float = 0.001,
        iou_thres: float = 0.6,
        task: str = "val",
        device: str = "",
        workers: int = 8,
        single_cls: bool = False,
        augment: bool = False,
        verbose: bool = False,
        save_txt: bool = False,
        save_hybrid: bool = False,
        save_conf: bool = False,
        save_json: bool = False,
        project: str | Path = ROOT / "runs/val",
        name: str = "exp",
        exist_ok: bool = False,
        half: bool = True,
        dnn: bool = False,
        model: torch.nn.Module | None = None,
        dataloader: Any = None,
        save_dir: Path = Path(""),
        plots: bool = True,
        callbacks: Callbacks | None = None,
        compute_loss: Any = None,
        nms: str = "nms",
        soft_sigma: float = 0.5,
        save_records: bool | str | Path = False,
        max_det: int = 300,
        channels_last: bool = True,
        compile: str | None = None) -> tuple:
    """Validate ``weights`` (or a ``model`` passed by train.py) on the ``task`` split of ``data``.

    ``nms`` picks the suppression (``nms``: v6.1's hard NMS; ``diou``, ``soft-linear``, ``soft-gaussian``: see
    ``utils.nms_variants``) and ``soft_sigma`` is the σ of ``soft-gaussian``. ``save_records`` writes the
    per-image evaluation records (``utils.eval_records``) to that path, or to ``save_dir/records.npz`` when True.
    ``max_det`` caps the detections kept per image (v6.1: 300). ``channels_last`` and ``compile`` apply to
    ``.pt`` weights (see detect.py's ``run``).

    Returns:
        ``((P, R, mAP@.5, mAP@.5:.95, val box, val obj, val cls), maps, times)`` with ``maps`` the per-class
        mAP@.5:.95 (length nc) and ``times`` the (pre-process, inference, NMS) ms per image.
    """
    callbacks = callbacks if callbacks is not None else Callbacks()
    check_nms_method(nms, soft_sigma)  # before anything is loaded or made
    training = model is not None
    if training:  # called by train.py
        device = next(model.parameters()).device
        half &= device.type != "cpu"  # half precision only on CUDA
        model.half() if half else model.float()
    else:
        model, device, half, data, save_dir, batch_size, imgsz = load_model(
            data, weights, batch_size, imgsz, task, device, single_cls, project, name, exist_ok, half, dnn, save_txt,
            channels_last, compile)
    model.eval()
    is_coco = isinstance(data.get("val"), str) and data["val"].endswith(f"coco{os.sep}val2017.txt")
    nc = 1 if single_cls else int(data["nc"])
    if not training:
        dataloader = standalone_dataloader(model, data, task, imgsz, batch_size, workers, single_cls, half)

    v = Validation(model=model, device=device, half=half, training=training, dataloader=dataloader, nc=nc,
                   names=dict(enumerate(model.names if hasattr(model, "names") else model.module.names)),
                   iouv=torch.linspace(0.5, 0.95, 10, device=device),  # IoU thresholds for mAP@.5:.95
                   class_map=coco80_to_coco91_class() if is_coco else list(range(1000)),
                   conf_thres=conf_thres, iou_thres=iou_thres, single_cls=single_cls, augment=augment,
                   save_hybrid=save_hybrid, save_txt=save_txt, save_conf=save_conf, save_json=save_json,
                   save_dir=save_dir, plots=plots, callbacks=callbacks, compute_loss=compute_loss,
                   confusion_matrix=ConfusionMatrix(nc=nc), loss=torch.zeros(3, device=device), nms=nms,
                   soft_sigma=soft_sigma, max_det=max_det)
    callbacks.run("on_val_start")
    s = ("%20s" + "%11s" * 6) % ("Class", "Images", "Labels", "P", "R", "mAP@.5", "mAP@.5:.95")
    for batch_i, batch in enumerate(tqdm(dataloader, desc=s, bar_format="{l_bar}{bar:10}{r_bar}{bar:-10b}")):
        callbacks.run("on_val_batch_start")
        val_batch(v, batch_i, *batch)
    if not training and hasattr(dataloader, "close"):
        dataloader.close()  # its own loader: stop the workers now (see InfiniteDataLoader.close)

    metrics = compute_metrics(v)
    if save_records:
        f = save_dir / "records.npz" if save_records is True else Path(save_records)
        EvalRecords.from_stats(v.images, v.stats, v.stat_image, v.iouv.tolist()).save(f)
    t = report(v, metrics, verbose, batch_size, imgsz)
    mp, mr, map50, map_, ap, ap_class = metrics[:6]
    if plots:  # v6.1 fires on_val_end only here, after the plots
        v.confusion_matrix.plot(save_dir=save_dir, names=list(v.names.values()))
        callbacks.run("on_val_end")
    if save_json and len(v.jdict):
        map_, map50 = coco_eval(v, weights, data, map_, map50)

    model.float()  # for training
    if not training:
        n_txt = len(list(save_dir.glob("labels/*.txt")))
        s = f"\n{n_txt} labels saved to {save_dir / 'labels'}" if save_txt else ""
        LOGGER.info(f"Results saved to {colorstr('bold', save_dir)}{s}")
    maps = np.zeros(nc) + map_
    for i, c in enumerate(ap_class):
        maps[c] = ap[i]
    return (mp, mr, map50, map_, *(v.loss.cpu() / max(len(dataloader), 1)).tolist()), maps, t


def load_model(data: str | Path | dict, weights: str | list | None, batch_size: int, imgsz: int, task: str,
               device: str, single_cls: bool, project: str | Path, name: str, exist_ok: bool, half: bool,
               dnn: bool, save_txt: bool, channels_last: bool = True, compile_mode: str | None = None) -> tuple:
    """Standalone validation: load the model and the dataset yaml, then make the output folder.

    Returns:
        ``(model, device, half, data, save_dir, batch_size, imgsz)`` (``batch_size`` 1 for a shape-specialised
        export; ``imgsz`` a multiple of the stride).

    Raises:
        InputError: no ``weights``; a bad dataset yaml or a missing split.
    """
    device = select_device(device, batch_size=batch_size)
    if weights is None:
        raise InputError("val.py needs --weights (a .pt checkpoint, or a .torchscript, .onnx, _openvino_model or "
                         ".engine export)")
    model = DetectMultiBackend(weights, device=device, dnn=dnn, data=data, channels_last=channels_last,
                               compile_mode=compile_mode)
    stride, pt, jit, onnx = model.stride, model.pt, model.jit, model.onnx
    imgsz = check_img_size(imgsz, s=stride)
    half &= (pt or jit or onnx or model.engine) and device.type != "cpu"  # half precision only on CUDA
    if half and pt:
        half = check_half(model.model, device)  # fp32 when fp16 gives other answers (overflow, missing kernels)
    if pt or jit:
        model.model.half() if half else model.model.float()
    fixed_batch = model.input_shape[0] if model.input_shape and model.input_shape[0] else None
    if model.engine and model.runtime.profile is not None:  # a dynamic engine: at most its profile's batch
        batch_size = min(batch_size, int(model.runtime.profile[1][0]))
    elif not model.dynamic:  # shape-specialised export: square images, the batch the export was made for
        batch_size = fixed_batch or 1  # a smaller last batch is padded up to it
        LOGGER.info(f"Forcing --batch-size {batch_size} square inference shape({batch_size},3,{imgsz},{imgsz}) "
                    f"for non-PyTorch backends")
    data = check_dataset(data, autodownload=True)
    split_path(data, task if task in ("train", "val", "test") else "val")  # a missing split: say so now
    warn_nc_mismatch(model, data, single_cls)
    save_dir = increment_path(Path(project) / name, exist_ok=exist_ok, mkdir=True)  # once model and data are ok
    if save_txt:
        (save_dir / "labels").mkdir(parents=True, exist_ok=True)
    return model, device, half, data, save_dir, batch_size, imgsz


def standalone_dataloader(model: DetectMultiBackend, data: dict, task: str, imgsz: int, batch_size: int,
                          workers: int, single_cls: bool, half: bool) -> Any:
    """Warm the backend up and make the loader of the ``task`` split (rectangular when the backend allows)."""
    model.warmup(imgsz=(1 if model.pt else batch_size, 3, imgsz, imgsz), half=half)
    rect = model.dynamic and task != "benchmark"  # rectangular batches need a backend that takes any H, W
    pad = 0.0 if task in ("speed", "benchmark") or not rect else 0.5
    task = task if task in ("train", "val", "test") else "val"
    return create_dataloader(split_path(data, task), imgsz, batch_size, model.stride, single_cls, pad=pad,
                             rect=rect, workers=workers, prefix=colorstr(f"{task}: "))[0]


def val_batch(v: Validation, batch_i: int, im: torch.Tensor, targets: torch.Tensor, paths: list,
              shapes: list) -> None:
    """One batch: inference, losses, NMS, per-image statistics and outputs, the first batches' plots."""
    t1 = time_sync()
    im = im.to(v.device, non_blocking=True)
    im = (im.half() if v.half else im.float()) / 255  # uint8 0-255 -> 0.0-1.0
    targets = targets.to(v.device)
    nb, _, height, width = im.shape
    t2 = time_sync()
    v.dt[0] += t2 - t1

    out, train_out = v.model(im) if v.training else v.model(im, augment=v.augment, val=True)
    v.dt[1] += time_sync() - t2
    if v.compute_loss:
        v.loss += v.compute_loss([x.float() for x in train_out], targets)[1]  # box, obj, cls

    targets[:, 2:] *= torch.tensor((width, height, width, height), device=v.device)  # to pixels
    lb = [targets[targets[:, 0] == i, 1:] for i in range(nb)] if v.save_hybrid else []
    t3 = time_sync()
    out = non_max_suppression(out, v.conf_thres, v.iou_thres, labels=lb, multi_label=True, agnostic=v.single_cls,
                              method=v.nms, sigma=v.soft_sigma, max_det=v.max_det,
                              time_limit=None)  # metrics must not depend on machine load
    v.dt[2] += time_sync() - t3

    for si, pred in enumerate(out):
        val_image(v, pred, targets[targets[:, 0] == si, 1:], im[si], Path(paths[si]), shapes[si])

    if v.plots and batch_i < 3:
        plot_images(im, targets, paths, v.save_dir / f"val_batch{batch_i}_labels.jpg", v.names)
        plot_images(im, output_to_target(out), paths, v.save_dir / f"val_batch{batch_i}_pred.jpg", v.names)
    v.callbacks.run("on_val_batch_end", batch_i, im, targets, paths, shapes, out)


def val_image(v: Validation, pred: torch.Tensor, labels: torch.Tensor, im: torch.Tensor, path: Path,
              shapes: tuple) -> None:
    """Score one image's detections against its labels (``cls, x, y, w, h`` in input pixels) and save them."""
    nl, niou = len(labels), v.iouv.numel()
    tcls = labels[:, 0].tolist() if nl else []
    shape = shapes[0]
    v.seen += 1
    v.images.append(str(path))
    if len(pred) == 0:
        if nl:
            v.stat_image.append(len(v.images) - 1)
            v.stats.append((torch.zeros(0, niou, dtype=torch.bool), torch.Tensor(), torch.Tensor(), tcls))
        return
    if v.single_cls:
        pred[:, 5] = 0
    predn = pred.clone()
    scale_coords(im.shape[1:], predn[:, :4], shape, shapes[1])  # to original image pixels
    if nl:
        tbox = xywh2xyxy(labels[:, 1:5])
        scale_coords(im.shape[1:], tbox, shape, shapes[1])
        labelsn = torch.cat((labels[:, 0:1], tbox), 1)  # (nl, 5) cls, xyxy in original pixels
        correct = process_batch(predn, labelsn, v.iouv)
        if v.plots:
            v.confusion_matrix.process_batch(predn, labelsn)
    else:
        correct = torch.zeros(pred.shape[0], niou, dtype=torch.bool)
    v.stats.append((correct.cpu(), pred[:, 4].cpu(), pred[:, 5].cpu(), tcls))
    v.stat_image.append(len(v.images) - 1)
    if v.save_txt:
        save_one_txt(predn, v.save_conf, shape, file=v.save_dir / "labels" / (v.out_name(path) + ".txt"))
    if v.save_json:
        append_predictions(predn, v.jdict, path, v.class_map)
    v.callbacks.run("on_val_image_end", pred, predn, path, v.names, im)


def compute_metrics(v: Validation) -> tuple:
    """P, R and AP per class from the collected statistics (PR/F1 curves drawn when plotting).

    Returns:
        ``(mp, mr, map50, map_, ap, ap_class, p, r, ap50, nt, has_stats)``: means, AP@.5:.95 per class and its
        classes, per-class P, R, AP@.5, labels per class, and whether any image was scored.
    """
    p, r, mp, mr, map50, map_ = 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    ap, ap_class, ap50 = [], [], []
    stats = [np.concatenate(x, 0) for x in zip(*v.stats)]  # to numpy
    if len(stats) and stats[0].any():
        tp, fp, p, r, f1, ap, ap_class = ap_per_class(*stats, plot=v.plots, save_dir=v.save_dir, names=v.names)
        ap50, ap = ap[:, 0], ap.mean(1)  # AP@0.5, AP@0.5:0.95
        mp, mr, map50, map_ = p.mean(), r.mean(), ap50.mean(), ap.mean()
        nt = np.bincount(stats[3].astype(np.int64), minlength=v.nc)  # labels per class
    else:
        nt = np.bincount(stats[3].astype(np.int64), minlength=v.nc) if len(stats) else np.zeros(1, dtype=int)
    return mp, mr, map50, map_, ap, ap_class, p, r, ap50, nt, bool(len(stats))


def report(v: Validation, metrics: tuple, verbose: bool, batch_size: int, imgsz: int) -> tuple:
    """Log the summary line, per-class lines and (standalone) the speeds; returns ms per image per phase."""
    mp, mr, map50, map_, ap, ap_class, p, r, ap50, nt, has_stats = metrics
    pf = "%20s" + "%11i" * 2 + "%11.3g" * 4
    LOGGER.info(pf % ("all", v.seen, nt.sum(), mp, mr, map50, map_))
    if (verbose or (v.nc < 50 and not v.training)) and v.nc > 1 and has_stats and len(ap_class):
        for i, c in enumerate(ap_class):
            LOGGER.info(pf % (v.names[c], v.seen, nt[c], p[i], r[i], ap50[i], ap[i]))

    t = tuple(x / max(v.seen, 1) * 1e3 for x in v.dt)  # ms per image
    if not v.training:
        shape = (batch_size, 3, imgsz, imgsz)
        LOGGER.info(f"Speed: %.1fms pre-process, %.1fms inference, %.1fms NMS per image at shape {shape}" % t)
    return t


def coco_eval(v: Validation, weights: str | list | None, data: dict, map_: float, map50: float
              ) -> tuple[float, float]:
    """Save the predictions json and score it with pycocotools (ground truth built from the labels when there is
    no COCO annotation file); returns ``(mAP@.5:.95, mAP@.5)``, unchanged when pycocotools cannot score."""
    w = Path(weights[0] if isinstance(weights, list) else weights).stem if weights is not None else ""
    pred_json = str(v.save_dir / f"{w}_predictions.json")
    LOGGER.info(f"\nEvaluating pycocotools mAP... saving {pred_json}...")
    with open(pred_json, "w") as f:
        json.dump(v.jdict, f)
    anno_json = Path(data.get("path") or "../coco") / "annotations" / "instances_val2017.json"
    if not anno_json.is_file():  # no COCO ground truth: build it from the dataset's own labels
        ds = v.dataloader.dataset
        anno_json = v.save_dir / "ground_truth.json"
        gt = dataset_to_coco(ds.img_files, ds.labels, ds.shapes, list(v.names.values()), v.class_map)
        anno_json.write_text(json.dumps(gt))
        LOGGER.info(f"Ground truth for pycocotools written to {anno_json}")
    res = coco_evaluate(anno_json, pred_json)
    if res is not None:
        map_, map50 = res
    return map_, map50


def parse_opt() -> argparse.Namespace:
    """The command-line options of val.py (v6.1's flags)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=str, default=DEFAULT_DATA, help="dataset.yaml path")
    parser.add_argument("--weights", nargs="+", type=str, default=ROOT / "yolov5s.pt",
                        help="model path(s): .pt, .torchscript or .onnx")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size")
    parser.add_argument("--imgsz", "--img", "--img-size", type=int, default=640, help="inference size (pixels)")
    parser.add_argument("--conf-thres", type=float, default=0.001, help="confidence threshold")
    parser.add_argument("--iou-thres", type=float, default=0.6, help="NMS IoU threshold")
    parser.add_argument("--max-det", type=int, default=300, help="maximum detections per image")
    parser.add_argument("--task", default="val", help="train, val, test, speed or study")
    parser.add_argument("--device", default="", help="cuda device, i.e. 0 or 0,1,2,3 or cpu")
    parser.add_argument("--workers", type=int, default=8, help="max dataloader workers")
    parser.add_argument("--single-cls", action="store_true", help="treat as single-class dataset")
    parser.add_argument("--augment", action="store_true", help="augmented inference")
    parser.add_argument("--verbose", action="store_true", help="report mAP by class")
    parser.add_argument("--save-txt", action="store_true", help="save results to *.txt")
    parser.add_argument("--save-hybrid", action="store_true", help="save label+prediction hybrid results to *.txt")
    parser.add_argument("--save-conf", action="store_true", help="save confidences in --save-txt labels")
    parser.add_argument("--save-json", action="store_true", help="save a COCO-JSON results file")
    parser.add_argument("--project", default=ROOT / "runs/val", help="save to project/name")
    parser.add_argument("--name", default="exp", help="save to project/name")
    parser.add_argument("--exist-ok", action="store_true", help="existing project/name ok, do not increment")
    parser.add_argument("--half", action="store_true", help="use FP16 half-precision inference")
    parser.add_argument("--dnn", action="store_true", help="use OpenCV DNN for ONNX inference")
    add_speed_args(parser)
    parser.add_argument("--nms", default="nms", choices=NMS_METHODS, help="suppression: hard NMS, DIoU-NMS, Soft-NMS")
    parser.add_argument("--soft-sigma", type=float, default=0.5, help="sigma of --nms soft-gaussian")
    parser.add_argument("--save-records", action="store_true", help="save per-image evaluation records (records.npz)")
    opt = parser.parse_args()
    opt.data = check_yaml(opt.data)
    opt.save_json |= str(opt.data).endswith("coco.yaml")
    opt.save_txt |= opt.save_hybrid
    print_args(FILE.stem, opt)
    return opt


def main(opt: argparse.Namespace) -> Any:
    """Run the ``--task``: validate (train/val/test), time (speed) or sweep image sizes (study)."""
    if opt.task in ("train", "val", "test"):
        if opt.conf_thres > 0.001:
            LOGGER.warning(f"WARNING: confidence threshold {opt.conf_thres} >> 0.001 will produce invalid mAP values.")
        return run(**vars(opt))
    weights = opt.weights if isinstance(opt.weights, list) else [opt.weights]
    opt.half = True
    if opt.task == "speed":  # speed benchmarks
        opt.conf_thres, opt.iou_thres, opt.save_json = 0.25, 0.45, False
        for opt.weights in weights:
            run(**vars(opt), plots=False)
    elif opt.task == "study":  # mAP and speed against image size
        for opt.weights in weights:
            f = f"study_{Path(opt.data).stem}_{Path(opt.weights).stem}.txt"
            y = []
            for opt.imgsz in STUDY_SIZES:
                LOGGER.info(f"\nRunning {f} --imgsz {opt.imgsz}...")
                r, _, t = run(**vars(opt), plots=False)
                y.append(r + t)
            np.savetxt(f, y, fmt="%10.4g")
        LOGGER.info("Study results saved to study_*.txt")
        with zipfile.ZipFile("study.zip", "w") as z:  # v6.1 zips the tables
            for f in sorted(Path(".").glob("study_*.txt")):
                z.write(f)
        plot_val_study(x=list(STUDY_SIZES))
    else:
        raise InputError(f"unknown --task {opt.task!r}: use train, val, test, speed or study")


if __name__ == "__main__":
    run_cli(main, parse_opt, "val.py")
