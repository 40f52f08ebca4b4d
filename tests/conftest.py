"""Shared test fixtures: paths into ../shared (skipped with a reason when absent) and a log capture."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
FIXTURES = SHARED / "fixtures" / "yolov5-v61"


def benchmark_script(name: str, module_name: str | None = None):
    """``benchmarks/<name>.py`` imported as a module (benchmarks/ is a folder of scripts, not a package)."""
    import importlib.util

    file = ROOT / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(module_name or f"{name}_benchmark", file)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


if os.environ.get("PYTEST_XDIST_WORKER"):  # pytest -n 2: one thread per worker, and per subprocess it starts
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
else:
    torch.set_num_threads(2)
os.environ.setdefault("WANDB_MODE", "disabled")  # where wandb is installed, training tests log nowhere


@pytest.fixture
def fixtures_dir() -> Path:
    """``../shared/fixtures/yolov5-v61``; the test is skipped when it is not there."""
    if not FIXTURES.is_dir():
        pytest.skip(f"YOLOv5 v6.1 fixtures not found at {FIXTURES} (../shared is absent)")
    return FIXTURES


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (images/, videos/, bccd/); the test is skipped when it is not there."""
    d = SHARED / "data"
    if not (d / "images").is_dir():
        pytest.skip(f"shared test data not found at {d} (../shared is absent)")
    return d


class _ListHandler(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.extend(record.getMessage().splitlines())


@pytest.fixture
def yolo_log():
    """Lines logged to the project logger 'yolov5' during the test."""
    h = _ListHandler()
    log = logging.getLogger("yolov5")
    log.addHandler(h)
    yield h.lines
    log.removeHandler(h)


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a test module: on 2 shared cores, 2 threads spin against a background job and run
    ~20x slower. Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A dataset yaml of 32 train / 16 val synthetic images of ~96 px (5 shape classes), made once per session."""
    from utils.synthetic import tiny_dataset

    return tiny_dataset(tmp_path_factory.mktemp("tiny"))
