"""Same seed, same numbers: two CPU trainings with the same seed write the same results.csv, byte for byte.

An end-to-end guard (loader workers, augmentation, EMA, validation, logging). The thread race that made repeats
differ (objectness targets written in parallel for repeated cells) needs more target rows than this tiny run has;
tests/test_loss.py tests it directly. ``--deterministic`` puts every seed in the same mode, and the run writes the
flags it trained with to determinism.json."""

from __future__ import annotations

import json
import os

import pytest
import torch
from torch.backends import cudnn

import train
from tests.conftest import ROOT
from utils.determinism import CUBLAS_CONFIG, NondeterministicOps, determinism_flags, set_deterministic
from utils.torch_utils import init_seeds


@pytest.fixture
def restore_determinism():
    old = (torch.are_deterministic_algorithms_enabled(), cudnn.benchmark, cudnn.deterministic)
    yield
    set_deterministic(False)
    torch.use_deterministic_algorithms(old[0])
    cudnn.benchmark, cudnn.deterministic = old[1], old[2]


def test_deterministic_mode_is_the_same_for_every_seed(restore_determinism):
    cublas = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    flags = []
    for seed in (0, 1, 7):
        init_seeds(seed, deterministic=True)
        flags.append(determinism_flags())
    assert flags[0] == flags[1] == flags[2]
    assert flags[0] == {"deterministic_algorithms": True, "warn_only": True, "cudnn_deterministic": True,
                        "cudnn_benchmark": False, "CUBLAS_WORKSPACE_CONFIG": CUBLAS_CONFIG}
    init_seeds(0)  # v6.1's rule again: seed 0 deterministic cuDNN, seed 1 benchmark, no deterministic algorithms
    assert not torch.are_deterministic_algorithms_enabled() and (cudnn.deterministic, cudnn.benchmark) == (True, False)
    assert os.environ.get("CUBLAS_WORKSPACE_CONFIG") == cublas  # as it was before
    init_seeds(1)
    assert (cudnn.deterministic, cudnn.benchmark) == (False, True)


def test_nondeterministic_ops_are_collected_and_written(tmp_path, restore_determinism):
    import warnings

    with NondeterministicOps(tmp_path / "d.json", seed=3) as w:
        warnings.warn("upsample_bilinear2d_backward_out_cuda does not have a deterministic implementation, but you "
                      "set 'torch.use_deterministic_algorithms(True, warn_only=True)'", UserWarning)
        warnings.warn("something else", UserWarning)
    assert w.ops == ["upsample_bilinear2d_backward_out_cuda"]
    d = json.loads((tmp_path / "d.json").read_text())
    assert d["seed"] == 3 and d["nondeterministic_ops"] == w.ops and set(d["flags"]) >= {"cudnn_benchmark"}


def test_same_seed_repeat_is_byte_identical_and_another_seed_is_not(tiny_data, tmp_path, restore_determinism):
    kw = dict(weights="", cfg=str(ROOT / "models/yolov5n-NAM.yaml"), data=str(tiny_data), imgsz=64, batch_size=16,
              epochs=2, workers=2, device="cpu", project=str(tmp_path), noplots=True)
    runs = (("a", 0, False), ("b", 0, False), ("c", 0, True), ("d", 0, True), ("e", 1, True))
    for name, seed, det in runs:
        train.run(**kw, name=name, seed=seed, deterministic=det)
    a, b, c, d, e = ((tmp_path / n / "results.csv").read_bytes() for n, *_ in runs)
    assert a == b, f"\n{a.decode()}\n{b.decode()}"  # v6.1's mode
    assert c == d, f"\n{c.decode()}\n{d.decode()}"  # --deterministic
    assert c != e  # the seed still matters
    flags = [json.loads((tmp_path / n / "determinism.json").read_text()) for n in "cde"]
    assert flags[0]["flags"] == flags[2]["flags"] and flags[0]["flags"]["deterministic_algorithms"]
    assert (flags[0]["seed"], flags[2]["seed"]) == (0, 1) and not (tmp_path / "a" / "determinism.json").exists()
    for n in "ac":  # the per-image records of the best epoch sit next to the run
        assert (tmp_path / n / "records" / "best.npz").is_file() and (tmp_path / n / "records" / "last.npz").is_file()
