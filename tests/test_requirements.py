"""The dependency floor: requirements.txt states the torch the code needs, and an older torch fails at import."""

from __future__ import annotations

import re

import pytest
import torch

import utils
from tests.conftest import ROOT


def _floor(name: str) -> tuple[int, ...]:
    text = (ROOT / "requirements.txt").read_text()
    m = re.search(rf"^{name}>=([\d.]+)", text, re.M)
    assert m, f"requirements.txt has no '{name}>=' floor"
    return tuple(int(x) for x in m[1].split("."))


def test_requirements_state_the_torch_floor_the_code_checks():
    assert _floor("torch")[:2] == utils.TORCH_MIN == (2, 6)
    assert _floor("torchvision")[:2] == (0, 21)
    assert utils._version_tuple(torch.__version__)[:2] >= utils.TORCH_MIN  # what CI installs is on or above it


def test_an_older_torch_fails_with_the_version_it_needs():
    with pytest.raises(ImportError, match=r"needs torch>=2\.6.*found torch 2\.5\.1.*pip install -r requirements"):
        utils.check_torch_version("2.5.1+cu121")
    utils.check_torch_version("2.6.0")  # the floor itself is fine
    assert utils._version_tuple("2.10.0.dev20250101+cpu") == (2, 10, 0)
