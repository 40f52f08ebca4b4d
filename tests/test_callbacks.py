"""Every hook that utils/callbacks.py declares fires during a tiny training, at its documented place."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
import yaml

import train
from tests.conftest import ROOT
from utils.callbacks import HOOKS, Callbacks
from utils.general import InputError

pytestmark = pytest.mark.usefixtures("one_thread")
SMALL = dict(weights="", imgsz=64, batch_size=16, workers=0, device="cpu", noautoanchor=True)


def test_every_declared_hook_fires_and_optimizer_step_once_per_step(tiny_data, tmp_path, monkeypatch):
    calls: Counter = Counter()
    seen: dict = {}
    cb = Callbacks()
    for hook in HOOKS:
        def count(*args, _hook=hook, **kwargs):
            calls[_hook] += 1
            seen.setdefault(_hook, (args, kwargs))

        cb.register_action(hook, name="test counter", callback=count)

    steps = []  # one entry per real optimizer step
    real_step = torch.optim.SGD.step

    def counted_step(self, *a, **k):
        steps.append(1)
        return real_step(self, *a, **k)

    monkeypatch.setattr(torch.optim.SGD, "step", counted_step)
    opt = train.parse_opt(True)
    for k, v in dict(SMALL, cfg=str(ROOT / "models/yolov5n.yaml"), data=str(tiny_data), epochs=1,
                     project=str(tmp_path), name="hooks").items():
        setattr(opt, k, v)
    results = train.main(opt, callbacks=cb)
    assert len(results) == 7

    missing = [h for h in HOOKS if calls[h] == 0]
    assert not missing, f"hooks never fired: {missing}"
    assert steps and calls["optimizer_step"] == len(steps) == calls["on_before_zero_grad"]
    nb = 2  # 32 tiny images, batch 16
    assert calls["on_train_batch_start"] == calls["on_train_batch_end"] == nb
    assert calls["on_train_epoch_start"] == calls["on_train_epoch_end"] == 1
    for once in ("on_pretrain_routine_start", "on_pretrain_routine_end", "on_train_start", "on_params_update",
                 "on_train_end", "teardown"):
        assert calls[once] == 1, once
    assert calls["on_val_start"] == 2  # epoch 0 and the final validation of best.pt
    assert calls["on_val_end"] == 1  # as in v6.1, only a validation that plots (the final one) fires it
    assert calls["on_val_batch_start"] == calls["on_val_batch_end"] >= 2

    model, optimizer = seen["optimizer_step"][0]
    assert isinstance(model, torch.nn.Module) and isinstance(optimizer, torch.optim.Optimizer)
    params = seen["on_params_update"][0][0]
    assert params["box"] == pytest.approx(0.05) and params["label_smoothing"] == 0.0  # 3 levels: box unscaled
    assert params["obj"] == pytest.approx(1.0 * (64 / 640) ** 2)  # scaled to the image size
    assert seen["on_train_epoch_start"] == ((), {"epoch": 0})
    assert seen["on_train_batch_start"][0] == (0, 0)


def test_teardown_runs_when_a_callback_stops_training(tiny_data, tmp_path):
    cb = Callbacks()
    fired = []

    def stop(*args, **kwargs):
        cb.stop_training = True

    cb.register_action("on_train_batch_end", name="stop", callback=stop)
    cb.register_action("on_train_end", name="t", callback=lambda *a, **k: fired.append("end"))
    cb.register_action("teardown", name="t", callback=lambda *a, **k: fired.append("teardown"))
    opt = train.parse_opt(True)
    for k, v in dict(SMALL, cfg=str(ROOT / "models/yolov5n.yaml"), data=str(tiny_data), epochs=2,
                     project=str(tmp_path), name="stop").items():
        setattr(opt, k, v)
    assert train.main(opt, callbacks=cb) == (0, 0, 0, 0, 0, 0, 0)  # stopped after the first batch
    assert fired == ["teardown"]


def test_regularizer_registered_once_per_run_and_only_when_set(tmp_path):
    from utils.regularizers import L1Regularizer

    cb = Callbacks()
    opt = train.parse_opt(True)
    opt.evolve = 1  # no TensorBoard writer for this registration-only check
    s = train.TrainRun(opt=opt, hyp={"nam_l1": 1e-4}, device=torch.device("cpu"), callbacks=cb,
                       save_dir=tmp_path, epochs=1, batch_size=16, plots=False, cuda=False)
    for _ in range(2):  # a second train() on the same callbacks (--evolve) does not stack regularisers
        train.register_run_callbacks(s)
    regs = [a["callback"] for a in cb.get_registered_actions("optimizer_step") if a["name"] == "regularizers"]
    assert len(regs) == 1 and isinstance(regs[0], L1Regularizer) and regs[0].strength == 1e-4
    for off in ({"nam_l1": 0.0}, {"nam_l1": None}, {}):
        s.hyp = off
        train.register_run_callbacks(s)
        assert not [a for a in cb.get_registered_actions("optimizer_step") if a["name"] == "regularizers"]


def test_train_imports_no_attention_module():
    src = (ROOT / "train.py").read_text()
    assert "models.attention" not in src and "add_sparsity_grad" not in src


def test_evolve_runs_train_per_generation_with_the_same_callbacks(tiny_data, tmp_path, yolo_log):
    calls: Counter = Counter()
    cb = Callbacks()
    for hook in ("on_params_update", "teardown", "on_train_end"):
        cb.register_action(hook, name="test counter", callback=lambda *a, _h=hook, **k: calls.update([_h]))
    hyp = yaml.safe_load((ROOT / "data/hyps/hyp.scratch-low.yaml").read_text())
    (tmp_path / "hyp.yaml").write_text(yaml.safe_dump({**hyp, "nam_l1": 1e-4}))
    opt = train.parse_opt(True)
    for k, v in dict(SMALL, cfg=str(ROOT / "models/yolov5n.yaml"), data=str(tiny_data), epochs=1, evolve=2,
                     project=str(tmp_path), name="evo", hyp=str(tmp_path / "hyp.yaml")).items():
        setattr(opt, k, v)
    best = train.main(opt, callbacks=cb)
    assert best["nam_l1"] == 1e-4  # a key --evolve does not mutate is kept
    rows = (tmp_path / "evo" / "evolve.csv").read_text().splitlines()
    assert len(rows) == 3 and "lr0" in best  # header + one row per generation; the best hyps come back
    assert calls == {"on_params_update": 2, "teardown": 2, "on_train_end": 2}
    assert len(cb.get_registered_actions("on_fit_epoch_end")) == 1  # one set of run loggers, not one per generation
    d = tmp_path / "evo"
    assert len((d / "results.csv").read_text().splitlines()) == 1 + 2  # one row per epoch and generation, no repeats
    assert (d / "evolve.png").stat().st_size > 10_000  # v6.1's 6x5 grid of hyp against fitness
    text = "\n".join(yolo_log)
    assert "2 generations finished, current result:" in text and "metrics/mAP_0.5:0.95" in text
    assert "Best results from row" in text and "Hyperparameter evolution finished 2 generations" in text

    opt = train.parse_opt(True)  # --evolve 1 --resume: continue the same folder's evolve.csv (v6.1's way)
    for k, v in dict(SMALL, cfg=str(ROOT / "models/yolov5n.yaml"), data=str(tiny_data), epochs=1, evolve=1,
                     project=str(tmp_path), name="evo", resume=True, hyp=str(tmp_path / "hyp.yaml")).items():
        setattr(opt, k, v)
    train.main(opt)
    assert len((d / "evolve.csv").read_text().splitlines()) == 1 + 3 and not (tmp_path / "evo2").exists()
    assert len((d / "results.csv").read_text().splitlines()) == 1 + 3
    assert "continuing" in "\n".join(yolo_log) and "2 generations recorded" in "\n".join(yolo_log)


def test_evolve_refuses_a_csv_of_other_hyps(tmp_path):
    from utils.evolve import METRIC_KEYS, check_resumable
    f = tmp_path / "evolve.csv"
    assert check_resumable(f, {"lr0": 0.01}) == 0
    f.write_text(",".join(f"{k:>20s}" for k in (*METRIC_KEYS, "lr0", "lrf")) + "\n" + "0," * 8 + "0\n")
    assert check_resumable(f, {"lr0": 0.01, "lrf": 0.1}) == 1
    with pytest.raises(InputError, match=r"evolve.csv: its columns are not this evolution's .*missing: \['momentum'\]"):
        check_resumable(f, {"lr0": 0.01, "lrf": 0.1, "momentum": 0.9})


def test_mutate_parents_are_the_top_five_weighted_above_the_weakest_kept(tmp_path):
    import numpy as np

    from utils.evolve import METRIC_KEYS, mutate
    f = tmp_path / "evolve.csv"
    f.write_text(",".join((*METRIC_KEYS, "lr0")) + "\n")
    assert mutate({"lr0": 0.01}, f, np.random.default_rng(0)) == {"lr0": 0.01}  # header only: no parent yet
    maps = [0.0, 0.6, 0.2, 0.5, 0.3, 0.4]  # mAP@.5:.95 per generation (fitness 0.9x this, mAP@.5 = 0)
    f.write_text(f.read_text() + "".join(f"0,0,0,{m},0,0,0,{0.01 * (i + 1)}\n" for i, m in enumerate(maps)))

    class Spy:  # records the parent probabilities, otherwise a seeded generator
        def __init__(self):
            self.rng, self.p = np.random.default_rng(0), None

        def choice(self, n, p):
            self.p = p
            return self.rng.choice(n, p=p)

        def __getattr__(self, name):
            return getattr(self.rng, name)

    spy = Spy()
    mutate({"lr0": 0.01}, f, spy)
    fit = 0.9 * np.array([0.6, 0.5, 0.4, 0.3, 0.2])  # the top five, best first; generation 0 is not a parent
    w = fit - fit.min() + 1e-6
    np.testing.assert_allclose(spy.p, w / w.sum(), rtol=1e-6)
