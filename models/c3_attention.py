"""Attention inside a C3 block: the pieces ``models.common.C3`` uses for its ``attention`` option.

``add_attention(c3, name, where, args)`` puts the registered attention module ``name`` in each bottleneck of a C3
(after its second conv, before the residual add: ``bottleneck``), in place of each bottleneck's second conv
(``replace``), or after the C3's ``cv3`` (``output``), built with the real channels. The option's yaml form and the
C3 aliases that fix it (``C3SE``, ``CBAMC3``...) are described in ``models/blocks.py``. This file imports no layer
classes, so ``models/common.py`` can import it at the top.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from models.registry import ATTENTION_PLACES, closest, resolve


def _is_bottleneck(m: nn.Module) -> bool:
    """A C3 bottleneck (``cv1``, ``cv2``, ``add``) that has not been given an attention module yet."""
    return all(hasattr(m, a) for a in ("cv1", "cv2", "add")) and not hasattr(m, "att")


class AttentionBottleneck(nn.Module):
    """A C3 bottleneck with an attention module ``att``: ``cv1 -> cv2 -> att (+ x)``, or ``cv1 -> att (+ x)`` when the
    module replaces ``cv2``. Takes over the ``cv1``, ``cv2`` and ``add`` of an existing C3 ``Bottleneck``."""

    def __init__(self, bottleneck: nn.Module, att: nn.Module, replace: bool = False) -> None:
        super().__init__()
        self.cv1 = bottleneck.cv1
        self.cv2 = None if replace else bottleneck.cv2
        self.att = att
        self.add = bottleneck.add

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv1(x)
        if self.cv2 is not None:
            y = self.cv2(y)
        y = self.att(y)
        return x + y if self.add else y


def attention_factory(name: str, args: list | tuple = ()) -> Callable[[int], nn.Module]:
    """``make(c)``: a new instance of the registered attention module ``name`` on ``c`` channels, with the options
    ``args`` (positional, then an optional trailing mapping of keyword options).

    Raises:
        ValueError: ``name`` is unknown (the message lists the closest attention names) or not an attention module.
    """
    try:
        spec = resolve(name)
    except (KeyError, TypeError):
        hint = closest(str(name), kind="attention")
        raise ValueError(f"unknown attention module '{name}'" +
                         (f"; did you mean {', '.join(hint)}?" if hint else "")) from None
    if spec.kind != "attention":
        raise ValueError(f"'{name}' is a {spec.kind} module, not an attention module")
    pos = list(args)
    kw = dict(pos.pop()) if pos and isinstance(pos[-1], dict) else {}
    return lambda c: spec.cls(c, *pos, **kw)


def add_attention(c3: nn.Module, name: str, where: str = "bottleneck", args: list | tuple = ()) -> None:
    """Put the attention module ``name`` into ``c3`` (in place): in each bottleneck after ``cv2`` (``bottleneck``),
    in place of each bottleneck's ``cv2`` (``replace``) or after ``cv3`` as ``c3.att`` (``output``)."""
    if where not in ATTENTION_PLACES:
        raise ValueError(f"where must be one of {', '.join(ATTENTION_PLACES)}, got {where!r}")
    make = attention_factory(name, args)
    if where == "output":
        c3.att = make(c3.cv3.conv.out_channels)
        return
    if not all(_is_bottleneck(b) for b in c3.m):
        raise ValueError(f"{type(c3).__name__} has no plain bottlenecks for where={where!r}; use where='output'")
    c3.m = nn.Sequential(*(AttentionBottleneck(b, make(b.cv1.conv.out_channels), where == "replace") for b in c3.m))
