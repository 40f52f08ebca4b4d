"""W&B logging: an offline run with the metrics and the model artifact when wandb is installed; without it, the
W&B flags give one warning."""

from __future__ import annotations

import importlib.util
import types

import pytest

import train
from tests.conftest import ROOT
from utils.wandb_logger import WandbLogger


def test_without_wandb_the_flags_give_one_warning(monkeypatch, yolo_log, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    opt = types.SimpleNamespace(entity="me", upload_dataset=False, bbox_interval=5, artifact_alias="latest")
    assert WandbLogger.create(opt, {}, tmp_path) is None
    warned = [x for x in yolo_log if "ignored: wandb is not installed" in x]
    assert len(warned) == 1 and "--entity, --bbox_interval" in warned[0]
    plain = types.SimpleNamespace(entity=None, upload_dataset=False, bbox_interval=-1, artifact_alias="latest")
    assert WandbLogger.create(plain, {}, tmp_path) is None and len(yolo_log) == 2  # v6.1's one-line tip, no warning
    assert "pip install wandb" in yolo_log[1]


def test_offline_run_logs_metrics_and_the_model(tiny_data, tmp_path, monkeypatch):
    if importlib.util.find_spec("wandb") is None:
        pytest.skip("wandb is not installed (optional: pip install wandb)")
    import wandb

    wandb.teardown()  # an earlier training in this process set W&B up in conftest's disabled mode: start afresh
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    try:
        train.run(weights="", cfg=str(ROOT / "models/yolov5n.yaml"), data=str(tiny_data), imgsz=64, batch_size=16,
                  epochs=2, workers=0, device="cpu", project=str(tmp_path), name="wb", save_period=1,
                  upload_dataset=True)
    finally:
        wandb.teardown()  # later trainings in this process log nowhere again
    runs = list((tmp_path / "wb" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1
    data = runs[0].read_bytes()
    for key in (b"train/box_loss", b"metrics/mAP_0.5:0.95", b"x/lr0", b"best/epoch", b"Labels", b"Mosaics",
                b"BoundingBoxDebugger", b"Validation", b"Results"):
        assert key in data, key
    assert b"_model" in data and b"best.pt" in data  # the best weights as a model artifact
    assert b"epoch 1" in data and b"last.pt" in data  # --save-period 1: last.pt after epoch 1 (not the final one)
    assert data.count(b"dataset") >= 2  # --upload_dataset: the train and val splits as dataset artifacts


def test_bbox_interval_rule():
    from utils.wandb_logger import bbox_interval
    ns = types.SimpleNamespace
    assert bbox_interval(ns(epochs=300, bbox_interval=-1)) == 30 and bbox_interval(ns(epochs=5, bbox_interval=-1)) == 1
    assert bbox_interval(ns(epochs=300, bbox_interval=7)) == 7
    assert bbox_interval(ns(epochs=300, bbox_interval=-1, evolve=300)) == 301  # never while evolving


def test_resume_continues_the_run_folders_wandb_run(tmp_path):
    from utils.wandb_logger import resumed_run_id
    assert resumed_run_id(tmp_path) is None
    run = tmp_path / "wandb" / "offline-run-20261207_120000-x7k2abcd"
    run.mkdir(parents=True)
    (tmp_path / "wandb" / "latest-run").symlink_to(run.name)
    assert resumed_run_id(tmp_path) == "x7k2abcd"
