"""Same seed, same numbers: two CPU trainings with the same seed write the same results.csv, byte for byte.

An end-to-end guard (loader workers, augmentation, EMA, validation, logging). The thread race that made repeats
differ (objectness targets written in parallel for repeated cells) needs more target rows than this tiny run has;
tests/test_loss.py tests it directly."""

from __future__ import annotations

import pytest

import train
from tests.conftest import ROOT


@pytest.mark.parametrize("workers", [2])
def test_same_seed_repeat_is_byte_identical_and_another_seed_is_not(tiny_data, tmp_path, workers):
    kw = dict(weights="", cfg=str(ROOT / "models/yolov5n-NAM.yaml"), data=str(tiny_data), imgsz=96, batch_size=16,
              epochs=2, workers=workers, device="cpu", project=str(tmp_path))
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        train.run(**kw, name=name, seed=seed)
    a, b, c = ((tmp_path / n / "results.csv").read_bytes() for n in "abc")
    assert a == b, f"\n{a.decode()}\n{b.decode()}"
    assert a != c  # the seed still matters
