"""The attention-module table of the README, generated from the registry so it cannot drift.

    python benchmarks/module_table.py            # print the table (times every module on this CPU)
    python benchmarks/module_table.py --write    # measure and write it into README.md between the markers
    python benchmarks/module_table.py --check    # regenerate every column but the timing; exit 1 if README differs

One row per registered attention class: yaml names (class name first, then aliases), the paper (title, year,
arXiv id or venue, read from the module file's docstring), parameters at C = 256, GFLOPs of one forward of a
(1, 256, 20, 20) map (thop plus the module's own functional operations), CPU latency of that forward in ms (batch 1,
one thread, fused, median of interleaved rounds; only ``--write`` and the plain run measure it, ``--check`` keeps
the committed column), whether ``.half()`` is safe (finite and within 2% of fp32 on 1×1 and 20×20 maps of std 1 and
100) and whether it exports (ONNX opset 12 with dynamic H, W; ONNX Runtime equal to PyTorch within 1e-4 at two
sizes).
"""

from __future__ import annotations

import argparse
import copy
import io
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import models.attention  # noqa: E402,F401  (registers every module)
from models import registry  # noqa: E402
from utils.flops import count_macs  # noqa: E402
from utils.profiling import interleaved_median_ms  # noqa: E402

README = ROOT / "README.md"
START, END = "<!-- module-table:start -->", "<!-- module-table:end -->"
C, HW = 256, (20, 20)
HEADER = ("| module (yaml names) | paper | year | params (C=256) | GFLOPs (20×20) | CPU ms (20×20) | fp16 safe | "
          "exportable |\n| --- | --- | ---: | ---: | ---: | ---: | :---: | :---: |")


@dataclass
class Row:
    """One table row; ``ms`` is None until measured."""

    names: str
    paper: str
    year: str
    params: int
    gflops: float
    ms: float | None
    fp16: bool
    onnx: bool

    def cells(self, ms: str | None = None) -> str:
        ms = ms if ms is not None else ("—" if self.ms is None else f"{self.ms:.2f}")
        yes = lambda b: "yes" if b else "no"  # noqa: E731
        return (f"| {self.names} | {self.paper} | {self.year} | {self.params:,} | {self.gflops:.4f} | {ms} | "
                f"{yes(self.fp16)} | {yes(self.onnx)} |")


def paper_of(cls: type) -> tuple[str, str]:
    """``(paper cell, year)`` from the docstring of the module file defining ``cls``: the quoted title, the first
    year after it, and the arXiv id (linked) or, without one, the venue words before the year."""
    for doc in (sys.modules[cls.__module__].__doc__, cls.__doc__):  # the file's docstring first, then the class's
        doc = " ".join((doc or "").split())
        title = re.search(r"[\"“]([^\"”]+)[\"”]", doc)
        if title:
            break
    else:
        raise ValueError(f"{cls.__module__}: its docstrings name no paper title in quotes")
    rest = doc[title.end():]
    year = re.search(r"\b(19|20)\d\d\b", rest)
    arxiv = re.search(r"arXiv:? ?(\d{4}\.\d{4,5})", rest)
    t = title.group(1).rstrip(",. ")
    if arxiv:
        return f"[{t}](https://arxiv.org/abs/{arxiv.group(1)})", year.group(0) if year else "?"
    venue = re.search(r",\s*([^,\"]*?)\s*(?:\(|\b(?:19|20)\d\d\b)", rest)
    return f"{t} ({venue.group(1).strip()})" if venue and venue.group(1).strip() else t, year.group(0) if year else "?"


def yaml_names(cls: type) -> str:
    aliases = [s.name for s in registry.specs("attention") if s.cls is cls and s.name != cls.__name__]
    return ", ".join(f"`{n}`" for n in [cls.__name__, *aliases])


def fp16_safe(m: nn.Module) -> bool:
    """Finite and within 2% of fp32 (relative to the output scale) under ``.half()``."""
    h = copy.deepcopy(m).half()
    g = torch.Generator().manual_seed(0)
    for hw in ((1, 1), HW):
        for std in (1.0, 100.0):
            x = torch.randn(2, C, *hw, generator=g) * std
            with torch.no_grad():
                ref, y = m(x), h(x.half()).float()
            if not (torch.isfinite(y).all() and (y - ref).abs().max() <= 2e-2 * ref.abs().max() + 1e-3 * std):
                return False
    return True


def exportable(m: nn.Module) -> bool:
    """ONNX opset 12 export with dynamic H, W, run by ONNX Runtime at two sizes, equal to PyTorch within 1e-4."""
    try:
        import onnxruntime as ort

        buf = io.BytesIO()
        axes = {0: "batch", 2: "height", 3: "width"}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(m, (torch.randn(1, C, *HW),), buf, opset_version=12, input_names=["images"],
                              output_names=["output"], dynamic_axes={"images": axes, "output": axes}, dynamo=False)
        sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
        g = torch.Generator().manual_seed(0)
        for shape in ((1, C, *HW), (2, C, 13, 7)):
            x = torch.randn(*shape, generator=g)
            with torch.no_grad():
                ref = m(x)
            if not torch.allclose(torch.from_numpy(sess.run(None, {"images": x.numpy()})[0]), ref, rtol=1e-4,
                                  atol=1e-4):
                return False
        return True
    except Exception:  # an export error or a missing onnxruntime: not shown as exportable
        return False


def build(cls: type) -> nn.Module:
    """The module at C = 256 with defaults, seeded, with non-trivial BatchNorm statistics, in eval mode."""
    torch.manual_seed(0)
    m = cls(C)
    m.train()
    with torch.no_grad():
        m(torch.randn(4, C, *HW) * 2 + 0.5)
    return m.eval()


def rows(measure: bool = True, threads: int = 1) -> list[Row]:
    """One :class:`Row` per registered attention class, by class name; latency only when ``measure``."""
    out, calls = [], {}
    x = torch.zeros(1, C, *HW)
    for cls in sorted(registry.classes("attention"), key=lambda c: c.__name__.lower()):
        m = build(cls)
        paper, year = paper_of(cls)
        gflops = count_macs(m, (x,)) * 2 / 1e9
        out.append(Row(yaml_names(cls), paper, year, sum(p.numel() for p in m.parameters()), gflops, None,
                       fp16_safe(m), exportable(m)))
        fused = copy.deepcopy(m)
        for sub in fused.modules():
            if callable(getattr(sub, "fuse_layers", None)):
                sub.fuse_layers()
        calls[len(out) - 1] = lambda f=fused: f(x)
    if measure:
        old = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            with torch.no_grad():
                ms = interleaved_median_ms(calls, warmup=5, runs=20, rounds=3, pause=0.05)
        finally:
            torch.set_num_threads(old)
        for k, r in enumerate(out):
            r.ms = ms[k]
    return out


def table(rs: list[Row], ms_cells: dict[str, str] | None = None) -> str:
    """The markdown table; ``ms_cells`` (names -> cell) supplies latency cells not measured now."""
    lines = [HEADER]
    for r in rs:
        lines.append(r.cells(None if ms_cells is None else ms_cells.get(r.names, "—")))
    return "\n".join(lines)


def committed() -> tuple[str, str, str]:
    """``(text before, table, text after)`` of README.md around the markers."""
    text = README.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{README}: the markers {START} and {END} are missing")
    head, rest = text.split(START, 1)
    body, tail = rest.split(END, 1)
    return head, body.strip("\n"), tail


def committed_ms(body: str) -> dict[str, str]:
    """Latency cells of the committed table, by the yaml-names cell."""
    out = {}
    for line in body.splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 8:
            out[cells[0]] = cells[5]
    return out


def check() -> tuple[bool, str, str]:
    """``(equal, regenerated table, committed table)``, the latency column taken from the committed table."""
    _, body, _ = committed()
    new = table(rows(measure=False), committed_ms(body))
    return new == body, new, body


def parse_opt() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="measure and write the table into README.md")
    mode.add_argument("--check", action="store_true", help="exit 1 if README.md's table is out of date")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the latency column")
    return parser.parse_args()


def main(opt: argparse.Namespace) -> int:
    if opt.check:
        ok, new, old = check()
        if not ok:
            import difflib

            sys.stdout.write("\n".join(difflib.unified_diff(old.splitlines(), new.splitlines(), "README.md",
                                                            "regenerated", lineterm="")) + "\n")
            sys.stdout.write("README.md's module table is out of date: python benchmarks/module_table.py --write\n")
        return 0 if ok else 1
    t = table(rows(measure=True, threads=opt.threads))
    if opt.write:
        head, _, tail = committed()
        README.write_text(f"{head}{START}\n{t}\n{END}{tail}")
    sys.stdout.write(t + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_opt()))
