"""Run loggers (results.csv in the exact v6.1 format, TensorBoard, training plots) and the Callbacks registry."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import utils.loggers as loggers_mod
from utils.callbacks import HOOKS, Callbacks
from utils.loggers import KEYS, Loggers, csv_header, csv_row

REFERENCE_CSV = Path(__file__).resolve().parents[2] / "shared" / "reference" / "v61_results_bccd_e30.csv"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture
def reference_lines() -> list[str]:
    if not REFERENCE_CSV.is_file():
        pytest.skip(f"reference results.csv not found at {REFERENCE_CSV} (../shared is absent)")
    return REFERENCE_CSV.read_text().splitlines()


def test_csv_header_matches_v61(reference_lines):
    assert csv_header() == reference_lines[0]
    assert [c.strip() for c in reference_lines[0].split(",")] == ["epoch", *KEYS]


def test_csv_rows_reproduce_reference(tmp_path, reference_lines):
    log = Loggers(tmp_path, include=("csv",))
    for line in reference_lines[1:]:
        epoch, *vals = (float(c) for c in line.split(","))
        log.on_fit_epoch_end(vals, int(epoch), 0.0, 0.0)
    assert (tmp_path / "results.csv").read_text() == "\n".join(reference_lines) + "\n"
    assert csv_row(1, [0.097886, 0.00035779]) == "%20s,%20s,%20s" % ("1", "0.097886", "0.00035779")


def test_tensorboard_message_and_event_file(tmp_path, yolo_log):
    save_dir = tmp_path / "exp"
    log = Loggers(save_dir, opt=SimpleNamespace(evolve=None), include=("csv", "tb"))
    expected = (f"TensorBoard: Start with 'tensorboard --logdir {tmp_path}', view at http://localhost:6006/")
    assert expected in [ANSI.sub("", s) for s in yolo_log]
    log.on_fit_epoch_end([0.1] * len(KEYS), 0, 0.0, 0.0)
    assert list(save_dir.glob("events.out.tfevents.*"))
    assert Loggers(tmp_path / "evolve", opt=SimpleNamespace(evolve=300)).tb is None  # no TensorBoard when evolving


def test_tensorboard_missing_warns_once(tmp_path, monkeypatch, yolo_log):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    monkeypatch.setattr(loggers_mod, "_tb_warned", False)
    a, b = Loggers(tmp_path / "a"), Loggers(tmp_path / "b")
    assert a.tb is None and b.tb is None
    assert sum("not available" in s for s in yolo_log) == 1
    a.on_fit_epoch_end([0.0] * len(KEYS), 0, 0.0, 0.0)  # csv still works
    assert (tmp_path / "a" / "results.csv").is_file()


def test_training_hooks_write_plots(tmp_path):
    log = Loggers(tmp_path, include=("csv", "tb"))
    rng = torch.Generator().manual_seed(0)
    labels = torch.cat((torch.randint(0, 2, (40, 1), generator=rng).float(), torch.rand(40, 4, generator=rng) * 0.5
                        + 0.1), 1).numpy()
    log.on_pretrain_routine_end(labels, names=["a", "b"])
    model = torch.nn.Conv2d(3, 4, 3)
    for ni in range(4):
        imgs = torch.rand(2, 3, 64, 64, generator=rng)
        targets = torch.tensor([[0, 0, 0.5, 0.5, 0.3, 0.3], [1, 1, 0.4, 0.4, 0.2, 0.6]])
        log.on_train_batch_end(ni, model, imgs, targets, ["x/1.jpg", "x/2.jpg"], True, False)
    for epoch in range(3):
        log.on_train_epoch_end(epoch)
        log.on_val_end()
        log.on_fit_epoch_end([0.1 / (epoch + 1)] * len(KEYS), epoch, 0.0, 0.0)
        log.on_model_save(tmp_path / "last.pt", epoch, epoch == 2, 0.0, 0.0)
    log.on_train_end(tmp_path / "last.pt", tmp_path / "best.pt", True, 2, (0.0,) * 7)
    names = {p.name for p in tmp_path.iterdir()}
    assert {"labels.jpg", "labels_correlogram.jpg", "train_batch0.jpg", "train_batch1.jpg", "train_batch2.jpg",
            "results.csv", "results.png"} <= names
    assert "train_batch3.jpg" not in names
    assert len((tmp_path / "results.csv").read_text().splitlines()) == 4


def test_teardown_finishes_plots_and_closes_tensorboard_of_a_stopped_run(tmp_path):
    log = Loggers(tmp_path, include=("csv", "tb"))
    imgs, targets = torch.rand(2, 3, 64, 64), torch.tensor([[0, 0, 0.5, 0.5, 0.3, 0.3]])
    log.on_train_batch_end(1, torch.nn.Conv2d(3, 4, 3), imgs, targets, ["x/1.jpg", "x/2.jpg"], True, False)
    log.teardown()  # no on_train_end: the run was stopped
    assert (tmp_path / "train_batch1.jpg").exists() and log.tb is None and not log._threads
    log.teardown()  # twice (or after on_train_end): nothing left to do


def test_callbacks_order_args_and_stop():
    cb = Callbacks()
    assert list(cb.get_registered_actions()) == list(HOOKS) and len(HOOKS) == 19
    calls = []
    cb.register_action("on_train_batch_end", "first", lambda *a, **k: calls.append(("first", a, k)))
    cb.register_action("on_train_batch_end", "second", lambda *a, **k: calls.append(("second", a, k)))

    def stopper(*args, **kwargs):
        cb.stop_training = True

    cb.register_action("on_train_batch_end", "stop", stopper)
    assert [a["name"] for a in cb.get_registered_actions("on_train_batch_end")] == ["first", "second", "stop"]
    assert cb.stop_training is False
    cb.run("on_train_batch_end", 1, 2, plots=True)
    assert calls == [("first", (1, 2), {"plots": True}), ("second", (1, 2), {"plots": True})]
    assert cb.stop_training is True
    cb.run("teardown")  # no actions: nothing happens
    with pytest.raises(KeyError):
        cb.register_action("on_nothing", "x", print)
    with pytest.raises(KeyError):
        cb.run("on_nothing")
    with pytest.raises(TypeError):
        cb.register_action("on_train_end", "x", None)


def test_loggers_methods_cover_train_hooks(tmp_path):
    log = Loggers(tmp_path, include=("csv",))
    public = [f for f in dir(log) if callable(getattr(log, f)) and not f.startswith("_")]
    assert set(public) <= set(HOOKS)  # train.py registers every public method as a hook
    for hook in ("on_pretrain_routine_end", "on_train_batch_end", "on_train_epoch_end", "on_val_end",
                 "on_fit_epoch_end", "on_model_save", "on_train_end", "teardown"):
        assert hook in HOOKS and callable(getattr(Loggers, hook))
