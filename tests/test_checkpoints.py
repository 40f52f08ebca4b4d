"""Checkpoint loading: v6.1 fixtures reproduce their outputs, state-dict keys match, unsafe pickles are refused."""

from __future__ import annotations

import copy
import datetime
import os

import pytest
import torch

from models.experimental import Ensemble, attempt_load
from models.yolo import Model
from tests.conftest import ROOT
from utils.checkpoint import TRUST_ENV, CheckpointError, UnsafeCheckpointError

MODELS = ROOT / "models"


@pytest.mark.parametrize("ckpt,out", [("ckpt_yolov5n_cal.pt", "out_yolov5n_cal.pt"),
                                      ("ckpt_yolov5s-NAM_cal.pt", "out_yolov5s-NAM_cal.pt")])
def test_v61_fixture_reproduces_loaded_fused_output(fixtures_dir, ckpt, out):
    ref = torch.load(fixtures_dir / out, map_location="cpu", weights_only=False)  # test data we trust
    model = attempt_load(fixtures_dir / ckpt, map_location="cpu")  # no opt-in needed
    assert not hasattr(model.model[0], "bn")  # fused
    with torch.no_grad():
        y = model(ref["x"])[0]
    exp = ref["out_loaded_fused"]
    assert y.shape == exp.shape == (1, 5040, 85)
    assert (y[..., :4] - exp[..., :4]).abs().max() <= 0.05
    assert (y[..., 4:] - exp[..., 4:]).abs().max() <= 1e-4


@pytest.mark.parametrize("cfg,keys", [("yolov5n.yaml", "keys_yolov5n.txt"), ("yolov5s.yaml", "keys_yolov5s.txt"),
                                      ("yolov5s-NAM.yaml", "keys_yolov5s-NAM.txt")])
def test_state_dict_keys_in_order(fixtures_dir, cfg, keys):
    expected = (fixtures_dir / keys).read_text().split()
    assert list(Model(MODELS / cfg).state_dict().keys()) == expected


def test_official_unfused_checkpoint_loads_and_transfers(fixtures_dir):
    m = attempt_load(fixtures_dir / "ckpt_yolov5s.pt", map_location="cpu", fuse=False)
    assert type(m).__name__ == "Model" and m.model[0].bn is not None
    assert sum(p.numel() for p in m.parameters()) == 7235389
    assert m.stride.tolist() == [8.0, 16.0, 32.0] and len(m.names) == 80
    fresh = Model(MODELS / "yolov5s.yaml")
    missing = fresh.load_state_dict(m.state_dict(), strict=True)
    assert not missing.missing_keys and not missing.unexpected_keys


def test_two_weights_make_an_ensemble(fixtures_dir):
    ens = attempt_load([fixtures_dir / "ckpt_yolov5n.pt", fixtures_dir / "ckpt_yolov5n.pt"], map_location="cpu")
    assert isinstance(ens, Ensemble) and len(ens) == 2
    with torch.no_grad():
        y, _ = ens(torch.rand(1, 3, 64, 64))
    assert y.shape == (1, 2 * 3 * (64 + 16 + 4), 85)
    assert ens.stride.tolist() == [8.0, 16.0, 32.0]


def test_own_checkpoint_roundtrip_without_opt_in(tmp_path):
    """A checkpoint in v6.1's format holding our attention classes loads under the allowlist."""
    model = Model(MODELS / "yolov5n-CoTA.yaml")
    ckpt = {"epoch": -1, "best_fitness": None, "model": copy.deepcopy(model).half(), "ema": None, "updates": None,
            "optimizer": None, "wandb_id": None, "date": datetime.datetime.now().isoformat()}
    f = tmp_path / "own.pt"
    torch.save(ckpt, f)
    loaded = attempt_load(f, map_location="cpu", fuse=False).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        a = model.eval()(x)[0]
        b = loaded(x)[0]
    torch.testing.assert_close(a[..., 4:], b[..., 4:], atol=2e-2, rtol=0)  # fp16 round trip


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_pickle_calling_os_system_is_refused_and_runs_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv(TRUST_ENV, raising=False)
    marker = tmp_path / "pwned"
    f = tmp_path / "evil.pt"
    torch.save({"model": _Evil(marker), "ema": None}, f)
    with pytest.raises(UnsafeCheckpointError) as e:
        attempt_load(f, map_location="cpu")
    assert "system" in str(e.value) and TRUST_ENV in str(e.value)
    assert not marker.exists()


class Holder:  # a non-allowlisted (but harmless) global
    pass


def test_trusted_opt_in_loads_other_globals(tmp_path, monkeypatch):
    m = Model(MODELS / "yolov5n.yaml")
    f = tmp_path / "extra.pt"
    torch.save({"model": m, "ema": None, "extra": Holder()}, f)
    monkeypatch.delenv(TRUST_ENV, raising=False)
    with pytest.raises(UnsafeCheckpointError, match="Holder"):
        attempt_load(f, map_location="cpu")
    monkeypatch.setenv(TRUST_ENV, "1")
    assert isinstance(attempt_load(f, map_location="cpu"), Model)


def test_missing_and_non_checkpoint_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        attempt_load(tmp_path / "nope.pt")
    f = tmp_path / "weights_only.pt"
    torch.save({"model": {"a": torch.zeros(1)}}, f)
    with pytest.raises(ValueError, match="not a YOLOv5 checkpoint"):
        attempt_load(f)
    g = tmp_path / "garbage.pt"
    g.write_bytes(b"not a zip file at all")
    with pytest.raises(CheckpointError, match=r"garbage.pt is not a readable PyTorch checkpoint \(21 bytes\)"):
        attempt_load(g)


def test_v61_training_checkpoint_with_numpy_best_fitness_loads(tmp_path):
    """v6.1's last.pt stores best_fitness as a numpy array: it must load without opt-in."""
    import numpy as np

    from utils.checkpoint import load_checkpoint

    f = tmp_path / "last.pt"
    torch.save({"epoch": 3, "best_fitness": np.array([0.25]), "model": Model(MODELS / "yolov5n.yaml").half(),
                "ema": None, "updates": 10, "optimizer": None, "wandb_id": None, "date": "x"}, f)
    from models.experimental import safe_classes

    ck = load_checkpoint(f, allowed=safe_classes())
    assert float(ck["best_fitness"][0]) == 0.25
