"""One yaml layer row resolved: its absolute inputs, registry spec, constructor arguments and channels.

A model yaml row is ``[from, number, module, args]``. :func:`resolve_row` checks it and runs the module's channel
rule (``models/registry.py``) without building anything; the result is a :class:`Layer`, the record that
``models/graph.py``'s ``LayerGraph`` keeps for every row and that ``parse_model`` builds from.
"""

from __future__ import annotations

from copy import deepcopy
from dataclasses import dataclass
from typing import Any

import torch.nn as nn

import models.attention  # noqa: F401  (registers the attention modules)
import models.common  # noqa: F401  (registers the v6.1 layers and, through it, the C3 aliases; Detect: models.yolo)
from models.registry import (LayerArgs, LayerContext, LayerSpec, ModelConfigError, closest, detect, from_channels,
                             resolve, resolve_arg)


@dataclass(frozen=True)
class Layer:
    """One resolved yaml row.

    Attributes:
        index: the layer's index (its position in backbone + head).
        froms: the absolute indices it reads (``-1`` only for layer 0 reading the image).
        f: ``from`` as written (relative or absolute, an int or a list).
        n: ``number`` as written; ``depth`` is the depth-scaled repeat count.
        name: the module name as written.
        args: the yaml arguments as written.
        spec: the registry entry (class, channel rule, kind).
        c_in: input channels, one per ``from`` entry.
        c_out: output channels.
        built: the constructor arguments and instance count the channel rule gives.
        section: ``"backbone"`` or ``"head"``.
    """

    index: int
    froms: tuple[int, ...]
    f: Any
    n: int
    depth: int
    name: str
    args: list
    spec: LayerSpec
    c_in: tuple[int, ...]
    c_out: int
    built: LayerArgs
    section: str

    @property
    def kind(self) -> str:
        """The registry kind: ``"attention"``, ``"head"``, ``"layer"`` or ``"torch"``."""
        return self.spec.kind

    @property
    def row(self) -> list:
        """The yaml row ``[from, number, module, args]``."""
        return [deepcopy(self.f), self.n, self.name, deepcopy(self.args)]

    def build(self) -> nn.Module:
        """A fresh module (an ``nn.Sequential`` of ``built.n`` instances when the rule repeats it)."""
        la, cls = self.built, self.spec.cls
        make = lambda: cls(*la.args, **la.kwargs)  # noqa: E731
        return nn.Sequential(*(make() for _ in range(la.n))) if la.n > 1 else make()


def is_head(spec: LayerSpec) -> bool:
    """Whether a registered layer is a detection head (Detect, or a subclass registered with its channel rule)."""
    return spec.kind == "head" or spec.rule is detect


def row_error(src: str, i: int, row: Any, msg: str) -> ModelConfigError:
    """A ModelConfigError naming the file, the layer index and its row."""
    return ModelConfigError(f"{src}: layer {i} {row}: {msg}")


def resolve_row(i: int, row: Any, n_rows: int, c_img: int, out_ch: list[int], d: dict, src: str,
                 section: str) -> Layer:
    """Check row ``i`` and run its channel rule (``out_ch``: output channels of the layers before it)."""
    if not (isinstance(row, list) and len(row) == 4 and isinstance(row[3], list)):
        raise row_error(src, i, row, "a layer is [from, number, module, args] with args a list")
    f, n, name, args = row
    try:
        spec = resolve(name)
    except (KeyError, TypeError):
        hint = closest(str(name))
        raise row_error(src, i, row, f"unknown module '{name}'" +
                        (f"; did you mean {', '.join(hint)}?" if hint else "")) from None
    if is_head(spec) and i != n_rows - 1:
        raise row_error(src, i, row, "Detect must be the last layer, and only one Detect is allowed")
    anchors, nc, gd, gw = d["anchors"], d["nc"], d["depth_multiple"], d["width_multiple"]
    na = (len(anchors[0]) // 2) if isinstance(anchors, list) else anchors  # anchors per level
    try:
        c_in = from_channels(f, i, c_img, out_ch)
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ModelConfigError(f"'number' must be a positive int, got {n!r}")
        depth = max(round(n * gd), 1) if n > 1 else n  # depth gain
        resolved = [resolve_arg(a, {"nc": nc, "anchors": anchors}) for a in args]
        la = spec.rule(LayerContext(c_in, resolved, depth, gw, na * (nc + 5), name, i))
    except ModelConfigError as e:
        raise row_error(src, i, row, str(e)) from None
    except Exception as e:  # e.g. a zero or non-int gain for Contract/Expand
        raise row_error(src, i, row, f"cannot use the arguments {args}: {type(e).__name__}: {e}") from e
    if not isinstance(la.c2, int) or isinstance(la.c2, bool) or la.c2 < 1:
        raise row_error(src, i, row, f"gives {la.c2} output channels; channel counts must be positive")
    froms = tuple(i + x if x < 0 else x for x in (f if isinstance(f, list) else [f]))
    return Layer(i, froms, f, n, depth, name, args, spec, tuple(c_in), la.c2, la, section)
