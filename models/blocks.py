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

from models.c3_attention import AttentionBottleneck, add_attention, attention_factory  # noqa: F401  (re-exported)
from models.common import C3
from models.registry import conv_repeat, register


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


# alias name -> (attention module, where, docstring); each becomes a registered C3 subclass of this module
_ALIAS_TABLE = {
    "CBAMC3": ("CBAM", "output", "C3 with CBAM (channel, then spatial gate) after cv3."),
    "C3CA": ("CoordAtt", "bottleneck", "C3 with CoordAtt in each bottleneck."),
    "C3SE": ("SEAttention", "bottleneck", "C3 with SEAttention in each bottleneck."),
    "C3ECA": ("ECAAttention", "bottleneck", "C3 with ECAAttention in each bottleneck."),
    "C3GC": ("GCAttention", "bottleneck", "C3 with GCAttention (global context block) in each bottleneck."),
    "CoT3": ("CoTAttention", "replace", "C3 with CoTAttention in place of each bottleneck's 3×3 conv."),
    "BoT3": ("MHSA", "replace", "C3 with MHSA (BoTNet self-attention) in place of each bottleneck's 3×3 conv."),
    "C3SimAM": ("SimAM", "bottleneck", "C3 with SimAM in each bottleneck."),
    "C3NAM": ("NAMAttention", "bottleneck", "C3 with NAMAttention in each bottleneck."),
}
for _name, (_module, _where, _doc) in _ALIAS_TABLE.items():  # module-level classes: checkpoints pickle them by name
    globals()[_name] = register(rule=conv_repeat)(type(_name, (FixedAttentionC3,), {
        "__doc__": _doc, "__module__": __name__, "__qualname__": _name, "fixed_attention": (_module, _where)}))

# alias name -> (attention module, where)
ALIASES = {name: (module, where) for name, (module, where, _) in _ALIAS_TABLE.items()}
