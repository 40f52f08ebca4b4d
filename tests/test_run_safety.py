"""Run folders: one writer at a time, atomic saves from concurrent processes, resumes that write only where the
checkpoint is and refuse a checkpoint from another run, and one results.csv row per epoch after a resume."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import train
from tests.conftest import ROOT
from models.experimental import safe_classes
from utils.checkpoint import CheckpointError, strip_optimizer
from utils.run_dir import LOCK_NAME, ResumeError, RunInUseError, RunLock, trim_results_csv

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = dict(weights="", cfg=str(ROOT / "models/yolov5n.yaml"), imgsz=64, batch_size=16, workers=0, device="cpu",
            noautoanchor=True)


def _epochs(run_dir: Path) -> list[int]:
    lines = (run_dir / "results.csv").read_text().splitlines()[1:]
    return [int(float(x.split(",")[0])) for x in lines]


@pytest.fixture(scope="module")
def interrupted_run(tmp_path_factory, tiny_data) -> Path:
    """A 3-epoch run that died while saving epoch 1's last.pt: results.csv has rows 0 and 1, last.pt is epoch 0."""
    d = tmp_path_factory.mktemp("runs")
    real = train.save_atomic

    def dies_at_epoch_1(obj, f):
        if obj["epoch"] == 1:
            raise KeyboardInterrupt  # Ctrl-C (or a kill) between the results.csv row and the checkpoint
        real(obj, f)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train, "save_atomic", dies_at_epoch_1)
        with pytest.raises(KeyboardInterrupt):
            train.run(**TINY, data=str(tiny_data), epochs=3, project=str(d), name="run")
    run = d / "run"
    assert _epochs(run) == [0, 1] and not (run / LOCK_NAME).exists()  # the lock went with the run
    return run


def test_second_writer_is_refused_while_the_first_lives_and_not_after_a_kill(tmp_path, tiny_data):
    run = tmp_path / "exp"
    code = ("import sys, time; sys.path.insert(0, sys.argv[2]); from utils.run_dir import RunLock; "
            "RunLock(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(300)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(run), str(ROOT)], stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"locked"
        with pytest.raises(RunInUseError, match=rf"{run.name} is in use by another run \(train.py pid {holder.pid}"):
            train.run(**TINY, data=str(tiny_data), epochs=1, project=str(tmp_path), name="exp", exist_ok=True)
        assert not (run / "results.csv").exists() and not (run / "weights").exists()  # nothing written
    finally:
        holder.kill()  # SIGKILL: no clean-up runs, the OS drops the lock
        holder.wait()
    with RunLock(run):  # free again
        pass


def test_runs_started_together_get_separate_folders(tmp_path):
    ready = tmp_path / "ready"
    ready.mkdir()
    code = ("import sys, time; from pathlib import Path; sys.path.insert(0, sys.argv[3]); "
            "from utils.general import increment_path; r = Path(sys.argv[2]); (r / sys.argv[4]).touch()\n"
            "while len(list(r.iterdir())) < 4: time.sleep(0.001)\n"  # all four ask at the same moment
            "print(increment_path(Path(sys.argv[1]) / 'exp', mkdir=True))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path), str(ready), str(ROOT), str(i)],
                              stdout=subprocess.PIPE, text=True) for i in range(4)]
    dirs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert len(set(dirs)) == 4 and all(Path(d).is_dir() for d in dirs), dirs


def test_lock_holder_clears_temporaries_of_killed_writers(tmp_path):
    (tmp_path / "weights").mkdir()
    stale = [tmp_path / "weights" / ".last.pt.123-0123456789ab.tmp", tmp_path / ".results.csv.9-abc.tmp"]
    for f in stale:
        f.write_bytes(b"half a checkpoint")
    (tmp_path / "weights" / "last.pt").write_bytes(b"kept")
    with RunLock(tmp_path):
        assert not any(f.exists() for f in stale) and (tmp_path / "weights" / "last.pt").exists()


def test_second_ablation_in_the_same_folder_is_refused(tmp_path):
    import ablate

    code = ("import sys, time; sys.path.insert(0, sys.argv[2]); from utils.run_dir import RunLock; "
            "RunLock(sys.argv[1], 'ablate.py').acquire(); print('locked', flush=True); time.sleep(300)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "abl"), str(ROOT)], stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"locked"
        with pytest.raises(RunInUseError, match=r"in use by another run \(ablate.py pid"):
            ablate.run(project=str(tmp_path), name="abl", modules=["SimAM"], epochs=1)
    finally:
        holder.kill()
        holder.wait()


def test_concurrent_atomic_saves_never_collide(tmp_path):
    f, ready = tmp_path / "last.pt", tmp_path / "ready"
    ready.mkdir()
    code = ("import sys, time, torch; from pathlib import Path; sys.path.insert(0, sys.argv[3]); "
            "from utils.checkpoint import save_atomic; r = Path(sys.argv[2]); (r / sys.argv[4]).touch()\n"
            "while len(list(r.iterdir())) < 3: time.sleep(0.01)\n"  # all three save during the same second
            "t0 = time.time()\n"
            "while time.time() < t0 + 1: save_atomic({'x': torch.zeros(20000)}, sys.argv[1])")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(f), str(ready), str(ROOT), str(i)],
                              stderr=subprocess.PIPE) for i in range(3)]
    errs = [p.communicate(timeout=120)[1].decode() for p in procs]
    assert all(p.returncode == 0 for p in procs), errs
    assert torch.load(f)["x"].numel() == 20000
    assert sorted(x.name for x in tmp_path.iterdir()) == ["last.pt", "ready"]  # no temporary file left behind


def test_resume_of_a_copied_run_writes_only_in_the_copy_with_one_row_per_epoch(interrupted_run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(interrupted_run, copy)
    before = {f: f.read_bytes() for f in interrupted_run.rglob("*") if f.is_file()}
    train.run(resume=str(copy / "weights" / "last.pt"))
    assert _epochs(copy) == [0, 1, 2]  # epoch 1's row from the dead run was replaced, not duplicated
    assert torch.load(copy / "weights" / "last.pt", weights_only=False)["epoch"] == -1  # finished, stripped
    after = {f: f.read_bytes() for f in interrupted_run.rglob("*") if f.is_file()}
    assert after == before  # the original run folder is untouched


def test_resume_refuses_a_checkpoint_from_another_run(interrupted_run, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(interrupted_run, other)
    opt = yaml.safe_load((other / "opt.yaml").read_text())
    opt["run_id"] = "0123456789abcdef"  # this folder belongs to another run than the checkpoint in it
    (other / "opt.yaml").write_text(yaml.safe_dump(opt))
    with pytest.raises(ResumeError, match="saved by run .* belongs to run 0123456789abcdef"):
        train.run(resume=str(other / "weights" / "last.pt"))
    assert _epochs(other) == [0, 1]

    loose = tmp_path / "last.pt"  # a checkpoint outside any run folder
    shutil.copy(interrupted_run / "weights" / "last.pt", loose)
    with pytest.raises(ResumeError, match="not inside a training run folder"):
        train.run(resume=str(loose))


def test_resume_of_a_finished_run_says_so(interrupted_run, tmp_path):
    done = tmp_path / "done"
    shutil.copytree(interrupted_run, done)
    strip_optimizer(done / "weights" / "last.pt", allowed=safe_classes())  # what the end of training does
    with pytest.raises(CheckpointError, match="training is finished .*nothing to resume"):
        train.run(resume=str(done))


def test_trim_results_csv_keeps_earlier_epochs_and_drops_a_torn_line(tmp_path):
    rows = ["epoch,loss", "0,1.0", "1,0.9", "2,0.8", "3,0.7", "4,0"]
    (tmp_path / "results.csv").write_text("\n".join(rows)[:-1])  # the last line torn by a kill mid-write
    assert trim_results_csv(tmp_path, 2) == 3
    assert (tmp_path / "results.csv").read_text().splitlines() == rows[:3]
