"""README's attention-module table equals what benchmarks/module_table.py generates from the registry now."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import module_table  # noqa: E402


def test_every_module_names_its_paper_and_year():
    from models import registry

    for cls in registry.classes("attention"):
        paper, year = module_table.paper_of(cls)
        assert paper and year.isdigit() and 2015 <= int(year) <= 2026, (cls.__name__, paper, year)


def test_readme_module_table_is_up_to_date():
    pytest.importorskip("onnxruntime", reason="onnxruntime is not importable: the exportable column cannot be checked")
    ok, new, old = module_table.check()
    assert ok, ("README.md's module table is out of date; run python benchmarks/module_table.py --write\n"
                f"regenerated:\n{new}\ncommitted:\n{old}")
