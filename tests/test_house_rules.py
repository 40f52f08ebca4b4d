"""House rules that keep the code readable: short functions, short library files, layering, no outside citations."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ("train.py", "val.py", "detect.py", "export.py", "ablate.py")
MAX_FUNCTION, MAX_LIBRARY_FILE = 100, 400


def _py(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def _functions(path: Path) -> list[tuple[str, int]]:
    """``(qualified name, line count)`` of every function and method in a file."""
    out: list[tuple[str, int]] = []

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out.append((f"{prefix}{child.name}", child.end_lineno - child.lineno + 1))
                walk(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                walk(child, f"{prefix}{child.name}.")

    walk(ast.parse(path.read_text()), "")
    return out


@pytest.mark.parametrize("path", [ROOT / s for s in SCRIPTS] + _py("models"), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_function_over_100_lines(path):
    long = [(name, n) for name, n in _functions(path) if n > MAX_FUNCTION]
    assert not long, f"{path.name}: functions over {MAX_FUNCTION} lines (split them into named phases): {long}"


def test_no_library_file_over_400_lines():
    files = _py("models") + _py("utils")
    long = {p.relative_to(ROOT).as_posix(): n for p in files if (n := len(p.read_text().splitlines())) > MAX_LIBRARY_FILE}
    assert not long, f"library files over {MAX_LIBRARY_FILE} lines (split them by concern): {long}"


def test_utils_never_imports_models_or_scripts():
    pattern = re.compile(r"^\s*(from|import)\s+(models|train|val|detect|export|ablate)\b", re.M)
    bad = [p.relative_to(ROOT).as_posix() for p in _py("utils") if pattern.search(p.read_text())]
    assert not bad, f"utils must not import models or the scripts: {bad}"


def test_train_imports_nothing_from_models_attention():
    assert "models.attention" not in (ROOT / "train.py").read_text()


def test_no_citation_of_documents_outside_the_repository():
    pattern = re.compile(r"facts\s§|shared/docs|attention-modules\.md|yolov5-v61-(facts|surface)")
    files = [*_py("models"), *_py("utils"), *_py("tests"), *_py("benchmarks"), *(ROOT / s for s in SCRIPTS)]
    bad = [p.relative_to(ROOT).as_posix() for p in files if p.name != "test_house_rules.py" and pattern.search(p.read_text())]
    assert not bad, f"state the rule instead of citing an outside document: {bad}"
