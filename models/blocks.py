"""Attention inside C3 blocks: the C3 attention option and the C3 aliases YOLO forks name.

**The option.** A C3 row's trailing mapping puts any registered attention module (registry kind ``"attention"``)
inside the block, at one of three places (``where``; default ``bottleneck``)::

    [-1, 3, C3, [512, {attention: SEAttention, where: bottleneck}]]   # in each bottleneck, after cv2, before the add
    [-1, 3, C3, [512, False, {attention: CBAM, where: output}]]       # after the C3's cv3
    [-1, 3, C3, [512, {attention: CoTAttention, where: replace}]]     # in each bottleneck, in place of cv2 (3×3)
    [-1, 3, C3, [512, {attention: SimAM, args: [0.1]}]]               # args: the module's own options

``args`` are the module's options after its channel count, with an optional trailing mapping of keyword options
(``args: [{e_lambda: 0.1}]``). The module is built with the real channels at every width and depth multiple: the
bottleneck's hidden channels (the C3's ``c_ = c2 · e``) inside a bottleneck, the C3's ``c2`` at the output. The rule
that reads the mapping is :func:`models.registry.attention_option` (the ``conv_repeat`` rule of C3): an unknown
name is a ModelConfigError with the closest attention names, a module of another kind is refused.

**Checkpoints.** A C3 without the option is v6.1's ``models.common.C3``, key for key. With it, the state_dict gains
``m.<i>.att.*`` (each bottleneck becomes an :class:`AttentionBottleneck` holding the same ``cv1``/``cv2``; with
``replace`` it has no ``cv2``) or ``att.*`` (output).

**The aliases.** Names that YOLO forks' yamls use (YOLOAir style), each a C3 with a fixed module and place, with
C3's arguments ``[c2, shortcut, g, e]`` (``[-1, 3, C3SE, [512, False]]``, ``[-1, 3, CBAMC3, [1024]]``); a trailing
``{args: [...]}`` passes the module's options. They resolve the module by name when built, so ``BoT3`` builds once
an ``MHSA`` attention module is registered.

========  ================  ==========  ==========================================================================
alias     module            where       why
========  ================  ==========  ==========================================================================
CBAMC3    CBAM              output      the forks' CBAMC3 gates the C3's output (channel, then spatial attention)
C3CA      CoordAtt          bottleneck  coordinate attention on each bottleneck's residual branch
C3SE      SEAttention       bottleneck  SE's own placement: gate the residual branch before the add
C3ECA     ECAAttention      bottleneck  as SE (ECA is a lighter SE)
C3GC      GCAttention       bottleneck  GCNet's placement: context block on the residual branch
CoT3      CoTAttention      replace     the CoT bottleneck: the CoT block takes the 3×3 conv's place
BoT3      MHSA              replace     BoTNet's bottleneck: self-attention takes the 3×3 conv's place
C3SimAM   SimAM             bottleneck  parameter-free, on each residual branch
C3NAM     NAMAttention      bottleneck  as SE: NAM's channel weights on each residual branch
========  ================  ==========  ==========================================================================
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from models.common import C3, Bottleneck
from models.registry import ATTENTION_PLACES, closest, conv_repeat, register, resolve


class AttentionBottleneck(nn.Module):
    """A C3 bottleneck with an attention module ``att``: ``cv1 -> cv2 -> att (+ x)``, or ``cv1 -> att (+ x)`` when the
    module replaces ``cv2``. Takes over the ``cv1``, ``cv2`` and ``add`` of an existing :class:`Bottleneck`."""

    def __init__(self, bottleneck: Bottleneck, att: nn.Module, replace: bool = False) -> None:
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


def add_attention(c3: C3, name: str, where: str = "bottleneck", args: list | tuple = ()) -> None:
    """Put the attention module ``name`` into ``c3`` (in place): in each bottleneck after ``cv2`` (``bottleneck``),
    in place of each bottleneck's ``cv2`` (``replace``) or after ``cv3`` as ``c3.att`` (``output``)."""
    if where not in ATTENTION_PLACES:
        raise ValueError(f"where must be one of {', '.join(ATTENTION_PLACES)}, got {where!r}")
    make = attention_factory(name, args)
    if where == "output":
        c3.att = make(c3.cv3.conv.out_channels)
        return
    if not all(isinstance(b, Bottleneck) for b in c3.m):
        raise ValueError(f"{type(c3).__name__} has no plain bottlenecks for where={where!r}; use where='output'")
    c3.m = nn.Sequential(*(AttentionBottleneck(b, make(b.cv1.conv.out_channels), where == "replace") for b in c3.m))


class FixedAttentionC3(C3):
    """Base of the C3 aliases: a C3 whose attention module and place are the class's ``fixed_attention``."""

    fixed_attention: tuple[str, str] = ("", "")

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5,
                 attention: str | None = None, where: str | None = None, attention_args: list | tuple = ()):
        name, place = self.fixed_attention
        if attention not in (None, name) or where not in (None, place):
            raise ValueError(f"{type(self).__name__} is C3 with {name} at '{place}'; got attention={attention!r}, "
                             f"where={where!r}")
        super().__init__(c1, c2, n, shortcut, g, e, name, place, attention_args)


@register(rule=conv_repeat)
class CBAMC3(FixedAttentionC3):
    """C3 with CBAM (channel, then spatial gate) after cv3."""

    fixed_attention = ("CBAM", "output")


@register(rule=conv_repeat)
class C3CA(FixedAttentionC3):
    """C3 with CoordAtt in each bottleneck."""

    fixed_attention = ("CoordAtt", "bottleneck")


@register(rule=conv_repeat)
class C3SE(FixedAttentionC3):
    """C3 with SEAttention in each bottleneck."""

    fixed_attention = ("SEAttention", "bottleneck")


@register(rule=conv_repeat)
class C3ECA(FixedAttentionC3):
    """C3 with ECAAttention in each bottleneck."""

    fixed_attention = ("ECAAttention", "bottleneck")


@register(rule=conv_repeat)
class C3GC(FixedAttentionC3):
    """C3 with GCAttention (global context block) in each bottleneck."""

    fixed_attention = ("GCAttention", "bottleneck")


@register(rule=conv_repeat)
class CoT3(FixedAttentionC3):
    """C3 with CoTAttention in place of each bottleneck's 3×3 conv."""

    fixed_attention = ("CoTAttention", "replace")


@register(rule=conv_repeat)
class BoT3(FixedAttentionC3):
    """C3 with MHSA (BoTNet self-attention) in place of each bottleneck's 3×3 conv."""

    fixed_attention = ("MHSA", "replace")


@register(rule=conv_repeat)
class C3SimAM(FixedAttentionC3):
    """C3 with SimAM in each bottleneck."""

    fixed_attention = ("SimAM", "bottleneck")


@register(rule=conv_repeat)
class C3NAM(FixedAttentionC3):
    """C3 with NAMAttention in each bottleneck."""

    fixed_attention = ("NAMAttention", "bottleneck")


# alias name -> (attention module, where)
ALIASES = {cls.__name__: cls.fixed_attention for cls in (CBAMC3, C3CA, C3SE, C3ECA, C3GC, CoT3, BoT3, C3SimAM,
                                                           C3NAM)}
