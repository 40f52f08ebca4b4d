"""v6.1 import paths: every public name of YOLOv5 v6.1's modules resolves
from the v6.1 module, as the very object of the implementing module (a re-export, never a copy)."""

from __future__ import annotations

import importlib
import inspect
import os
import re
from pathlib import Path

import pytest
import torch.nn as nn

# (module, names) from the v6.1 surface (public names per module); all of these resolve now.
RESOLVED = [
    ("utils.general", "FILE ROOT DATASETS_DIR NUM_THREADS VERBOSE FONT LOGGER NCOLS is_kaggle is_writeable "
     "set_logging WorkingDirectory try_except methods print_args init_seeds intersect_dicts get_latest_run "
     "is_docker is_colab is_pip is_ascii is_chinese emojis file_size check_version check_img_size check_imshow "
     "check_suffix check_yaml check_file check_dataset url2file make_divisible clean_str one_cycle colorstr "
     "labels_to_class_weights labels_to_image_weights coco80_to_coco91_class xyxy2xywh xywh2xyxy xywhn2xyxy "
     "xyxy2xywhn xyn2xy segment2box segments2boxes resample_segments scale_coords clip_coords non_max_suppression "
     "strip_optimizer increment_path box_iou fitness os Path np pd logging CONFIG_DIR user_config_dir Profile Timeout "
     "check_online check_git_status check_python check_requirements check_font print_mutation apply_classifier "
     "download gsutil_getsize"),
    ("utils.torch_utils", "torch_distributed_zero_first date_modified select_device time_sync is_parallel de_parallel "
     "initialize_weights find_modules sparsity prune fuse_conv_and_bn model_info scale_img copy_attr EarlyStopping "
     "ModelEMA git_describe device_count profile"),
    ("utils.plots", "Colors colors Annotator feature_visualization output_to_target plot_images plot_val_study "
     "plot_labels plot_evolve plot_results save_one_box RANK check_pil_font hist2d butter_lowpass_filtfilt "
     "plot_lr_scheduler plot_val_txt plot_targets_txt profile_idetection"),
    ("utils.datasets", "HELP_URL IMG_FORMATS VID_FORMATS get_hash exif_size create_dataloader InfiniteDataLoader "
     "LoadImages LoadStreams img2label_paths LoadImagesAndLabels verify_image_label orientation LoadWebcam "
     "create_folder flatten_recursive extract_boxes dataset_stats exif_transpose autosplit"),
    ("utils.augmentations", "Albumentations augment_hsv letterbox random_perspective copy_paste mixup box_candidates "
     "hist_equalize replicate cutout"),
    ("utils.downloads", "attempt_download gsutil_getsize safe_download gdrive_download get_token"),
    ("utils.metrics", "fitness ap_per_class compute_ap ConfusionMatrix bbox_iou box_iou bbox_ioa wh_iou plot_pr_curve "
     "plot_mc_curve"),
    ("utils.loss", "smooth_BCE BCEBlurWithLogitsLoss FocalLoss QFocalLoss ComputeLoss"),
    ("utils.autoanchor", "PREFIX check_anchor_order check_anchors kmean_anchors"),
    ("utils.callbacks", "Callbacks"),
    ("utils.activations", "SiLU Hardswish Mish MemoryEfficientMish FReLU AconC MetaAconC"),
    ("models.common", "autopad Conv DWConv TransformerLayer TransformerBlock Bottleneck BottleneckCSP C3 C3TR C3Ghost "
     "C3SPP SPP SPPF Focus GhostConv GhostBottleneck Contract Expand Concat DetectMultiBackend Classify AutoShape "
     "Detections"),
    ("models.experimental", "CrossConv Sum MixConv2d Ensemble attempt_load attempt_download Conv"),
    ("models.yolo", "FILE ROOT Detect Model parse_model"),
]

CONSTANTS = {"FILE": Path, "ROOT": Path, "DATASETS_DIR": Path, "NUM_THREADS": int, "VERBOSE": bool, "FONT": str,
             "NCOLS": int, "HELP_URL": str, "IMG_FORMATS": list, "VID_FORMATS": list, "PREFIX": str,
             "CONFIG_DIR": Path, "RANK": int, "orientation": int}
MODULES = {"os", "np", "pd", "logging"}
INSTANCES = {"LOGGER", "colors"}  # a logging.Logger, a Colors palette


def _pairs(table):
    return [(m, n) for m, names in table for n in names.split()]


@pytest.mark.parametrize("module, name", _pairs(RESOLVED))
def test_v61_name_resolves(module, name):
    obj = getattr(importlib.import_module(module), name)
    if name in CONSTANTS:
        assert isinstance(obj, CONSTANTS[name])
    elif name in MODULES:
        assert inspect.ismodule(obj)
    elif name == "Path":
        assert obj is Path
    elif name not in INSTANCES:
        assert callable(obj)


@pytest.mark.parametrize("module, name, origin", [
    ("utils.general", "non_max_suppression", "utils.nms"), ("utils.general", "scale_coords", "utils.boxes"),
    ("utils.general", "box_iou", "utils.metrics"), ("utils.general", "init_seeds", "utils.torch_utils"),
    ("utils.general", "strip_optimizer", "utils.checkpoint"), ("utils.general", "check_dataset", "utils.dataset_yaml"),
    ("utils.datasets", "get_hash", "utils.label_cache"), ("utils.datasets", "exif_size", "utils.labels"),
    ("models.common", "DetectMultiBackend", "models.backends"), ("models.experimental", "attempt_download",
                                                                  "utils.downloads"),
    ("utils.general", "Profile", "utils.timers"), ("utils.general", "check_requirements", "utils.checks"),
    ("utils.general", "print_mutation", "utils.evolve"), ("utils.general", "apply_classifier", "utils.second_stage"),
    ("utils.torch_utils", "profile", "utils.torch_profile"), ("utils.plots", "hist2d", "utils.plot_tools"),
    ("utils.datasets", "LoadWebcam", "utils.webcam"), ("utils.datasets", "dataset_stats", "utils.dataset_tools"),
])
def test_reexport_is_the_implementation(module, name, origin):
    assert getattr(importlib.import_module(module), name) is getattr(importlib.import_module(origin), name)


def test_lazy_names_listed_and_unknown_names_raise():
    import utils.general as general
    assert {"non_max_suppression", "xyxy2xywh", "np", "pd", "CONFIG_DIR", "Profile"} <= set(dir(general))
    with pytest.raises(AttributeError):
        general.no_such_name
    with pytest.raises(AttributeError):
        importlib.import_module("models.common").no_such_name
    with pytest.raises(AttributeError, match="utils.datasets"):
        importlib.import_module("utils.datasets").no_such_name
    assert general.DATASETS_DIR == general.ROOT.parent / "datasets" and general.FONT == "Arial.ttf"


def test_string_and_path_helpers(tmp_path):
    from utils.general import check_version, clean_str, file_size, is_writeable, url2file
    assert clean_str("a|b@c d+e") == "a_b_c d_e"
    assert url2file("https://a.com/b/c.txt?auth=1") == "c.txt"
    assert file_size(tmp_path / "none") == 0.0
    (tmp_path / "f").write_bytes(b"x" * 500_000)
    assert file_size(tmp_path / "f") == file_size(tmp_path) == 0.5
    assert is_writeable(tmp_path, test=True) and not (tmp_path / "tmp.txt").exists()
    assert check_version("1.10.0", "1.8.0") and not check_version("1.10.0", "1.8.0", pinned=True)
    with pytest.raises(AssertionError, match="required by YOLOv5"):
        check_version("1.7", "1.8", name="torch ", hard=True)


def test_working_directory_and_try_except(tmp_path):
    from utils.general import WorkingDirectory, try_except
    cwd = Path.cwd()
    with WorkingDirectory(tmp_path):
        assert Path.cwd().resolve() == tmp_path.resolve()
    assert Path.cwd() == cwd
    assert try_except(lambda: 1 / 0)() is None and try_except(lambda x: x + 1)(1) == 2
    assert os.getcwd() == str(cwd)


def test_sparsity_prune_find_modules():
    from utils.torch_utils import find_modules, prune, sparsity
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Conv2d(8, 8, 1, bias=False))
    model.module_list = list(model)
    assert find_modules(model) == [0, 2] and find_modules(model, nn.BatchNorm2d) == [1]
    nn.init.ones_(model[0].weight)
    assert sparsity(model) == pytest.approx(8 / sum(p.numel() for p in model.parameters()))  # BN biases are 0
    prune(model, 0.5)
    assert float((model[2].weight == 0).float().mean()) == pytest.approx(0.5)
    assert not hasattr(model[2], "weight_mask")  # the mask is baked in
    assert sparsity(model) > 0.4


# v6.1's parameter names, in order, per module (``name(p1, p2, ...)``); ours may add parameters after them.
V61_SIGNATURES = """
utils.general:
    is_kaggle() is_writeable(dir, test) set_logging(name, verbose) user_config_dir(dir, env_var) Timeout(seconds,
    timeout_msg, suppress_timeout_errors) WorkingDirectory(new_dir) try_except(func) methods(instance)
    print_args(name, opt) init_seeds(seed) intersect_dicts(da, db, exclude) get_latest_run(search_dir) is_ascii(s)
    is_chinese(s) emojis(str) file_size(path) check_online() check_git_status() check_python(minimum)
    check_version(current, minimum, name, pinned, hard, verbose) check_requirements(requirements, exclude, install)
    check_img_size(imgsz, s, floor) check_imshow() check_suffix(file, suffix, msg) check_yaml(file, suffix)
    check_file(file, suffix) check_font(font) check_dataset(data, autodownload) url2file(url) download(url, dir,
    unzip, delete, curl, threads) make_divisible(x, divisor) clean_str(s) one_cycle(y1, y2, steps) colorstr(input)
    labels_to_class_weights(labels, nc) labels_to_image_weights(labels, nc, class_weights) coco80_to_coco91_class()
    xyxy2xywh(x) xywh2xyxy(x) xywhn2xyxy(x, w, h, padw, padh) xyxy2xywhn(x, w, h, clip, eps) xyn2xy(x, w, h, padw,
    padh) segment2box(segment, width, height) segments2boxes(segments) resample_segments(segments, n)
    scale_coords(img1_shape, coords, img0_shape, ratio_pad) clip_coords(boxes, shape)
    non_max_suppression(prediction, conf_thres, iou_thres, classes, agnostic, multi_label, labels, max_det)
    strip_optimizer(f, s) print_mutation(results, hyp, save_dir, bucket, prefix) apply_classifier(x, model, img,
    im0) increment_path(path, exist_ok, sep, mkdir)
utils.torch_utils:
    torch_distributed_zero_first(local_rank) date_modified(path) git_describe(path) device_count()
    select_device(device, batch_size, newline) time_sync() profile(input, ops, n, device) is_parallel(model)
    de_parallel(model) initialize_weights(model) find_modules(model, mclass) sparsity(model) prune(model, amount)
    fuse_conv_and_bn(conv, bn) model_info(model, verbose, img_size) scale_img(img, ratio, same_shape, gs)
    copy_attr(a, b, include, exclude) EarlyStopping(patience) ModelEMA(model, decay, updates)
utils.plots:
    check_pil_font(font, size) Annotator(im, line_width, font_size, font, pil, example) feature_visualization(x,
    module_type, stage, n, save_dir) hist2d(x, y, n) butter_lowpass_filtfilt(data, cutoff, fs, order)
    output_to_target(output) plot_images(images, targets, paths, fname, names, max_size, max_subplots)
    plot_lr_scheduler(optimizer, scheduler, epochs, save_dir) plot_val_txt() plot_targets_txt() plot_val_study(file,
    dir, x) plot_labels(labels, names, save_dir) plot_evolve(evolve_csv) plot_results(file, dir)
    profile_idetection(start, stop, labels, save_dir) save_one_box(xyxy, im, file, gain, pad, square, BGR, save)
utils.datasets:
    get_hash(paths) exif_size(img) exif_transpose(image) create_dataloader(path, imgsz, batch_size, stride,
    single_cls, hyp, augment, cache, pad, rect, rank, workers, image_weights, quad, prefix, shuffle)
    LoadImages(path, img_size, stride, auto) LoadWebcam(pipe, img_size, stride) LoadStreams(sources, img_size,
    stride, auto) img2label_paths(img_paths) LoadImagesAndLabels(path, img_size, batch_size, augment, hyp, rect,
    image_weights, cache_images, single_cls, stride, pad, prefix) create_folder(path) flatten_recursive(path)
    extract_boxes(path) autosplit(path, weights, annotated_only) verify_image_label(args) dataset_stats(path,
    autodownload, verbose, profile, hub)
utils.augmentations:
    Albumentations() augment_hsv(im, hgain, sgain, vgain) hist_equalize(im, clahe, bgr) replicate(im, labels)
    letterbox(im, new_shape, color, auto, scaleFill, scaleup, stride) random_perspective(im, targets, segments,
    degrees, translate, scale, shear, perspective, border) copy_paste(im, labels, segments, p) cutout(im, labels, p)
    mixup(im, labels, im2, labels2) box_candidates(box1, box2, wh_thr, ar_thr, area_thr, eps)
utils.downloads:
    gsutil_getsize(url) safe_download(file, url, url2, min_bytes, error_msg) attempt_download(file, repo)
    gdrive_download(id, file) get_token(cookie)
utils.metrics:
    fitness(x) ap_per_class(tp, conf, pred_cls, target_cls, plot, save_dir, names, eps) compute_ap(recall,
    precision) ConfusionMatrix(nc, conf, iou_thres) bbox_iou(box1, box2, x1y1x2y2, GIoU, DIoU, CIoU, eps)
    box_iou(box1, box2) bbox_ioa(box1, box2, eps) wh_iou(wh1, wh2) plot_pr_curve(px, py, ap, save_dir, names)
    plot_mc_curve(px, py, save_dir, names, xlabel, ylabel)
utils.loss:
    smooth_BCE(eps) BCEBlurWithLogitsLoss(alpha) FocalLoss(loss_fcn, gamma, alpha) ComputeLoss(model, autobalance)
utils.autoanchor:
    check_anchor_order(m) check_anchors(dataset, model, thr, imgsz) kmean_anchors(dataset, n, img_size, thr, gen,
    verbose)
utils.callbacks:
    Callbacks()
models.common:
    autopad(k, p) Conv(c1, c2, k, s, p, g, act) DWConv(c1, c2, k, s, act) TransformerLayer(c, num_heads)
    TransformerBlock(c1, c2, num_heads, num_layers) Bottleneck(c1, c2, shortcut, g, e) BottleneckCSP(c1, c2, n,
    shortcut, g, e) C3SPP(c1, c2, k, n, shortcut, g, e) SPP(c1, c2, k) SPPF(c1, c2, k) Focus(c1, c2, k, s, p, g,
    act) GhostConv(c1, c2, k, s, g, act) GhostBottleneck(c1, c2, k, s) Contract(gain) Concat(dimension)
    DetectMultiBackend(weights, device, dnn, data) Classify(c1, c2, k, s, p, g)
models.experimental:
    CrossConv(c1, c2, k, s, g, e, shortcut) Sum(n, weight) MixConv2d(c1, c2, k, s, equal_ch) Ensemble()
    attempt_load(weights, map_location, inplace, fuse)
models.yolo:
    Detect(nc, anchors, ch, inplace) Model(cfg, ch, nc, anchors) parse_model(d, ch)
"""


def _signatures():
    module, out = None, []
    for token in re.findall(r"^(\S+):$|(\w+)\(([^)]*)\)", V61_SIGNATURES, flags=re.M):
        if token[0]:
            module = token[0]
        else:
            out.append((module, token[1], [p.strip() for p in token[2].split(",") if p.strip()]))
    return out


@pytest.mark.parametrize("module, name, params", _signatures(), ids=lambda x: x if isinstance(x, str) else "")
def test_v61_signature(module, name, params):
    obj = getattr(importlib.import_module(module), name)
    ours = [p for p in inspect.signature(obj).parameters if p != "self"]
    assert ours[:len(params)] == params, f"{module}.{name}{tuple(ours)} vs v6.1's {tuple(params)}"
