"""Bad input gets one clear message (or a warning), never a traceback from deep inside: checkpoints of every
wrong kind, flags, hyp files, dataset yamls, ensembles, export failures and colliding output names."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import yaml

import export
import train
import val
from models.backends import DetectMultiBackend
from models.experimental import attempt_load, safe_classes
from models.yolo import Model
from tests.conftest import ROOT
from utils.checkpoint import CheckpointError, strip_optimizer
from utils.dataset_yaml import DatasetConfigError, check_dataset
from utils.general import InputError, OutputNames
from utils.hyps import HypError
from utils.torch_utils import build_optimizer

pytestmark = [pytest.mark.bad_input, pytest.mark.usefixtures("one_thread")]
CPU = torch.device("cpu")
TINY = dict(weights="", cfg=str(ROOT / "models/yolov5n.yaml"), imgsz=64, batch_size=16, workers=0, device="cpu",
            noautoanchor=True, epochs=1)


@pytest.fixture(scope="module")
def yolov5n() -> Model:
    torch.manual_seed(0)  # the same weights whatever ran before: detections at conf 0 do not depend on test order
    return Model(ROOT / "models/yolov5n.yaml")


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory, yolov5n) -> dict[str, Path]:
    """Checkpoint files of every kind: a training checkpoint and the wrong ones."""
    d = tmp_path_factory.mktemp("ckpts")
    m = copy.deepcopy(yolov5n)
    torch.manual_seed(0)
    opt = build_optimizer(m, "SGD", 0.01, 0.9, 5e-4)
    m(torch.rand(1, 3, 64, 64))[0].sum().backward()
    opt.step()  # momentum buffers exist
    full = {"epoch": 0, "best_fitness": 0.1, "model": copy.deepcopy(m).half(), "ema": copy.deepcopy(m).half(),
            "updates": 1, "optimizer": opt.state_dict(), "wandb_id": None, "date": None}
    files = {"train": full, "ema_only": {**full, "model": None, "optimizer": None},
             "state_dict": yolov5n.state_dict(), "no_yaml": {"model": nn.Sequential(nn.Conv2d(3, 16, 3))},
             "foreign": {"weights": [1, 2, 3]}}
    out = {k: d / f"{k}.pt" for k in files}
    for k, v in files.items():
        torch.save(v, out[k])
    data = out["train"].read_bytes()
    (d / "truncated.pt").write_bytes(data[: len(data) // 2])
    (d / "empty.pt").write_bytes(b"")
    (d / "text.pt").write_text("this is not a checkpoint\n")
    out.update({k: d / f"{k}.pt" for k in ("truncated", "empty", "text")})
    return out


# ------------------------------------------------------------------------------------------------ checkpoints
@pytest.mark.parametrize("kind,msg", [("empty", r"is empty \(0 bytes\)"),
                                      ("truncated", "not a readable PyTorch checkpoint.*truncated, corrupt"),
                                      ("text", "not a readable PyTorch checkpoint")])
def test_unreadable_checkpoints_get_one_message_at_every_entry_point(ckpts, kind, msg):
    f = ckpts[kind]
    for load in (lambda: attempt_load(f), lambda: DetectMultiBackend(f),
                 lambda: train.load_pretrained(str(f), "", 80, {}, False, CPU),
                 lambda: strip_optimizer(f, allowed=safe_classes())):
        with pytest.raises(CheckpointError, match=msg):
            load()


def test_ema_only_checkpoint_loads_everywhere(ckpts, yolo_log):
    f = ckpts["ema_only"]
    assert type(attempt_load(f)).__name__ == "Model"
    model, _ = train.load_pretrained(str(f), "", 80, {}, False, CPU)
    assert f"Transferred 349/349 items from {f}" in yolo_log


def test_state_dict_transfers_with_cfg_and_is_refused_without(ckpts, yolo_log):
    f = ckpts["state_dict"]
    train.load_pretrained(str(f), str(ROOT / "models/yolov5n.yaml"), 80, {}, False, CPU)
    assert f"Transferred 348/349 items from {f}" in yolo_log  # by name; anchors come from the yaml
    with pytest.raises(CheckpointError, match=r"state_dict .*pass --cfg"):
        train.load_pretrained(str(f), "", 80, {}, False, CPU)
    for load in (lambda: attempt_load(f), lambda: DetectMultiBackend(f)):
        with pytest.raises(CheckpointError, match=r"not a YOLOv5 checkpoint: it holds a state_dict"):
            load()


def test_model_without_yaml_or_detect_head(ckpts):
    f = ckpts["no_yaml"]
    with pytest.raises(CheckpointError, match="without its model yaml: pass --cfg"):
        train.load_pretrained(str(f), "", 80, {}, False, CPU)
    with pytest.raises(CheckpointError, match="Sequential without a Detect head"):
        attempt_load(f)
    with pytest.raises(CheckpointError, match=r"not a YOLOv5 checkpoint: it holds a dict with keys \[weights\]"):
        attempt_load(ckpts["foreign"])


def test_foreign_optimizer_state_is_skipped_when_fine_tuning(ckpts, tiny_data, tmp_path, yolo_log):
    results = train.run(**{**TINY, "weights": str(ckpts["train"]), "cfg": str(ROOT / "models/yolov5n-NAM.yaml")},
                        data=str(tiny_data), project=str(tmp_path), name="ft")
    assert len(results) == 7
    assert any("optimizer state not loaded (its parameter groups" in x for x in yolo_log)
    assert any("its EMA is of another model" in x for x in yolo_log)


def test_ensemble_of_models_with_different_classes_is_refused(ckpts, tmp_path, yolov5n):
    m3 = Model(ROOT / "models/yolov5n.yaml", nc=3)
    torch.save({"model": m3.half(), "epoch": -1}, tmp_path / "nc3.pt")
    with pytest.raises(ValueError, match="same classes"):
        attempt_load([ckpts["train"], tmp_path / "nc3.pt"])


# ------------------------------------------------------------------------------------------ flags and hyps
def test_flags_that_cannot_train_are_named(tiny_data, tmp_path):
    with pytest.raises(InputError, match=r"--epochs must be at least 1, got 0.*--batch-size must be at least 1 .*"
                                         r"got 0.*--imgsz must be a positive number of pixels, got 0"):
        train.run(**{**TINY, "epochs": 0, "batch_size": 0, "imgsz": 0}, data=str(tiny_data), project=str(tmp_path))
    assert not any(tmp_path.iterdir())  # refused before any folder is made


def test_cli_prints_the_message_not_a_traceback(tiny_data, tmp_path):
    out = subprocess.run([sys.executable, "train.py", "--data", str(tiny_data), "--weights", "", "--cfg",
                          "models/yolov5n.yaml", "--epochs", "0", "--project", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 1
    assert "train.py: --epochs must be at least 1, got 0" in out.stderr and "Traceback" not in out.stderr


def test_hyp_file_missing_a_key_is_named(tiny_data, tmp_path):
    hyp = yaml.safe_load((ROOT / "data/hyps/hyp.scratch-low.yaml").read_text())
    del hyp["lr0"], hyp["mosaic"]
    hyp["lr_0"] = 0.01  # a typo
    f = tmp_path / "hyp.yaml"
    f.write_text(yaml.safe_dump(hyp))
    with pytest.raises(HypError, match=rf"{f}: missing hyperparameter\(s\) lr0, mosaic"):
        train.run(**TINY, data=str(tiny_data), hyp=str(f), project=str(tmp_path), name="h")
    hyp["lr0"], hyp["mosaic"], hyp["box"], hyp["anchors"] = 0.01, 1.0, "high", "three"
    f.write_text(yaml.safe_dump(hyp))
    with pytest.raises(HypError, match=r"must be numbers, got \{'anchors': 'three', 'box': 'high'\}"):
        train.run(**TINY, data=str(tiny_data), hyp=str(f), project=str(tmp_path), name="h")


# ----------------------------------------------------------------------------------------------- datasets
@pytest.mark.parametrize("nc", [0, -2, "three", 2.5, True])
def test_dataset_nc_must_be_a_positive_integer(tiny_data, tmp_path, nc):
    d = yaml.safe_load(tiny_data.read_text())
    d["nc"], d["names"] = nc, ["a"]
    f = tmp_path / "d.yaml"
    f.write_text(yaml.safe_dump(d))
    with pytest.raises(DatasetConfigError, match=rf"{f}: 'nc' \(the number of classes\) must be a positive integer"):
        check_dataset(f)


def test_dataset_without_val_or_train_or_test(tiny_data, tmp_path, ckpts):
    d = yaml.safe_load(tiny_data.read_text())
    f = tmp_path / "noval.yaml"
    f.write_text(yaml.safe_dump({k: v for k, v in d.items() if k != "val"}))
    check_dataset(f)  # a yaml without val is fine until val is needed
    with pytest.raises(DatasetConfigError, match=rf"{f}: no 'val' entry"):
        train.run(**TINY, data=str(f), project=str(tmp_path), name="v")
    f = tmp_path / "notrain.yaml"
    f.write_text(yaml.safe_dump({k: v for k, v in d.items() if k != "train"}))
    with pytest.raises(DatasetConfigError, match=rf"{f}: no 'train' entry"):
        train.run(**TINY, data=str(f), project=str(tmp_path), name="t")
    with pytest.raises(DatasetConfigError, match=rf"{tiny_data}: no 'test' entry.*--task val"):
        val.run(data=str(tiny_data), weights=str(ckpts["train"]), task="test", imgsz=64, device="cpu",
                project=str(tmp_path), workers=0)


def test_val_warns_when_model_and_data_classes_differ(tiny_data, tmp_path, ckpts, yolo_log):
    val.run(data=str(tiny_data), weights=str(ckpts["train"]), imgsz=64, batch_size=16, device="cpu",
            project=str(tmp_path), workers=0, plots=False)
    assert any(f"the model predicts 80 classes but {tiny_data} has nc=5" in x for x in yolo_log)


# ------------------------------------------------------------------------------------------------- outputs
@pytest.mark.filterwarnings("ignore::UserWarning")  # torch warns about the deliberately impossible opset
def test_export_exits_non_zero_naming_the_failed_format_and_leaves_no_stale_file(ckpts, tmp_path):
    w = tmp_path / "m.pt"
    w.write_bytes(ckpts["train"].read_bytes())
    stale = tmp_path / "m.onnx"
    stale.write_text("an export from yesterday")
    out = subprocess.run([sys.executable, "export.py", "--weights", str(w), "--include", "torchscript", "onnx",
                          "--img", "64", "--opset", "1"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out.stderr[-2000:]
    assert "export.py: onnx export of" in out.stderr and "failed" in out.stderr and "Traceback" not in out.stderr
    assert not stale.exists() and (tmp_path / "m.torchscript").is_file()  # the good format is still exported
    with pytest.raises(export.ExportError, match="onnx export of .* failed"):
        export.run(weights=w, include=["onnx"], imgsz=[64], opset=1)


def test_detect_save_txt_keeps_same_stem_sources_apart(ckpts, tmp_path):
    import cv2
    import numpy as np

    import detect

    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    for f, v in (("a.jpg", 50), ("a.png", 150), ("sub/a.jpg", 250)):
        cv2.imwrite(str(src / f), np.full((64, 64, 3), v, np.uint8))
    d = detect.run(weights=ckpts["train"], source=str(src / "**" / "*.*"), imgsz=[64], conf_thres=0.0, max_det=3,
                   save_txt=True, device="cpu", project=str(tmp_path), name="det")
    labels = sorted(p.name for p in (d / "labels").iterdir())
    assert labels == ["a.txt", "a_2.txt", "a_3.txt"]
    assert all(1 <= len((d / "labels" / x).read_text().splitlines()) <= 3 for x in labels)  # one image's rows each
    assert sorted(p.name for p in d.glob("a*.*")) == ["a.jpg", "a_2.png", "a_3.jpg"]


def test_output_names_are_unique_and_stable(yolo_log):
    names = OutputNames()
    assert [names(p) for p in ("x/a.jpg", "x/a.png", "y/a.jpg", "x/a_2.jpg", "x/a.jpg")] == \
        ["a", "a_2", "a_3", "a_2_2", "a"]
    assert any("x/a.png has the same name as x/a.jpg; its outputs are saved as a_2.*" in x for x in yolo_log)


def test_attention_map_of_an_extreme_aspect_ratio_image():
    import numpy as np

    from utils.attention_maps import unletterbox

    m = np.random.rand(8, 8).astype(np.float32)  # a map over a 64x64 letterboxed input
    assert unletterbox(m, (64, 64), (10, 3000)).shape == (10, 3000)  # the image is 0.2 px tall in the letterbox
    assert unletterbox(m, (64, 64), (3000, 10)).shape == (3000, 10)
