"""Edit model yamls by layer: insert, move or remove a layer with every ``from`` index renumbered.

YOLOv5 layers refer to each other by index (``[[-1, 6], 1, Concat, [1]]``, ``[[17, 20, 23], 1, Detect, ...]``), so
adding one attention layer by hand means renumbering every later absolute index. This tool does it, keeping the
file's comments and layout, and renumbering the index comments (``# 17 (P3/8-small)``) too::

    python models/yaml_edit.py insert --cfg models/yolov5s.yaml --after 23 --module SimAM --out yolov5s-SimAM23.yaml
    python models/yaml_edit.py insert --cfg models/yolov5s.yaml --at 24 --module SEAttention --args 1024 16 --out se.yaml
    python models/yaml_edit.py remove --cfg models/yolov5s-NAM.yaml --at 24 --out yolov5s-again.yaml
    python models/yaml_edit.py move   --cfg models/yolov5s-NAM.yaml --at 24 --to 18 --out nam18.yaml

Semantics (``p`` is the new layer's index; ``--after N`` is ``--at N+1``):

* **insert** puts the row at index ``p``, reading ``source`` (default ``-1``, layer ``p-1``). With ``rewire`` (the
  default) every later layer that read the source now reads the new layer: the new layer *wraps* its source, so an
  attention layer inserted after layer 23 of yolov5s feeds Detect (``[17, 20, 24]``) and one inserted after layer 17
  feeds both Detect and layer 18. Every absolute index ``>= p`` moves up by one; relative indices (``-1``, ``-2``) are
  kept relative and still point at the same layer.
* **remove** deletes layer ``p``; whatever read it now reads the removed layer's (single) input, and later indices
  move down by one. ``remove`` after ``insert`` at the same index gives the original text back.
* **move** is remove then insert at the target position (index in the final list) reading the layer before it; it is
  meant for single-input layers such as attention modules.

Layers are numbered as ``parse_model`` numbers them: backbone rows first, then head rows, whichever section comes
first in the text. The new row joins the section (backbone or head) of the layer before it. Files must have one layer
row per line (all official yamls do); other layouts raise a clear error.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

import models.attention  # noqa: E402,F401  (registers the attention modules)
from models.graph import LayerGraph, attention_insertions, expand_attention, movable_args  # noqa: E402
from models.registry import ModelConfigError  # noqa: E402
from models.yolo import Model  # noqa: E402
from utils.general import LOGGER, run_cli  # noqa: E402

SECTIONS = ("backbone", "head")
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_INDEX_COMMENT = re.compile(r"^(#\s*)(\d+)(?!\d)")


@dataclass
class _Row:
    """One layer row of the yaml text: where it sits and its parsed value."""

    line: int  # line number in the text
    start: int  # column where the row's '[' starts
    end: int  # column after the row's closing ']'
    section: str
    value: list  # [from, number, module, args]


def _code_and_comment(line: str) -> tuple[str, str]:
    """Split a line into code and its ``#`` comment (a ``#`` inside quotes is code)."""
    quote = None
    for k, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#":
            return line[:k], line[k:]
    return line, ""


def _scan(lines: list[str], file: str) -> list[_Row]:
    """Find every layer row of the backbone and head sections, one per line."""
    rows: list[_Row] = []
    section, depth = None, 0
    for ln, line in enumerate(lines):
        code, _ = _code_and_comment(line)
        m = re.match(r"^(\w+)\s*:", code) if depth == 0 else None  # a top-level key starts or ends a section
        if m:
            section = m.group(1) if m.group(1) in SECTIONS else None
        if section is None:
            continue
        k, row_start, found = m.end() if m else 0, None, 0
        while k < len(code):
            ch = code[k]
            if ch in "'\"":
                k = code.index(ch, k + 1) if ch in code[k + 1:] else len(code)
            elif ch == "[":
                depth += 1
                if depth == 2:
                    row_start = k
            elif ch == "]":
                depth -= 1
                if depth == 1 and row_start is not None:
                    found += 1
                    if found > 1:
                        raise ModelConfigError(f"{file}:{ln + 1}: more than one layer row on a line; "
                                               "yaml_edit needs one row per line")
                    text = code[row_start:k + 1]
                    try:
                        value = yaml.load(text, Loader=_LOADER)
                    except yaml.YAMLError as e:
                        raise ModelConfigError(f"{file}:{ln + 1}: cannot parse layer row {text!r}: {e}") from None
                    if not (isinstance(value, list) and len(value) == 4):
                        raise ModelConfigError(f"{file}:{ln + 1}: a layer row is [from, number, module, args], "
                                               f"got {text!r}")
                    rows.append(_Row(ln, row_start, k + 1, section, value))
                    row_start = None
                if depth < 0:
                    raise ModelConfigError(f"{file}:{ln + 1}: unbalanced ']'")
            k += 1
        if depth >= 2:
            raise ModelConfigError(f"{file}:{ln + 1}: a layer row continues on the next line; "
                                   "yaml_edit needs one row per line")
    return rows


def _fmt(v) -> str:
    """Format a yaml value in the one-line style of the official yamls (``[-1, 1, Conv, [64, 6, 2, 2]]``)."""
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_fmt(x)}" for k, x in v.items()) + "}"
    if isinstance(v, str):  # plain names (Conv, nn.Upsample, nc, None...) unquoted, other strings quoted
        return v if re.fullmatch(r"[A-Za-z_][\w.]*", v) else repr(v)
    return str(v)  # numbers, booleans, None


class _Doc:
    """A yaml text with its layer rows located; edits keep every other character."""

    def __init__(self, text: str, file: str = "yaml"):
        self.file = file
        self.lines = text.splitlines()
        self.trailing_newline = text.endswith("\n")
        # parse_model numbers the backbone rows first, then the head rows, whichever section comes first in the text
        self.rows = sorted(_scan(self.lines, file), key=lambda r: SECTIONS.index(r.section))
        try:
            d = yaml.load(text, Loader=_LOADER)
        except yaml.YAMLError as e:
            raise ModelConfigError(f"{file}: not valid yaml: {e}") from None
        rows = [*(d.get("backbone") or []), *(d.get("head") or [])] if isinstance(d, dict) else None
        if [r.value for r in self.rows] != rows:
            raise ModelConfigError(f"{file}: cannot edit this layout: the layer rows found in the text differ from the "
                                   "yaml's backbone + head (write each of 'backbone:' and 'head:' once, at column 0)")
        if not self.rows:
            raise ModelConfigError(f"{file}: no backbone/head layer rows found")

    def text(self) -> str:
        return "\n".join(self.lines) + ("\n" if self.trailing_newline else "")

    @property
    def graph(self) -> LayerGraph:
        """The layer graph of the text's rows (all index arithmetic is the graph's)."""
        d = yaml.load(self.text(), Loader=_LOADER)
        if d.get("attention") is not None:
            raise ModelConfigError(f"{self.file}: has an 'attention:' key, whose indices an edit would shift; write "
                                   f"its rows first: python models/yaml_edit.py expand {self.file} plain.yaml")
        return LayerGraph.from_dict(d, file=self.file)

    # ---------------------------------------------------------------- line editing
    def _set_row(self, k: int, value: list, old_i: int) -> None:
        """Write row ``k``'s new ``from`` field into its line and renumber an index comment equal to ``old_i``."""
        r = self.rows[k]
        code, comment = _code_and_comment(self.lines[r.line])
        old_text = code[r.start:r.end]
        f_new = _fmt(value[0])
        # replace only the 'from' field so the rest of the row keeps its spelling
        m = re.match(r"\[\s*(\[[^\]]*\]|-?\d+)", old_text)
        new_text = (old_text[:m.start(1)] + f_new + old_text[m.end(1):]) if m else _fmt(value)
        if old_i != k:
            comment = _INDEX_COMMENT.sub(lambda mm: f"{mm.group(1)}{k}" if int(mm.group(2)) == old_i
                                         else mm.group(0), comment)
        self.lines[r.line] = code[:r.start] + new_text + code[r.end:] + comment
        r.end = r.start + len(new_text)
        r.value = value

    def _split(self, r: _Row) -> tuple[str, str, str, str]:
        """(prefix, row text, suffix, comment) of a row line; suffix is what follows the row in code."""
        code, comment = _code_and_comment(self.lines[r.line])
        return code[:r.start], code[r.start:r.end], code[r.end:], comment


# -------------------------------------------------------------------------------------------- public API
def _write_froms(doc: _Doc, graph: LayerGraph, old_of_new: list[int | None]) -> None:
    """Write every surviving row's ``from`` as the edited ``graph`` has it, renumbering its index comment; the new
    row (``old_of_new`` entry None) is already written."""
    for i, old in enumerate(old_of_new):
        if old is not None:
            doc._set_row(i, graph[i].row, old)


def insert(text: str, index: int, module: str, args: list | None = None, number: int = 1, source: int | list = -1,
           rewire: bool = True, comment: str | None = None, file: str = "yaml") -> str:
    """Insert a layer row so that it becomes layer ``index``; return the new yaml text.

    Args:
        text: the model yaml text.
        index: the new layer's index (``0..len(layers)-1``; Detect stays last).
        module: the registered module name, e.g. ``"SimAM"``.
        args: the yaml arguments (``[]`` by default).
        number: the repeat count.
        source: the ``from`` of the new row, relative or absolute, in the *original* numbering for absolute indices.
        rewire: let every later reader of ``source`` (a single index) read the new layer instead.
        comment: the row's comment; default ``"# <index>"``.
        file: name used in error messages.

    Raises:
        ModelConfigError: bad index, a row that does not build there, or a text layout this tool cannot edit.
    """
    doc = _Doc(text, file)
    n = len(doc.rows)
    graph, _ = doc.graph.insert(index, module, args, number=number, source=source, rewire=rewire)
    value = graph[index].row
    note = comment or f"# {index}"
    if index > 0:  # the new line goes after row index-1, in its section
        prev = doc.rows[index - 1]
        prefix, row_text, suffix, cmt = doc._split(prev)
        core = suffix.rstrip()
        indent = " " * len(prefix)
        doc.lines[prev.line] = prefix + row_text + "," + suffix[len(core):] + cmt
        new_line = indent + _fmt(value) + core + "  " + note
        at_line, section = prev.line + 1, prev.section
    else:  # before row 0, which hands its '[' to the new line
        first = doc.rows[0]
        prefix, row_text, suffix, cmt = doc._split(first)
        indent = " " * len(prefix)
        doc.lines[first.line] = indent + row_text + suffix + cmt
        new_line = prefix + _fmt(value) + ",  " + note
        at_line, section = first.line, first.section
    doc.lines.insert(at_line, new_line)
    for r in doc.rows:
        if r.line >= at_line:
            r.line += 1
    if index == 0:  # row 0 lost its '[' prefix to the new line: same width, so only its line moved
        doc.rows[0].start = len(prefix)
        doc.rows[0].end = len(prefix) + len(row_text)
    start = len(indent) if index > 0 else len(prefix)
    doc.rows.insert(index, _Row(at_line, start, start + len(_fmt(value)), section, value))
    _write_froms(doc, graph, list(range(index)) + [None] + list(range(index, n)))
    return doc.text()


def insert_after(text: str, after: int, module: str, args: list | None = None, **kwargs) -> str:
    """:func:`insert` with the new layer right after layer ``after`` (index ``after + 1``)."""
    return insert(text, after + 1, module, args, **kwargs)


def remove(text: str, index: int, file: str = "yaml") -> str:
    """Remove layer ``index``; its readers read its input instead. Returns the new yaml text.

    Raises:
        ModelConfigError: out of range, the last layer (Detect), or a multi-input layer that others read.
    """
    doc = _Doc(text, file)
    n = len(doc.rows)
    graph, _ = doc.graph.remove(index)
    r = doc.rows[index]
    prefix, _, suffix, _ = doc._split(r)
    if prefix.strip() and index + 1 < n and doc.rows[index + 1].section == r.section:  # first row: next inherits '['
        nxt = doc.rows[index + 1]
        p2, t2, s2, c2 = doc._split(nxt)
        doc.lines[nxt.line] = prefix + t2 + s2 + c2
        nxt.start, nxt.end = len(prefix), len(prefix) + len(t2)
    if suffix.strip(" ,") and index > 0 and doc.rows[index - 1].section == r.section:  # last row: prev gets ']'
        prv = doc.rows[index - 1]
        p0, t0, s0, c0 = doc._split(prv)
        doc.lines[prv.line] = p0 + t0 + suffix.rstrip() + s0[len(s0.rstrip()):] + c0
    del doc.lines[r.line]
    for x in doc.rows:
        if x.line > r.line:
            x.line -= 1
    del doc.rows[index]
    _write_froms(doc, graph, [i for i in range(n) if i != index])
    return doc.text()


def move(text: str, index: int, to: int, file: str = "yaml") -> str:
    """Move the single-input layer ``index`` to position ``to`` (its index afterwards), wrapping the layer before it."""
    doc = _Doc(text, file)
    doc.graph.move(index, to)  # checks the indices and the layer
    layer = doc.graph[index]
    args = movable_args(layer)
    if args != layer.args:
        LOGGER.info(f"move: dropping {layer.name}'s nominal channel argument {layer.args[0]} (the new input decides)")
    _, _, _, cmt = doc._split(doc.rows[index])
    cmt = _INDEX_COMMENT.sub(lambda m: f"{m.group(1)}{to}", cmt) or None
    return insert(remove(text, index, file), to, layer.name, args, number=layer.n, comment=cmt, file=file)


def expand(text: str, file: str = "yaml") -> str:
    """The yaml text with its ``attention:`` placements written as plain rows (comments kept), for stock YOLOv5.

    The placements are replayed as :func:`insert` edits in the order :func:`models.graph.expand_attention` makes
    them, so the rows equal the ones a model built from the original text uses.
    """
    d = yaml.load(text, Loader=_LOADER)
    if not isinstance(d, dict) or d.get("attention") is None:
        return text
    lines, out, skip = text.splitlines(), [], False
    for line in lines:  # drop the top-level 'attention:' block: up to the next unindented line (a comment too)
        if line.strip() and not line[0].isspace():
            skip = re.match(r"^attention\s*:", line) is not None
        if not skip:
            out.append(line)
    new = "\n".join(out).rstrip("\n") + ("\n" if text.endswith("\n") else "")
    for p in attention_insertions(d, file):
        new = insert(new, p.index, p.module, p.args, number=p.number, comment=f"# {p.index} {p.module} (attention: "
                     f"after {p.after})", file=file)
    expected = expand_attention(d, file)
    if layer_rows(new, file) != expected["backbone"] + expected["head"]:
        raise ModelConfigError(f"{file}: cannot expand this layout; the 'attention:' block must be one top-level key")
    return new


def layer_rows(text: str, file: str = "yaml") -> list[list]:
    """The ``[from, number, module, args]`` rows of a yaml text, backbone then head."""
    return [r.value for r in _Doc(text, file).rows]


# -------------------------------------------------------------------------------------------- CLI
def parse_opt(known: bool = False) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="insert / move / remove model yaml layers with re-indexing; expand "
                                     "an 'attention:' key into plain rows")
    parser.add_argument("action", choices=["insert", "move", "remove", "expand"])
    parser.add_argument("paths", nargs="*", help="expand: IN.yaml [OUT.yaml] (same as --cfg IN --out OUT)")
    parser.add_argument("--cfg", help="model yaml to edit")
    parser.add_argument("--at", type=int, help="insert: the new layer's index; move/remove: the layer's index")
    parser.add_argument("--after", type=int, help="insert: put the new layer right after this layer (= --at N+1)")
    parser.add_argument("--to", type=int, help="move: the layer's index afterwards")
    parser.add_argument("--module", help="insert: registered module name, e.g. SimAM")
    parser.add_argument("--args", nargs="*", default=[], help="insert: yaml arguments, each parsed as yaml (1024 0.1)")
    parser.add_argument("--number", type=int, default=1, help="insert: repeat count")
    parser.add_argument("--no-rewire", action="store_true", help="insert: do not redirect the source's readers")
    parser.add_argument("--out", help="output yaml (default: print to stdout)")
    return parser.parse_known_args()[0] if known else parser.parse_args()


def run(action: str, cfg: str | None = None, at: int | None = None, after: int | None = None, to: int | None = None,
        module: str | None = None, args: list | None = None, number: int = 1, no_rewire: bool = False,
        out: str | None = None, paths: list[str] | None = None) -> str:
    """Apply one edit to ``cfg`` and write (or return) the result; the new yaml is checked by building it."""
    paths = list(paths or [])
    if len(paths) > 2 or (paths and action != "expand"):
        raise SystemExit(f"{action}: unexpected arguments {paths}" if action != "expand" else
                         "expand takes IN.yaml [OUT.yaml]")
    cfg, out = (paths + [None])[0] if paths else cfg, paths[1] if len(paths) == 2 else out
    if not cfg:
        raise SystemExit(f"{action} needs a model yaml (--cfg)")
    text = Path(cfg).read_text()
    args = [yaml.safe_load(str(a)) for a in (args or [])]
    if action == "insert":
        if module is None or (at is None) == (after is None):
            raise SystemExit("insert needs --module and exactly one of --at / --after")
        new = insert(text, at if at is not None else after + 1, module, args, number=number, rewire=not no_rewire,
                     file=cfg)
    elif action == "remove":
        if at is None:
            raise SystemExit("remove needs --at")
        new = remove(text, at, file=cfg)
    elif action == "move":
        if at is None or to is None:
            raise SystemExit("move needs --at and --to")
        new = move(text, at, to, file=cfg)
    else:
        new = expand(text, file=cfg)
    try:
        Model(yaml.safe_load(new))  # build it: a yaml that does not build is not written
    except ModelConfigError as e:
        raise ModelConfigError(f"{cfg}: the yaml after '{action}' does not build, nothing written: "
                               f"{str(e).removeprefix('model dict: ')}") from None
    if out:
        Path(out).write_text(new)
        LOGGER.info(f"{action}: wrote {out}")
    else:
        sys.stdout.write(new)
    return new


def main(opt: argparse.Namespace) -> None:
    run(**vars(opt))


if __name__ == "__main__":
    from models.yaml_edit import main as _main, parse_opt as _parse_opt  # the importable module, not __main__

    run_cli(_main, _parse_opt, "yaml_edit.py")
