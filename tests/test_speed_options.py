"""The speed options: channels-last weights and images (train, detect, val), decoded images kept in the loader
workers, and ``--compile`` (a checked, compiled graph per input shape). Each must leave the results as they were:
exactly where only the layout or the caching changes, within float noise where fusion reorders the sums."""

from __future__ import annotations

import argparse
import copy

import cv2
import numpy as np
import pytest
import torch
import torch.nn as nn

import detect
import train
import val
from models.compiled import CompiledModel, add_speed_args, resolve_compile_mode
from models.yolo import Detect, Model
from tests.conftest import ROOT
from utils.datasets import LoadImagesAndLabels
from utils.general import InputError
from utils.memory_format import (batch_to_model_input, channels_last_option, is_channels_last, set_memory_format,
                                 to_input_format)
from utils.torch_utils import fuse_conv_and_bn

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one intra-op thread

CL = torch.channels_last


@pytest.fixture(scope="module")
def model() -> Model:
    torch.manual_seed(0)
    m = Model(ROOT / "models" / "yolov5n.yaml", nc=3).eval()
    for mod in m.modules():  # BatchNorm statistics away from (0, 1), so a wrong fold shows
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
    return m


# ----------------------------------------------------------------------------------------------- channels-last
def test_set_memory_format_converts_4d_tensors_only_and_keeps_the_parameter_objects(model):
    m = copy.deepcopy(model)
    with torch.no_grad():
        m(torch.zeros(1, 3, 64, 64))  # Detect's 5-D grids exist
    params = list(m.parameters())
    set_memory_format(m)
    assert [id(p) for p in m.parameters()] == [id(p) for p in params]
    conv = m.model[1].conv.weight  # (32, 16, 3, 3)
    assert conv.is_contiguous(memory_format=CL) and not conv.is_contiguous() and is_channels_last(m)
    detect_layer = m.model[-1]
    assert isinstance(detect_layer, Detect) and all(g.dim() == 5 for g in detect_layer.grid)
    set_memory_format(m, False)
    assert conv.is_contiguous() and not is_channels_last(m)


def test_channels_last_forward_and_fused_forward_match_nchw(model):
    x = torch.rand(2, 3, 96, 64)
    with torch.no_grad():
        ref = model(x)[0]
        cl = set_memory_format(copy.deepcopy(model))
        y = cl(to_input_format(x, True))[0]
        torch.testing.assert_close(y, ref, rtol=1e-4, atol=1e-4)
        fused = copy.deepcopy(cl).fuse()  # folding BatchNorm keeps the NHWC layout
        assert is_channels_last(fused)
        torch.testing.assert_close(fused(x)[0], ref, rtol=1e-4, atol=1e-3)


def test_fuse_conv_and_bn_is_the_same_for_both_layouts():
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(8, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16).eval()
    bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2), bn.weight.data.uniform_(0.5, 2)
    a = fuse_conv_and_bn(conv, bn)
    conv.weight.data = conv.weight.data.contiguous(memory_format=CL)
    b = fuse_conv_and_bn(conv, bn)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    assert b.weight.is_contiguous(memory_format=CL) and a.weight.is_contiguous()


@pytest.mark.parametrize("channels_last", [True, False])
def test_a_uint8_batch_becomes_the_same_floats_in_the_layout_asked_for(channels_last):
    imgs = torch.randint(0, 256, (2, 3, 16, 24), dtype=torch.uint8)
    x = batch_to_model_input(imgs, "cpu", channels_last)
    assert x.dtype == torch.float32 and torch.equal(x, imgs.float() / 255)  # the values of v6.1's conversion
    assert x.is_contiguous(memory_format=CL) is channels_last and x.is_contiguous() is not channels_last


def test_channels_last_option_defaults_on_and_the_flags_switch_it():
    assert channels_last_option(argparse.Namespace()) is True  # an opt.yaml from before the option
    opt = train.parse_opt(True)
    assert opt.channels_last is True and opt.keep_decoded == 256.0
    p = argparse.ArgumentParser()
    add_speed_args(p)
    assert p.parse_args([]).channels_last is True and p.parse_args([]).compile is None
    assert p.parse_args(["--no-channels-last", "--compile"]).__dict__ == {"channels_last": False, "compile": "auto"}
    assert p.parse_args(["--compile", "onednn"]).compile == "onednn"


@pytest.mark.parametrize("channels_last", [True, False])
def test_training_runs_in_the_layout_asked_for(tiny_data, tmp_path, channels_last):
    from utils.callbacks import Callbacks

    seen = []
    cb = Callbacks()
    cb.register_action("on_train_batch_end", "probe", lambda ni, model, imgs, *a: seen.append(
        (imgs.is_contiguous(memory_format=CL) and not imgs.is_contiguous(), is_channels_last(model))))
    opt = train.parse_opt(True)
    for k, v in dict(weights="", cfg=str(ROOT / "models/yolov5n.yaml"), data=str(tiny_data), imgsz=64,
                     batch_size=16, epochs=1, workers=0, device="cpu", project=str(tmp_path), name="e",
                     noval=True, noplots=True, channels_last=channels_last).items():
        setattr(opt, k, v)
    train.main(opt, cb)
    assert seen and all(s == (channels_last, channels_last) for s in seen)


# ------------------------------------------------------------------------------------- decoded images kept
def test_kept_decoded_images_are_the_same_pixels_and_skip_the_decoder(tiny_data, monkeypatch):
    import yaml

    d = yaml.safe_load(tiny_data.read_text())
    root = tiny_data.parent / d["path"] if d.get("path") else tiny_data.parent
    ds = LoadImagesAndLabels(str(root / d["train"]), 64, 16, augment=True, hyp={}, prefix="")
    fresh = [ds.load_image(i)[0].copy() for i in range(3)]
    assert ds.keep_decoded(0) is False and ds.decoded is None
    assert ds.keep_decoded(1e-6) is False  # the set does not fit: nothing kept
    assert ds.keep_decoded(256) is True
    calls = []
    real = cv2.imread
    monkeypatch.setattr(cv2, "imread", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    first = [ds.load_image(i) for i in range(3)]
    again = [ds.load_image(i) for i in range(3)]
    assert len(calls) == 3  # decoded once each
    for f, a, b in zip(fresh, first, again):
        assert np.array_equal(f, a[0]) and a[0] is b[0] and a[1:] == b[1:]


def test_keep_decoded_is_off_when_images_are_cached_already(tiny_data):
    import yaml

    d = yaml.safe_load(tiny_data.read_text())
    root = tiny_data.parent / d["path"] if d.get("path") else tiny_data.parent
    ds = LoadImagesAndLabels(str(root / d["val"]), 64, 16, cache_images="ram", prefix="")
    assert ds.keep_decoded(256) is False


# ------------------------------------------------------------------------------------------------- --compile
def test_resolve_compile_mode():
    cpu = torch.device("cpu")
    assert resolve_compile_mode(None, cpu) is None and resolve_compile_mode("auto", cpu) == "onednn"
    assert resolve_compile_mode("auto", torch.device("cuda:0")) == "inductor"
    assert resolve_compile_mode("inductor", cpu) == "inductor"
    with pytest.raises(InputError, match="onednn runs on the CPU"):
        resolve_compile_mode("onednn", torch.device("cuda:0"))
    with pytest.raises(InputError, match="choose one of"):
        resolve_compile_mode("tensorrt", cpu)


def test_onednn_graph_matches_eager_and_is_built_once_per_shape(model, yolo_log):
    fused = set_memory_format(copy.deepcopy(model).fuse())
    cm = CompiledModel(fused, "onednn")
    torch.manual_seed(1)
    for shape in [(1, 3, 64, 96), (1, 3, 64, 96), (2, 3, 64, 64)]:
        x = torch.rand(shape)
        with torch.no_grad():
            ref = fused(x)
            y = cm(x)
        torch.testing.assert_close(y[0], ref[0], rtol=1e-3, atol=1e-4)
        assert [a.shape for a in y[1]] == [a.shape for a in ref[1]]  # the raw level maps too (val.py's loss)
    assert len(cm.graphs) == 2 and all(g is not None for g in cm.graphs.values())
    assert sum("compiled (onednn)" in line for line in yolo_log) == 2
    assert not torch.jit.onednn_fusion_enabled()  # process-wide switch: other TorchScript models run unfused
    kinds = {n.kind() for n in torch.jit.last_executed_optimized_graph().nodes()}
    assert "prim::oneDNNFusionGuard" in kinds  # ...while the compiled graph keeps its fused kernels
    assert cm.stride is fused.stride and cm.names == fused.names  # the wrapped model's attributes
    cm.float()
    assert cm.graphs == {}  # a dtype or device change drops graphs holding the old weights


def test_a_graph_that_fails_or_disagrees_runs_eagerly(model, monkeypatch, yolo_log):
    import models.compiled as compiled

    fused = copy.deepcopy(model).fuse()
    x = torch.rand(1, 3, 64, 64)
    cm = CompiledModel(fused, "onednn")
    monkeypatch.setattr(torch.jit, "freeze", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("no")))
    with torch.no_grad():
        torch.testing.assert_close(cm(x)[0], fused(x)[0], rtol=0, atol=0)
    assert cm.graphs[(tuple(x.shape), x.dtype, x.device, True)] is None
    assert any("failed for input (1, 3, 64, 64)" in line for line in yolo_log)
    monkeypatch.undo()
    monkeypatch.setattr(compiled, "_close", lambda a, b: False)
    cm = CompiledModel(fused, "onednn")
    with torch.no_grad():
        cm(x)
    assert cm.graphs[(tuple(x.shape), x.dtype, x.device, True)] is None
    assert any("differs from the eager model" in line for line in yolo_log)


def test_val_and_detect_give_the_same_results_compiled(tmp_path, tiny_data, yolo_log):
    import datetime

    torch.manual_seed(0)
    m = Model(ROOT / "models" / "yolov5n.yaml", nc=5)
    m.names = ["a", "b", "c", "d", "e"]
    f = tmp_path / "n.pt"
    torch.save({"epoch": -1, "best_fitness": None, "model": m.half(), "ema": None, "updates": None,
                "optimizer": None, "date": datetime.datetime.now().isoformat()}, f)
    kw = dict(data=str(tiny_data), weights=str(f), imgsz=64, batch_size=8, device="cpu", workers=0,
              project=str(tmp_path), plots=False, conf_thres=0.001)
    eager = val.run(**kw, name="eager", channels_last=False)[0]
    fast = val.run(**kw, name="fast", compile="onednn")[0]
    assert np.allclose(eager, fast, atol=1e-3), (eager, fast)
    assert any("compiled (onednn) for input" in line for line in yolo_log)  # a graph ran, not the eager fallback
    assert not any("running it eagerly" in line for line in yolo_log)
    src = ROOT / "data" / "images"
    d1 = detect.run(weights=f, source=src, imgsz=64, conf_thres=0.001, max_det=5, device="cpu", project=tmp_path,
                    name="d1", save_txt=True, save_conf=True, nosave=True, channels_last=False)
    d2 = detect.run(weights=f, source=src, imgsz=64, conf_thres=0.001, max_det=5, device="cpu", project=tmp_path,
                    name="d2", save_txt=True, save_conf=True, nosave=True, compile="auto")
    for t1 in sorted((d1 / "labels").glob("*.txt")):
        a = np.loadtxt(t1, ndmin=2)
        b = np.loadtxt(d2 / "labels" / t1.name, ndmin=2)
        assert a.shape == b.shape and np.allclose(a, b, atol=2e-3)
