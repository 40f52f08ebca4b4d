"""v6.1 helpers that complete the import surface: environment checks, timers, evolve records, the second-stage
classifier and torch profiling (part 2: tests/test_v61_data_helpers.py)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import yaml

import utils.checks as checks
from tests.conftest import ROOT
from utils.general import Profile, Timeout


# ---------------------------------------------------------------- timers


def test_timeout_interrupts_a_sleep_then_suppresses_or_raises():
    before = signal.getsignal(signal.SIGALRM)
    t0 = time.perf_counter()
    with Timeout(0.2):
        time.sleep(5)
    assert time.perf_counter() - t0 < 2
    with pytest.raises(TimeoutError, match="too slow"):
        with Timeout(0.2, timeout_msg="too slow", suppress_timeout_errors=False):
            time.sleep(5)
    with Timeout(5):  # finishes in time: the timer is cancelled and the handler restored
        x = sum(range(10))
    assert x == 45 and signal.getsignal(signal.SIGALRM) == before and signal.getitimer(signal.ITIMER_REAL)[0] == 0


def test_profile_measures_a_sleep_as_context_and_decorator(yolo_log):
    with Profile() as p:
        time.sleep(0.05)
    assert 0.05 <= p.dt < 1.0
    assert any(line == f"Profile results: {p.dt:.5f}s" for line in yolo_log)

    @Profile()
    def nap():
        time.sleep(0.02)

    nap()
    assert sum(line.startswith("Profile results: ") for line in yolo_log) == 2


# ---------------------------------------------------------------- environment checks


def _no_subprocess(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError(f"check_requirements must not run anything: {a}")
    for name in ("run", "call", "check_call", "check_output", "Popen"):
        monkeypatch.setattr(subprocess, name, refuse)


def test_check_requirements_advises_pip_and_installs_nothing(tmp_path, monkeypatch, yolo_log):
    _no_subprocess(monkeypatch)
    f = tmp_path / "requirements.txt"
    f.write_text("# base\npytest>=1.0  # installed\nsurely-not-installed-pkg-xyz>=1.0\nnumpy<0.1\n"
                 "pywin32>=300; platform_system == 'Windows' and python_version < '2'\n-r other.txt\n"
                 "torch>=99  # excluded\nnot a requirement ((\n")
    unmet = checks.check_requirements(f, exclude=("torch",))
    assert unmet == ["surely-not-installed-pkg-xyz>=1.0", "numpy<0.1"]
    text = "\n".join(yolo_log)
    assert 'pip install "surely-not-installed-pkg-xyz>=1.0"' in text and 'pip install "numpy<0.1"' in text
    assert f"numpy=={np.__version__} is installed" in text and "not found" in text
    assert "2 packages missing or outdated per requirements.txt" in text and "never installs" in text
    assert "skipping 'not a requirement ((" in text and "torch>=99" not in text
    assert checks.check_requirements(["pytest", "numpy>=1.0"], install=False) == []
    assert checks.check_requirements("numpy>=99") == ["numpy>=99"]  # one requirement string
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        checks.check_requirements(tmp_path / "nope.txt")
    monkeypatch.setattr(checks.importlib.metadata, "version", lambda name: "not a version!")
    assert checks.check_requirements(["numpy>=1.0"]) == ["numpy>=1.0"]  # an unparsable version never raises
    assert "numpy>=1.0" in yolo_log[-2]  # reported (outdated or not checkable, by packaging version)


def test_check_online_uses_1111_port_443_within_5s(monkeypatch):
    calls = []

    class Conn:
        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    monkeypatch.setattr(socket, "create_connection", lambda addr, timeout: calls.append((addr, timeout)) or Conn())
    assert checks.check_online() is True and calls == [(("1.1.1.1", 443), 5)]

    def down(addr, timeout):
        raise OSError("network unreachable")
    monkeypatch.setattr(socket, "create_connection", down)
    assert checks.check_online() is False


def _git(cwd, *args):
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def _commit(repo, name):
    (repo / name).write_text(name)
    _git(repo, "add", name)
    _git(repo, "commit", "-qm", name)


@pytest.fixture
def git_clone(tmp_path):
    """(a clone of a local bare 'origin', another clone of it) with one shared commit; skipped without git."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    seed = tmp_path / "seed"
    seed.mkdir()
    _git(seed, "init", "-q", "-b", "main")
    _commit(seed, "a")
    _git(tmp_path, "clone", "-q", "--bare", str(seed), "origin.git")
    _git(tmp_path, "clone", "-q", "origin.git", "work")
    _git(tmp_path, "clone", "-q", "origin.git", "other")
    return tmp_path / "work", tmp_path / "other"


def test_check_git_status_counts_commits_behind_a_local_origin(git_clone, monkeypatch, yolo_log):
    work, other = git_clone
    monkeypatch.setattr(checks, "ROOT", work)
    monkeypatch.setattr(checks, "check_online", lambda: True)
    monkeypatch.setattr(checks, "is_docker", lambda: False)
    _commit(other, "b")
    _commit(other, "c")
    _git(other, "push", "-q", "origin", "main")
    s = checks.check_git_status()
    url = str(work.parent / "origin.git")
    assert s == f"⚠️ YOLOv5 is out of date by 2 commits. Use `git pull` or `git clone {url}` to update."
    assert yolo_log[-1].endswith(s) and "github: " in yolo_log[-1]
    _git(work, "pull", "-q")
    assert checks.check_git_status() == f"up to date with {url} ✅"


def test_check_git_status_skips_without_raising(tmp_path, git_clone, monkeypatch, yolo_log):
    monkeypatch.setattr(checks, "ROOT", tmp_path / "not_a_repo")
    assert checks.check_git_status().startswith("skipping check (not a git repository), for updates see https://")
    monkeypatch.setattr(checks, "ROOT", git_clone[0])
    monkeypatch.setattr(checks, "is_docker", lambda: False)
    monkeypatch.setattr(checks, "check_online", lambda: False)
    assert checks.check_git_status().startswith("skipping check (offline)")
    monkeypatch.setattr(checks, "check_online", lambda: True)

    def hang(cmd, **kw):
        assert kw["timeout"] == 7
        raise subprocess.TimeoutExpired(cmd, kw["timeout"])
    monkeypatch.setattr(checks.subprocess, "run", hang)
    assert checks.check_git_status(timeout=7) == "skipping check ('git config --get remote.origin.url' took over 7s)"
    monkeypatch.undo()
    _git(git_clone[0], "remote", "remove", "origin")
    monkeypatch.setattr(checks, "ROOT", git_clone[0])
    monkeypatch.setattr(checks, "is_docker", lambda: False)
    monkeypatch.setattr(checks, "check_online", lambda: True)
    assert checks.check_git_status().startswith("skipping check (no 'origin' remote), for updates see https://")
    assert all("github: " in line and "skipping check (" in line for line in yolo_log[-4:])


def test_check_python():
    assert checks.check_python("3.6.2") is True
    with pytest.raises(AssertionError, match=r"Python 99\.0 required by YOLOv5"):
        checks.check_python("99.0")


def test_config_dir_is_not_created_at_import_and_user_config_dir_creates_it(tmp_path, monkeypatch):
    env = {**os.environ, "HOME": str(tmp_path)}
    env.pop("YOLOV5_CONFIG_DIR", None)
    out = subprocess.run([sys.executable, "-c", "import utils.general as g; print(g.CONFIG_DIR)"], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True).stdout.strip()
    if sys.platform.startswith("linux"):
        assert out == str(tmp_path / ".config" / "Ultralytics")
    assert not Path(out).exists() and not any(tmp_path.iterdir())  # nothing written at import or on access
    monkeypatch.setenv("YOLOV5_CONFIG_DIR", str(tmp_path / "cfg" / "here"))
    assert checks.user_config_dir() == tmp_path / "cfg" / "here" and (tmp_path / "cfg" / "here").is_dir()


def _some_ttf() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"


def test_check_font_finds_local_fonts_or_names_the_url(tmp_path, monkeypatch):
    monkeypatch.setattr(checks, "CONFIG_DIR", tmp_path / "cfg")
    with pytest.raises(FileNotFoundError) as e:
        checks.check_font("NoSuchFont-xyz.ttf")
    assert "https://ultralytics.com/assets/NoSuchFont-xyz.ttf" in str(e.value) and str(tmp_path / "cfg") in str(e.value)
    (tmp_path / "cfg").mkdir()
    shutil.copy(_some_ttf(), tmp_path / "cfg" / "Mine.ttf")
    assert checks.check_font("Mine.ttf") == tmp_path / "cfg" / "Mine.ttf"  # by name, in CONFIG_DIR
    assert checks.check_font(str(_some_ttf())) == _some_ttf()


def test_check_pil_font_local_or_fallback_with_warning(tmp_path, monkeypatch, yolo_log):
    import utils.plot_tools
    from utils.plots import check_pil_font

    monkeypatch.setattr(utils.plot_tools, "_font_warned", set())  # warnings are once per font and process
    monkeypatch.setattr(checks, "CONFIG_DIR", tmp_path)
    shutil.copy(_some_ttf(), tmp_path / "Mine.ttf")
    f = check_pil_font("Mine.ttf", 20)
    assert f.size == 20 and Path(f.path) == tmp_path / "Mine.ttf" and not yolo_log
    g = check_pil_font("NoSuchFont-abc.ttf", 12)
    assert g.getbbox("abc")[2] > 0
    assert len(yolo_log) == 1 and "https://ultralytics.com/assets/NoSuchFont-abc.ttf" in yolo_log[0]
    assert "Using DejaVuSans.ttf instead" in yolo_log[-1] or "Using PIL's built-in default font" in yolo_log[-1]


# ---------------------------------------------------------------- evolve record


def test_print_mutation_writes_csv_yaml_and_logs_the_table(tmp_path, yolo_log):
    from utils.general import print_mutation

    hyp = {"lr0": 0.01, "momentum": 0.937}
    print_mutation((0.5, 0.4, 0.3, 0.2, 0.05, 0.04, 0.03), hyp, tmp_path, "")
    print_mutation((0.6, 0.5, 0.4, 0.25, 0.05, 0.04, 0.03), {"lr0": 0.02, "momentum": 0.9}, tmp_path, "",
                   prefix="gen: ")
    lines = (tmp_path / "evolve.csv").read_text().splitlines()
    assert len(lines) == 3 and lines[0].split(",")[2] == f"{'metrics/mAP_0.5':>20s}" and len(lines[0]) == 9 * 21 - 1
    assert lines[2].split(",")[-2:] == [f"{0.02:20.5g}", f"{0.9:20.5g}"]
    text = (tmp_path / "hyp_evolve.yaml").read_text()
    assert text.startswith("# YOLOv5 Hyperparameter Evolution Results\n# Best generation: 1\n# Last generation: 1\n")
    assert yaml.safe_load(text) == {"lr0": 0.02, "momentum": 0.9}
    assert "gen: 2 generations finished, current result:" in yolo_log
    assert yolo_log[yolo_log.index("gen: 2 generations finished, current result:") + 2].startswith(
        "gen: " + f"{0.6:20.5g}")


def test_print_mutation_bucket_pulls_and_pushes_with_gsutil(tmp_path, monkeypatch):
    import utils.downloads
    import utils.evolve

    runs = []
    monkeypatch.setattr(utils.downloads, "gsutil_getsize", lambda url="": 10 ** 6, raising=False)
    monkeypatch.setattr(utils.evolve.subprocess, "run", lambda cmd, check: runs.append(cmd))
    utils.evolve.print_mutation((0.1,) * 7, {"lr0": 0.01}, tmp_path, "bkt")
    assert runs == [["gsutil", "cp", "gs://bkt/evolve.csv", str(tmp_path)],
                    ["gsutil", "cp", str(tmp_path / "evolve.csv"), str(tmp_path / "hyp_evolve.yaml"), "gs://bkt"]]


# ---------------------------------------------------------------- second-stage classifier


class _RedVsBlue(nn.Module):
    """Class 0 for reddish crops, 1 for bluish ones (input RGB (n, 3, 224, 224))."""

    def forward(self, x):
        assert x.shape[1:] == (3, 224, 224) and 0 <= float(x.min()) and float(x.max()) <= 1
        return torch.stack((x[:, 0].mean((1, 2)), x[:, 2].mean((1, 2))), 1)


def test_apply_classifier_keeps_boxes_whose_class_it_confirms():
    from utils.general import apply_classifier

    im0 = np.zeros((200, 200, 3), np.uint8)
    im0[:, :100] = (0, 0, 255)  # BGR red left half
    im0[:, 100:] = (255, 0, 0)  # blue right half
    det = torch.tensor([[20.0, 80, 60, 120, 0.9, 0], [140, 80, 180, 120, 0.8, 1], [140, 20, 180, 60, 0.7, 0]])
    out = apply_classifier([det.clone(), torch.zeros((0, 6))], _RedVsBlue(), torch.zeros(2, 3, 200, 200), [im0, im0])
    assert torch.equal(out[0], det[:2]) and out[1].shape == (0, 6)
    single = apply_classifier([det.clone()], _RedVsBlue(), torch.zeros(1, 3, 200, 200), im0)  # one image, bare
    assert torch.equal(single[0], det[:2])


# ---------------------------------------------------------------- torch utils


def test_git_describe_and_device_count(tmp_path, git_clone, monkeypatch):
    from utils import torch_utils

    assert torch_utils.git_describe(tmp_path) == ""  # tmp_path holds repositories but is not one
    _git(git_clone[0], "tag", "v6.1")
    _commit(git_clone[0], "z")
    assert torch_utils.git_describe(git_clone[0]).startswith("v6.1-1-g")
    assert isinstance(torch_utils.device_count(), int) and torch_utils.device_count() >= 0
    fake = subprocess.CompletedProcess([], 0, "GPU 0: A100 (UUID: x)\n  MIG 1g.5gb Device 0: (UUID: y)\nGPU 1: B\n")
    monkeypatch.setattr(torch_utils.subprocess, "run", lambda *a, **k: fake)
    assert torch_utils.device_count() == 2

    def absent(*a, **k):
        raise FileNotFoundError("nvidia-smi")
    monkeypatch.setattr(torch_utils.subprocess, "run", absent)
    assert torch_utils.device_count() == 0


def test_profile_reports_params_flops_and_times(yolo_log):
    from utils.torch_utils import profile

    torch.manual_seed(0)
    x = torch.randn(2, 3, 16, 16)
    conv = nn.Conv2d(3, 8, 3)

    def boom(t):
        raise RuntimeError("op failed")

    res = profile(x, [conv, lambda t: t * torch.sigmoid(t), boom], n=2, device=torch.device("cpu"))
    p, gflops, mem, tf, tb, s_in, s_out = res[0]
    assert p == 3 * 8 * 9 + 8 and mem == 0.0 and tf > 0 and tb > 0
    assert (s_in, s_out) == ((2, 3, 16, 16), (2, 8, 14, 14))
    if importlib.util.find_spec("thop"):
        assert gflops == pytest.approx(2 * 2 * 8 * 14 * 14 * 27 / 1e9)  # 2 x MACs of the 3x3 conv (no bias term)
    else:
        assert gflops == 0.0  # FLOPs need thop; the timing runs without it
    assert res[1][:2] == [0, 0.0] and res[1][6] == (2, 3, 16, 16) and res[2] is None
    assert not x.requires_grad and "op failed" in yolo_log and yolo_log[0].split()[:2] == ["Params", "GFLOPs"]

