"""Mixed precision on the CPU: the CUDA AMP code path (autocast + GradScaler + unscaled-gradient hooks) runs with
bf16, and the AMP / half-precision checks send a model that reduced precision breaks back to fp32."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import yaml

import train
from models.yolo import Model
from tests.conftest import ROOT
from utils.amp import amp_dtype, check_amp, check_half, outputs_agree
from utils.loss import ComputeLoss

pytestmark = pytest.mark.usefixtures("one_thread")
CPU = torch.device("cpu")
TINY = dict(weights="", imgsz=64, batch_size=16, workers=0, device="cpu", noautoanchor=True, epochs=1)


class _Poison(nn.Module):
    """Wraps a layer; returns NaN whenever it runs in reduced precision (autocast or fp16 weights)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.i, self.f, self.type, self.np = inner.i, inner.f, inner.type, inner.np

    def forward(self, x):
        y = self.inner(x)
        reduced = torch.is_autocast_enabled(y.device.type) or y.dtype in (torch.float16, torch.bfloat16)
        return y * float("nan") if reduced else y


def poisoned(model: nn.Module) -> nn.Module:
    m = copy.deepcopy(model)
    m.model[0] = _Poison(m.model[0])
    return m


@pytest.fixture(scope="module")
def yolov5n() -> Model:
    return Model(ROOT / "models/yolov5n.yaml")


def test_amp_modes(monkeypatch):
    import utils.amp

    assert amp_dtype("off", CPU) is None and amp_dtype("off", torch.device("cuda")) is None
    monkeypatch.setattr(utils.amp, "cpu_has_native_bf16", lambda: False)
    assert amp_dtype("auto", CPU) is None  # v6.1: fp32 on the CPU
    monkeypatch.setattr(utils.amp, "cpu_has_native_bf16", lambda: True)
    assert amp_dtype("auto", CPU) is torch.bfloat16  # hardware bf16: autocast, as CUDA gets fp16
    assert amp_dtype("auto", torch.device("cuda")) is torch.float16 and amp_dtype("bf16", CPU) is torch.bfloat16
    with pytest.raises(ValueError, match="--amp 'fp8'"):
        amp_dtype("fp8", CPU)


def test_cpu_bf16_flag_is_read_from_cpuinfo(monkeypatch, tmp_path):
    import builtins

    import utils.amp

    real_open = builtins.open
    for flags, want in (("fpu avx2 avx512f", False), ("fpu avx512f avx512_bf16 avx512_vnni", True),
                        ("fpu amx_bf16 amx_tile", True)):
        f = tmp_path / "cpuinfo"
        f.write_text(f"processor\t: 0\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
        monkeypatch.setattr(builtins, "open", lambda p, *a, **k: real_open(f if p == "/proc/cpuinfo" else p, *a, **k))
        assert utils.amp.cpu_has_native_bf16() is want
    monkeypatch.setattr(builtins, "open", lambda *a, **k: (_ for _ in ()).throw(OSError("no such file")))
    assert utils.amp.cpu_has_native_bf16() is False


def test_amp_check_passes_a_sound_model_and_fails_a_broken_one(yolov5n, yolo_log):
    assert check_amp(yolov5n, CPU, torch.bfloat16)
    assert not check_amp(poisoned(yolov5n), CPU, torch.bfloat16)
    assert any("checks failed" in x and "non-finite" in x and "training in fp32 instead" in x for x in yolo_log)
    with torch.no_grad():
        y = yolov5n.eval()(torch.rand(1, 3, 64, 64))[0]
    assert not outputs_agree(y, y.flip(1))[0]  # the same values at other places: a wrong answer
    assert outputs_agree(y, y + 1e-3)[0]


def test_half_check_guards_half_precision_validation(yolov5n, yolo_log):
    assert check_half(yolov5n, CPU)
    assert not check_half(poisoned(yolov5n), CPU)
    assert any("half-precision inference is wrong for this model" in x for x in yolo_log)


class _Spies:
    """Records the dtype of the predictions the loss sees and what the GradScaler does."""

    def __init__(self, mp: pytest.MonkeyPatch):
        self.pred_dtypes, self.scaler_enabled, self.unscaled = set(), [], 0
        spies = self

        class LossSpy(ComputeLoss):
            def __call__(self, p, targets):
                spies.pred_dtypes.add(p[0].dtype)
                return super().__call__(p, targets)

        class ScalerSpy(torch.amp.GradScaler):
            def __init__(self, *a, **k):
                super().__init__(*a, **k)
                spies.scaler_enabled.append(self.is_enabled())

            def unscale_(self, optimizer):
                spies.unscaled += 1
                return super().unscale_(optimizer)

        import utils.train_setup

        mp.setattr(utils.train_setup, "ComputeLoss", LossSpy)  # the loss is made in the setup phases
        mp.setattr(torch.amp, "GradScaler", ScalerSpy)


def test_bf16_amp_trains_on_cpu_through_the_cuda_code_path(tiny_data, tmp_path, monkeypatch, yolo_log):
    hyp = yaml.safe_load((ROOT / "data/hyps/hyp.scratch-low.yaml").read_text())
    hyp["nam_l1"] = 1e-4  # its gradient hook must see unscaled gradients: GradScaler.unscale_ first
    (tmp_path / "hyp.yaml").write_text(yaml.safe_dump(hyp))
    spies = _Spies(monkeypatch)
    results = train.run(**TINY, cfg=str(ROOT / "models/yolov5n-NAM.yaml"), data=str(tiny_data), amp="bf16",
                        hyp=str(tmp_path / "hyp.yaml"), project=str(tmp_path), name="bf16")
    assert all(torch.isfinite(torch.tensor(results)))
    assert any("AMP: " in x and "checks passed" in x and "bfloat16" in x for x in yolo_log)
    assert torch.bfloat16 in spies.pred_dtypes  # training forwards (validation losses are computed in fp32)
    assert spies.scaler_enabled == [True] and spies.unscaled >= 1


def test_failed_amp_check_trains_in_fp32(tiny_data, tmp_path, monkeypatch, yolo_log):
    monkeypatch.setattr(train, "check_amp", lambda model, device, dtype: check_amp(poisoned(model), device, dtype))
    spies = _Spies(monkeypatch)
    results = train.run(**TINY, cfg=str(ROOT / "models/yolov5n.yaml"), data=str(tiny_data), amp="bf16",
                        project=str(tmp_path), name="fallback")
    assert all(torch.isfinite(torch.tensor(results)))
    assert spies.pred_dtypes == {torch.float32} and spies.scaler_enabled == [False]
