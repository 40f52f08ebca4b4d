"""train.py end to end on small images: outputs, checkpoints, resume after SIGKILL, transfer, bad data, DDP."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

import train
import utils.regularizers as regularizers
from models.experimental import attempt_load, safe_classes
from models.yolo import Model
from tests.conftest import ROOT
from utils.checkpoint import load_checkpoint as _load
from utils.dataset_yaml import check_dataset
from utils.torch_utils import optimizer_groups

HEADER = ["epoch", "train/box_loss", "train/obj_loss", "train/cls_loss", "metrics/precision", "metrics/recall",
          "metrics/mAP_0.5", "metrics/mAP_0.5:0.95", "val/box_loss", "val/obj_loss", "val/cls_loss",
          "x/lr0", "x/lr1", "x/lr2"]
SMALL = dict(weights="", imgsz=64, batch_size=16, workers=0, device="cpu", noautoanchor=False)


def load_checkpoint(f: Path) -> dict:
    return _load(f, allowed=safe_classes())  # the allowlist only: our own checkpoints need no opt-in


def _rows(f: Path) -> list[list[str]]:
    with open(f) as fh:
        return [[c.strip() for c in row] for row in csv.reader(fh)]


@pytest.fixture(scope="module")
def demo_data() -> dict:
    return check_dataset(ROOT / "data" / "shapes.yaml")  # generated offline on first use


def test_quickstart_on_demo_data_with_nam_penalty(tmp_path, demo_data, monkeypatch):
    hyp = yaml.safe_load((ROOT / "data/hyps/hyp.scratch-low.yaml").read_text())
    hyp["nam_l1"] = 1e-4
    (tmp_path / "hyp.yaml").write_text(yaml.safe_dump(hyp))
    penalty = []  # (strength, parameters penalised) of every call the training step makes
    real = regularizers.add_l1_grad  # what the L1Regularizer callback on "optimizer_step" calls
    monkeypatch.setattr(regularizers, "add_l1_grad", lambda m, p: penalty.append((p, real(m, p))) or penalty[-1][1])
    steps = []  # every optimizer step
    real_step = torch.optim.SGD.step
    monkeypatch.setattr(torch.optim.SGD, "step", lambda self, *a, **k: steps.append(1) or real_step(self, *a, **k))
    results = train.run(cfg=str(ROOT / "models/yolov5n-NAM.yaml"), epochs=2, hyp=str(tmp_path / "hyp.yaml"),
                        project=str(tmp_path), name="q", **SMALL)  # no data=: the embedded demo set
    d = tmp_path / "q"
    assert len(results) == 7 and all(torch.isfinite(torch.tensor(results)))
    assert penalty and len(penalty) == len(steps)  # applied at every optimizer step
    assert all(p == 1e-4 and n == 1 for p, n in penalty)  # with its strength, to yolov5n-NAM's one γ
    for f in ("hyp.yaml", "opt.yaml", "results.csv", "results.png", "labels.jpg", "train_batch0.jpg",
              "confusion_matrix.png", "val_batch0_pred.jpg", "weights/last.pt", "weights/best.pt"):
        assert (d / f).exists(), f
    rows = _rows(d / "results.csv")
    assert rows[0] == HEADER and [r[0] for r in rows[1:]] == ["0", "1"]
    assert (d / "results.csv").read_text().splitlines()[0].startswith(f"{'epoch':>20},{'train/box_loss':>20}")
    ckpt = load_checkpoint(d / "weights" / "last.pt")
    assert ckpt["epoch"] == -1 and ckpt["optimizer"] is None and ckpt["ema"] is None  # stripped
    assert next(ckpt["model"].parameters()).dtype == torch.float16
    m = attempt_load(d / "weights" / "best.pt")
    assert m.names == demo_data["names"] and m.nc == 5 and type(m.model[24]).__name__ == "NAMAttention"
    saved = yaml.safe_load((d / "hyp.yaml").read_text())
    assert saved["nam_l1"] == 1e-4 and saved["box"] == 0.05  # written before scaling


def test_resume_after_sigkill_finishes_all_epochs(tmp_path, demo_data):
    cmd = [sys.executable, "train.py", "--cfg", "models/yolov5n.yaml", "--weights", "", "--img", "64", "--batch", "16",
           "--epochs", "3", "--workers", "0", "--device", "cpu", "--project", str(tmp_path), "--name", "r"]
    run_dir = tmp_path / "r"
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    last = run_dir / "weights" / "last.pt"
    t0 = time.time()
    while not last.exists() and time.time() - t0 < 240 and p.poll() is None:
        time.sleep(0.2)
    assert last.exists(), "no last.pt written after the first epoch"
    time.sleep(1.0)  # into the next epoch
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    assert load_checkpoint(last)["epoch"] >= 0  # the file on disk is complete (atomic write)

    out = subprocess.run([sys.executable, "train.py", "--resume", str(run_dir)], cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Resuming training from" in out.stderr + out.stdout
    rows = _rows(run_dir / "results.csv")
    assert [r[0] for r in rows[1:]][-1] == "2" and {"0", "2"} <= {r[0] for r in rows[1:]}
    assert load_checkpoint(last)["epoch"] == -1  # finished and stripped


def test_transfer_counts_from_v61_yolov5s(fixtures_dir, yolo_log):
    hyp = {"anchor_t": 4.0}
    w = str(fixtures_dir / "ckpt_yolov5s.pt")
    train.load_pretrained(w, str(ROOT / "models/yolov5s.yaml"), 80, hyp, False, torch.device("cpu"))
    assert f"Transferred 348/349 items from {w}" in yolo_log  # every item but the anchors
    train.load_pretrained(w, "", 3, hyp, False, torch.device("cpu"))  # no --cfg: the checkpoint's yaml, nc 3
    assert f"Transferred 343/349 items from {w}" in yolo_log  # Detect convs differ in shape
    train.load_pretrained(w, str(ROOT / "models/yolov5s-NAM.yaml"), 80, hyp, False, torch.device("cpu"))
    assert f"Transferred 348/354 items from {w} (6 remapped)" in yolo_log  # layer alignment (models/transfer.py)


def test_every_attention_parameter_reaches_an_optimizer_group():
    from models import registry

    for cls in registry.classes("attention"):
        d = yaml.safe_load((ROOT / "models/yolov5n.yaml").read_text())
        d["head"].insert(14, [-1, 1, cls.__name__, []])
        d["head"][-1][0] = [17, 20, 24]
        m = Model(d)
        groups = optimizer_groups(m)
        ids = [id(p) for g in groups for p in g]
        assert len(ids) == len(set(ids)) == len(list(m.parameters())), cls.__name__
        att = {id(p) for p in m.model[24].parameters()}
        assert att <= set(ids)


def test_bad_data_is_reported_and_training_finishes(tmp_path, demo_data, yolo_log):
    src = Path(demo_data["path"])
    root = tmp_path / "bad"
    for split in ("train", "val"):
        imgs = sorted((src / "images" / split).iterdir())[:24]
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for f in imgs:
            shutil.copy(f, root / "images" / split / f.name)
            lb = src / "labels" / split / (f.stem + ".txt")
            if lb.exists():
                shutil.copy(lb, root / "labels" / split / lb.name)
    tr_i, tr_l = root / "images" / "train", root / "labels" / "train"
    good = sorted(tr_i.glob("*.jpg"))[0]
    (tr_i / "zero.jpg").write_bytes(b"")
    (tr_i / "text.jpg").write_text("not an image")
    data = good.read_bytes()
    (tr_i / "trunc.jpg").write_bytes(data[: len(data) // 2])
    shutil.copy(good, tr_i / "nolabel.jpg")
    shutil.copy(good, tr_i / "badrows.jpg")
    (tr_l / "badrows.txt").write_text("0 0.5 0.5 0.2\n1 0.5 0.5 1.7 0.2\n9 0.5 0.5 0.2 0.2\nx 0.5 0.5 0.2 0.2\n"
                                      "2 0.4 0.4 0.2 0.2\n2 0.4 0.4 0.2 0.2\n")
    y = {"path": str(root), "train": "images/train", "val": "images/val", "nc": 5, "names": demo_data["names"]}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(y))
    results = train.run(cfg=str(ROOT / "models/yolov5n.yaml"), data=str(tmp_path / "bad.yaml"), epochs=1,
                        project=str(tmp_path), name="b", **SMALL)
    assert len(results) == 7
    text = "\n".join(yolo_log)
    for name in ("zero.jpg", "text.jpg", "trunc.jpg", "badrows.txt"):
        assert name in text, f"{name} not reported"
    assert (tmp_path / "b" / "weights" / "best.pt").exists()
    assert (tr_l / "badrows.txt").read_text().count("\n") == 6  # the user's file is untouched


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs process spawning like Linux")
def test_ddp_two_cpu_processes_train_an_epoch(tmp_path, demo_data):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "train.py", "--cfg", "models/yolov5n.yaml", "--weights", "", "--img", "64", "--batch", "16", "--epochs", "1",
           "--workers", "0", "--device", "cpu", "--project", str(tmp_path), "--name", "ddp"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = _rows(tmp_path / "ddp" / "results.csv")
    assert [r[0] for r in rows[1:]] == ["0"]
    assert (tmp_path / "ddp" / "weights" / "best.pt").exists()


def test_missing_default_weights_offline_falls_back_to_scratch(monkeypatch, yolo_log, tmp_path):
    import urllib.request

    def offline(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.chdir(tmp_path)  # no yolov5s.pt here
    opt = train.parse_opt(True)
    opt.weights, opt.cfg = None, ""
    train.resolve_weights(opt)
    assert opt.weights == "" and opt.cfg.endswith("yolov5s.yaml")
    text = "\n".join(yolo_log)
    assert "yolov5s.pt" in text and "network unreachable" in text and "from scratch" in text
    opt.weights = "yolov5m.pt"  # named explicitly: an error, no fallback
    with pytest.raises(FileNotFoundError, match="yolov5m.pt"):
        train.load_pretrained(train.attempt_download(opt.weights), "", 80, {}, False, torch.device("cpu"))


def test_val_standalone_json_txt_and_pycocotools(tmp_path, demo_data, monkeypatch):
    import itertools
    import json

    import utils.nms
    import val

    train.run(cfg=str(ROOT / "models/yolov5n.yaml"), epochs=1, project=str(tmp_path), name="v", **SMALL)
    best = tmp_path / "v" / "weights" / "best.pt"
    clock = itertools.count(0, 20)  # a machine so busy that every clock read is 20 s later
    monkeypatch.setattr(utils.nms.time, "time", lambda: float(next(clock)))
    (mp, mr, map50, map_, *losses), maps, t = val.run(data=ROOT / "data/shapes.yaml", weights=str(best), imgsz=64,
                                                        batch_size=16, workers=0, device="cpu", save_json=True,
                                                        save_txt=True, save_conf=True, project=str(tmp_path),
                                                        name="val", save_records=True)
    d = tmp_path / "val"
    from utils.eval_records import EvalRecords, records_map
    rec = EvalRecords.load(d / "records.npz")  # --save-records (exactness: tests/test_eval_records.py)
    assert rec.n_images == 60 and len(rec.target_cls) == 193 and rec.tp.shape[1] == 10
    assert all(0 <= x <= 1 for x in records_map(rec))
    preds = json.loads((d / "best_predictions.json").read_text())
    assert preds and set(preds[0]) == {"image_id", "category_id", "bbox", "score"}
    assert len({p["image_id"] for p in preds}) == 60  # no image lost to v6.1's NMS time limit
    gt = json.loads((d / "ground_truth.json").read_text())
    assert len(gt["images"]) == 60 and len(gt["annotations"]) == 193
    assert maps.shape == (5,) and len(t) == 3 and 0 <= map_ <= map50 <= 1
    lines = next((d / "labels").glob("*.txt")).read_text().splitlines()
    assert len(lines[0].split()) == 6  # cls x y w h conf


def test_ddp_option_conflicts_are_input_errors():
    from utils.general import InputError

    opt = train.parse_opt(True)
    opt.image_weights, opt.batch_size = True, -1
    with pytest.raises(InputError, match=r"--image-weights is not compatible.*AutoBatch with --batch-size -1"):
        train.setup_ddp(opt, torch.device("cpu"))
    opt.image_weights, opt.evolve, opt.batch_size = False, 3, 16
    with pytest.raises(InputError, match="--evolve is not compatible"):
        train.setup_ddp(opt, torch.device("cpu"))
