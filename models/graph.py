"""The layer graph of a model yaml: every layer's absolute inputs, channels and registry spec, without building it.

A YOLOv5 model yaml is a list of rows ``[from, number, module, args]`` in which ``from`` names earlier layers by
relative (``-1``) or absolute (``17``) index. :class:`LayerGraph` resolves those rows once: for every layer it knows
the absolute indices it reads, the module's registry entry, the constructor arguments its channel rule gives and its
input and output channels. Everything that reasons about "module M at position i" asks the graph:

* ``parse_model`` builds the modules from it (``models/yolo.py``);
* :meth:`LayerGraph.insert`, :meth:`~LayerGraph.remove` and :meth:`~LayerGraph.move` return the edited graph and the
  mapping ``old index -> new index``, used by ``models/yaml_edit.py`` (text edits), by the ``attention:`` key, by
  weight transfer (``models/transfer.py``) and by ``ablate.py``;
* :meth:`LayerGraph.sites` lists the layers of one kind (``"attention"``) for the visualisers and benchmarks.

Editing rules (``p`` is the index of the new or removed layer):

* **insert** puts a row at index ``p`` reading ``source`` (default ``-1``, layer ``p-1``). With ``rewire`` (the
  default) every later layer that read the source reads the new layer instead: the new layer *wraps* its source.
  Absolute indices ``>= p`` move up by one; relative ones stay relative and keep pointing at the same layer.
* **remove** deletes layer ``p``; its readers read its (single) input instead; later indices move down by one.
* **move** is remove, then insert at the target index (its index afterwards) reading the layer before it.

The optional model-yaml key ``attention:`` places modules by the plain rows' indices, e.g.
``attention: [[SEAttention, [], {after: [17, 20, 23]}]]``; :func:`expand_attention` turns it into plain rows.
"""

from __future__ import annotations

from copy import deepcopy
from dataclasses import dataclass
from typing import Any, Iterator


from models.registry import ModelConfigError, check_model_dict, resolve
from models.rows import Layer, is_head, resolve_row, row_error

SECTIONS = ("backbone", "head")


class LayerGraph:
    """The resolved layers of a model dict (see the module docstring).

    Build with :meth:`from_dict`; the graph never changes, edits return a new one.

    Attributes:
        d: the model dict the graph was built from, with any ``attention:`` key expanded into rows.
        layers: the :class:`Layer` records, in index order.
        ch: the input (image) channels.
        file: where the dict came from, for error messages.
    """

    def __init__(self, d: dict, layers: list[Layer], ch: int, file: str) -> None:
        self.d, self.layers, self.ch, self.file = d, layers, ch, file
        self.origins: list[int | Placement] = list(range(len(layers)))  # see layer_origins

    def placed_by(self, i: int) -> str:
        """`` (placed by attention entry k: Module after layer a)`` for a layer an ``attention:`` entry made, else
        ``""`` (for error messages: the user's file has no row ``i``)."""
        o = self.origins[i] if i < len(self.origins) else i
        return f" (placed by attention entry {o.entry}: {o.module} after layer {o.after})" if isinstance(o, Placement) else ""

    # ------------------------------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, d: dict, ch: int | None = None, file: str | None = None) -> LayerGraph:
        """Resolve every row of a model dict (``attention:`` expanded first).

        Args:
            d: the model dict (nc, depth_multiple, width_multiple, anchors, backbone, head[, attention, ch]).
            ch: input channels (default ``d["ch"]`` or 3).
            file: where the dict came from, for error messages.

        Raises:
            ModelConfigError: naming the file, the layer index and what is wrong.
        """
        src = file or "model dict"
        placed = isinstance(d, dict) and d.get("attention") is not None
        d, origins = _expand(d, src) if placed else (deepcopy(d), None)
        ch = ch if ch is not None else (d.get("ch", 3) if isinstance(d, dict) else 3)
        try:
            rows = check_model_dict(d, ch)
        except ModelConfigError as e:
            raise ModelConfigError(f"{src}: {e}") from None
        last = rows[-1][2] if isinstance(rows[-1], list) and len(rows[-1]) == 4 else None
        try:
            head = is_head(resolve(last))
        except (KeyError, TypeError):  # malformed or unknown: reported at its row
            head = True
        if not head:
            raise row_error(src, len(rows) - 1, rows[-1], f"the last layer must be Detect, got {last}")
        n_backbone = len(d["backbone"] or [])
        layers: list[Layer] = []
        for i, row in enumerate(rows):
            section = SECTIONS[0] if i < n_backbone else SECTIONS[1]
            layers.append(resolve_row(i, row, len(rows), ch, [x.c_out for x in layers], d, src, section))
        graph = cls(d, layers, ch, src)
        graph.origins = origins or list(range(len(layers)))
        return graph

    def to_dict(self) -> dict:
        """The plain model dict (rows only, no ``attention:`` key), as stock YOLOv5 reads it."""
        d = {k: deepcopy(v) for k, v in self.d.items() if k not in ("backbone", "head", "attention")}
        for s in SECTIONS:
            d[s] = [x.row for x in self.layers if x.section == s]
        return d

    # ------------------------------------------------------------------------------------------ queries
    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def __getitem__(self, i: int) -> Layer:
        return self.layers[i]

    def sites(self, kind: str = "attention") -> list[Layer]:
        """The layers whose registry kind is ``kind`` (``"attention"`` by default), in index order."""
        return [x for x in self.layers if x.kind == kind]

    @property
    def save(self) -> list[int]:
        """Indices of the layers whose outputs are kept during a forward: every ``from`` entry other than ``-1``
        (relative entries resolved), sorted, as ``Model.save`` lists them."""
        return sorted(x % layer.index for layer in self.layers
                      for x in (layer.f if isinstance(layer.f, list) else [layer.f]) if x != -1)

    def readers(self, i: int) -> list[int]:
        """The layers that read layer ``i``."""
        return [x.index for x in self.layers if i in x.froms and x.index > i]

    # ------------------------------------------------------------------------------------------ edits
    def _rebuild(self, rows: list[list], sections: list[str]) -> LayerGraph:
        d = {k: deepcopy(v) for k, v in self.d.items() if k not in ("backbone", "head", "attention")}
        for s in SECTIONS:
            d[s] = [r for r, rs in zip(rows, sections) if rs == s]
        return LayerGraph.from_dict(d, self.ch, self.file)

    def _rows_from(self, froms: list[list[int] | None], order: list[int | None], new: list | None) -> list[list]:
        """Rows in the new order (``order[k]``: old index of new row k, None for ``new``), with ``froms`` (absolute
        inputs per new row, new numbering) written relative where the old row was relative."""
        rows = []
        for k, (old, src) in enumerate(zip(order, froms)):
            if old is None:
                rows.append(new)
                continue
            layer = self.layers[old]
            written = layer.f if isinstance(layer.f, list) else [layer.f]
            fl = [a - k if w < 0 else a for a, w in zip(src, written)]
            rows.append([fl if isinstance(layer.f, list) else fl[0], layer.n, layer.name, deepcopy(layer.args)])
        return rows

    def insert(self, index: int, module: str, args: list | None = None, number: int = 1, source: int | list = -1,
               rewire: bool = True) -> tuple[LayerGraph, dict[int, int]]:
        """Insert ``[source, number, module, args]`` as layer ``index``.

        Args:
            index: the new layer's index, ``0..len-1`` (Detect stays last).
            module: a registered module name.
            args: the yaml arguments (``[]`` by default).
            number: the repeat count.
            source: the new row's ``from``; absolute entries use the *old* numbering.
            rewire: every later reader of a single ``source`` reads the new layer instead.

        Returns:
            ``(new graph, {old index: new index})``.

        Raises:
            ModelConfigError: an index out of range, a source that is not earlier, or a row that does not build.
        """
        n = len(self.layers)
        if not 0 <= index < n:
            raise ModelConfigError(f"{self.file}: insert index {index} is out of range (0..{n - 1}: Detect must "
                                   "stay last)")
        if index == 0 and not rewire:
            raise ModelConfigError(f"{self.file}: a layer inserted at index 0 without rewiring would leave layer 1 "
                                   "reading the image, which only layer 0 can read")
        src_abs = [index + x if x < 0 else x for x in (source if isinstance(source, list) else [source])]
        if any(a >= index or a < -1 for a in src_abs):
            raise ModelConfigError(f"{self.file}: source {source} must be an earlier layer than {index}")
        wrapped = src_abs[0] if rewire and len(src_abs) == 1 else None
        shift = lambda a: a + 1 if a >= index else a  # noqa: E731  old absolute -> new absolute
        froms = [[index if (wrapped is not None and a == wrapped and x.index >= index) else shift(a) for a in x.froms]
                 for x in self.layers]
        froms.insert(index, None)
        order = [*range(index), None, *range(index, n)]
        new = [deepcopy(source), number, module, list(args or [])]
        rows = self._rows_from(froms, order, new)
        sections = [x.section for x in self.layers]
        sections.insert(index, self.layers[index - 1].section if index else self.layers[0].section)
        return self._rebuild(rows, sections), {i: shift(i) for i in range(n)}

    def remove(self, index: int) -> tuple[LayerGraph, dict[int, int]]:
        """Remove layer ``index``; its readers read its single input instead.

        Returns:
            ``(new graph, {old index: new index})`` (the removed index has no entry).

        Raises:
            ModelConfigError: out of range, the last layer (Detect), the only row of its section, or a multi-input
                layer that others read.
        """
        n = len(self.layers)
        if not 0 <= index < n - 1:
            raise ModelConfigError(f"{self.file}: remove index {index} is out of range (layers 0..{n - 2})")
        own, readers = self.layers[index].froms, self.readers(index)
        if readers and len(own) != 1:
            raise ModelConfigError(f"{self.file}: layer {index} ({self.layers[index].name}) has {len(own)} inputs "
                                   f"and is read by layer(s) {readers}; remove only single-input layers that others "
                                   "read")
        if index == 0 and any(i != 1 for i in readers):  # only the next layer can read the image instead
            raise ModelConfigError(f"{self.file}: layer 0 is read by layer(s) {readers}; it cannot be removed")
        section = self.layers[index].section
        if sum(x.section == section for x in self.layers) == 1:
            raise ModelConfigError(f"{self.file}: layer {index} is the only row of '{section}'")
        shift = lambda a: a - 1 if a > index else a  # noqa: E731
        target = own[0]
        froms = [[shift(target) if a == index else shift(a) for a in x.froms] for x in self.layers if x.index != index]
        order = [i for i in range(n) if i != index]
        rows = self._rows_from(froms, order, None)
        sections = [x.section for x in self.layers if x.index != index]
        return self._rebuild(rows, sections), {i: shift(i) for i in order}

    def move(self, index: int, to: int) -> tuple[LayerGraph, dict[int, int]]:
        """Move the single-input layer ``index`` to index ``to`` (its index afterwards), wrapping the layer before it.

        An attention module's nominal channel argument (a leading int) is dropped: the new input decides.

        Returns:
            ``(new graph, {old index: new index})``.
        """
        n = len(self.layers)
        for what, v in (("move index", index), ("move target", to)):
            if not 0 <= v < n - 1:
                raise ModelConfigError(f"{self.file}: {what} {v} is out of range (layers 0..{n - 2})")
        layer = self.layers[index]
        if isinstance(layer.f, list):
            raise ModelConfigError(f"{self.file}: layer {index} ({layer.name}) has several inputs; only single-input "
                                   "layers move")
        args = movable_args(layer)
        g, first = self.remove(index)
        g, second = g.insert(to, layer.name, args, number=layer.n)
        mapping = {old: second[mid] for old, mid in first.items()}
        mapping[index] = to
        return g, mapping


def movable_args(layer: Layer) -> list:
    """A layer's yaml arguments for another position: an attention module's nominal channel count is dropped."""
    args = deepcopy(layer.args)
    if layer.kind == "attention" and args and isinstance(args[0], int) and not isinstance(args[0], bool):
        args = args[1:]
    return args


def compose(*mappings: dict[int, int]) -> dict[int, int]:
    """``{old: newest}`` through successive ``old -> new`` mappings (indices dropped on the way have no entry)."""
    out = {i: i for i in mappings[0]} if mappings else {}
    for m in mappings:
        out = {k: m[v] for k, v in out.items() if v in m}
    return out


# ---------------------------------------------------------------------------------------------- attention: key
def _placement(entry: Any, k: int, src: str) -> tuple[str, list, list[int], int]:
    """``(module, args, after, number)`` of one ``attention:`` entry, checked."""
    how = f"{src}: attention entry {k} {entry!r}: write [Module, [args], {{after: [i, ...]}}]"
    if not (isinstance(entry, list) and 2 <= len(entry) <= 3 and isinstance(entry[0], str)
            and isinstance(entry[1], list)):
        raise ModelConfigError(how)
    opts = entry[2] if len(entry) == 3 else {}
    if not isinstance(opts, dict) or set(opts) - {"after", "number"} or "after" not in opts:
        raise ModelConfigError(f"{how}; the options are 'after' (required) and 'number'")
    after = opts["after"] if isinstance(opts["after"], list) else [opts["after"]]
    if not after or not all(isinstance(a, int) and not isinstance(a, bool) for a in after):
        raise ModelConfigError(f"{how}; 'after' must be a layer index or a list of them")
    number = opts.get("number", 1)
    try:
        kind = resolve(entry[0]).kind
    except KeyError:  # unknown: the insertion reports it with the closest names
        kind = "attention"
    if kind != "attention":
        raise ModelConfigError(f"{src}: attention entry {k}: {entry[0]} is not an attention module; write it as a "
                               "backbone or head row")
    return entry[0], deepcopy(entry[1]), after, number


@dataclass(frozen=True)
class Placement:
    """One row written by an ``attention:`` entry: the row index when inserted (in the rows as they were then), the
    module, its args and repeat count, the plain-row index it follows, and the entry's position in the list."""

    index: int
    module: str
    args: list
    number: int
    after: int
    entry: int

    @property
    def key(self) -> tuple:
        """What identifies this placement across two yamls over the same rows."""
        return (self.after, self.module, repr(self.args), self.number)


def attention_insertions(d: dict, file: str | None = None) -> list[Placement]:
    """The row insertions that write a model dict's ``attention:`` placements, in order.

    Each entry ``[Module, args, {after: [i, ...], number: n}]`` inserts one row after each listed layer, where ``i``
    is an index of the plain rows (before any insertion). Entries apply in order; several modules after the same
    layer follow each other in entry order. Every ``from`` is renumbered, and each new layer wraps the layer it
    follows (the layers that read it read the new one).

    Raises:
        ModelConfigError: a malformed entry, an index out of range (Detect, the last layer, cannot be followed), a
            module that is not an attention module, or one that does not build there.
    """
    src = file or "model dict"
    d = deepcopy(d)
    entries = d.pop("attention")
    if not isinstance(entries, list):
        raise ModelConfigError(f"{src}: 'attention' must be a list of [Module, [args], {{after: [i, ...]}}] entries")
    graph = LayerGraph.from_dict(d, file=src)
    n, done = len(graph), []
    tail = {i: i for i in range(n)}  # plain index -> current index of the last layer placed after it (or itself)
    for k, entry in enumerate(entries):
        module, args, after, number = _placement(entry, k, src)
        for a in after:
            if not 0 <= a < n - 1:
                raise ModelConfigError(f"{src}: attention entry {k}: after {a} is out of range (layers 0..{n - 2}; "
                                       "Detect is last)")
            index = tail[a] + 1
            try:
                graph, m = graph.insert(index, module, args, number=number)
            except ModelConfigError as e:
                msg = str(e).removeprefix(f"{src}: ")
                raise ModelConfigError(f"{src}: attention entry {k} ({module} after layer {a}): {msg}") from None
            tail = {i: (index if i == a else m[t]) for i, t in tail.items()}
            done.append(Placement(index, module, deepcopy(args), number, a, k))
    return done


def _expand(d: dict, file: str | None) -> tuple[dict, list[int | Placement]]:
    """The expanded dict and the origin of every layer: a plain-row index, or the :class:`Placement` that wrote it."""
    plain = {k: v for k, v in d.items() if k != "attention"}
    graph = LayerGraph.from_dict(plain, file=file)
    origins: list[int | Placement] = list(range(len(graph)))
    for p in attention_insertions(d, file):
        graph, _ = graph.insert(p.index, p.module, p.args, number=p.number)
        origins.insert(p.index, p)
    return graph.to_dict(), origins


def expand_attention(d: dict, file: str | None = None) -> dict:
    """The model dict with its ``attention:`` placements written as plain rows and the key removed (see
    :func:`attention_insertions` for the rules)."""
    return _expand(d, file)[0]


def layer_origins(d: dict, file: str | None = None) -> list[tuple]:
    """Where each layer of a model dict comes from, comparable between two dicts over the same plain rows:
    ``("row", i)`` for plain row ``i``, ``("attention", after, module, args, number, j)`` for the ``j``-th identical
    placement after plain row ``after``."""
    origins = _expand(d, file)[1] if d.get("attention") is not None else list(range(len(_plain(d))))
    seen: dict[tuple, int] = {}
    out = []
    for o in origins:
        if isinstance(o, Placement):
            seen[o.key] = seen.get(o.key, -1) + 1
            out.append(("attention", *o.key, seen[o.key]))
        else:
            out.append(("row", o))
    return out


def _plain(d: dict) -> list:
    """The rows written in a model dict (backbone, then head), without its ``attention:`` placements."""
    return list(d.get("backbone") or []) + list(d.get("head") or [])
