"""The layer registry: yaml module name -> class, and each class's channel rule.

``parse_model`` resolves every yaml ``module`` string here and asks the layer's *channel rule* how to turn the
yaml arguments into constructor arguments and how many channels come out. It never branches on a module
name. A plain layer registers with a decorator::

    from models.registry import register, conv

    @register(rule=conv)
    class MyConv(nn.Module):
        def __init__(self, c1: int, c2: int, k: int = 1): ...

and an attention module registers itself by subclassing ``models.attention.base.Attention`` (channel rule
:func:`attention`, kind ``"attention"``): the yaml line ``[-1, 1, MyAttention, [1024, 8]]`` builds it with the real
input channels.

A channel rule is a callable ``rule(ctx: LayerContext) -> LayerArgs``. The rules YOLOv5 v6.1 needs
 are defined below: :func:`passthrough`, :func:`conv`, :func:`conv_repeat` (C3's attention option),
:func:`input_channels`, :func:`concat`, :func:`contract`, :func:`expand`, :func:`detect` and
:func:`attention`.
"""

from __future__ import annotations

import difflib
import inspect
import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator

import torch.nn as nn

from utils.general import InputError, make_divisible


class ModelConfigError(InputError):
    """A model yaml that cannot be built; the message names the file, the layer and what is wrong."""


@dataclass
class LayerContext:
    """What a channel rule sees about one yaml row.

    Attributes:
        c_in: output channels of each ``from`` input, in ``from`` order (one entry for a single input).
        args: the yaml arguments, with the strings ``None``, ``nc``, ``anchors``... already resolved.
        n: the depth-scaled repeat count.
        gw: the yaml's ``width_multiple``.
        no_total: ``na * (nc + 5)``, the channel count of a Detect output conv (left unscaled by ``conv``).
        name: the module name as written in the yaml.
        index: the layer index.
    """

    c_in: list[int]
    args: list
    n: int
    gw: float
    no_total: int
    name: str = ""
    index: int = 0

    @property
    def c1(self) -> int:
        """Channels of the single input; a rule for one-input layers uses this."""
        if len(self.c_in) != 1:
            raise ModelConfigError(f"{self.name} takes one input, got {len(self.c_in)} ('from' is a list)")
        return self.c_in[0]

    def scale(self, c: int) -> int:
        """Scale a nominal (width 1.0) channel count by ``width_multiple``, as YOLOv5 does."""
        return c if c == self.no_total else make_divisible(c * self.gw, 8)


@dataclass
class LayerArgs:
    """What a channel rule returns: constructor ``args``/``kwargs``, output channels ``c2`` and repeat count
    ``n`` (how many instances parse_model chains in an ``nn.Sequential``; rules that pass the depth into the
    constructor return 1)."""

    args: list
    c2: int
    n: int = 1
    kwargs: dict = field(default_factory=dict)


Rule = Callable[[LayerContext], LayerArgs]


# ----------------------------------------------------------------------------------------- channel rules
def passthrough(ctx: LayerContext) -> LayerArgs:
    """Arguments unchanged, output channels = input channels (nn.Upsample, nn.MaxPool2d, nn.ZeroPad2d...)."""
    return LayerArgs(list(ctx.args), ctx.c_in[0], ctx.n)


def conv(ctx: LayerContext) -> LayerArgs:
    """``(c1, c2, *rest)`` with ``c2 = args[0]`` scaled by width (Conv, SPPF, Bottleneck, C3SPP...)."""
    if not ctx.args or not isinstance(ctx.args[0], int):
        raise ModelConfigError(f"{ctx.name} needs its output channel count as the first argument, got {ctx.args}")
    c2 = ctx.scale(ctx.args[0])
    return LayerArgs([ctx.c1, c2, *ctx.args[1:]], c2, ctx.n)


def conv_repeat(ctx: LayerContext) -> LayerArgs:
    """As :func:`conv`, with the repeat count passed as the third argument (C3, BottleneckCSP, C3TR, C3Ghost).

    A trailing mapping is the attention option of C3 and its aliases (:func:`attention_option`)."""
    args = list(ctx.args)
    option = args.pop() if args and isinstance(args[-1], dict) else None
    la = conv(replace(ctx, args=args))
    return LayerArgs([*la.args[:2], ctx.n, *la.args[2:]], la.c2, 1, attention_option(ctx, option))


ATTENTION_PLACES = ("bottleneck", "output", "replace")


def attention_option(ctx: LayerContext, option: dict | None) -> dict:
    """Constructor keywords ``attention``, ``where`` (and ``attention_args``) of a C3 row's trailing mapping
    ``{attention: Name, where: bottleneck|output|replace, args: [...]}`` (``where`` defaults to ``bottleneck``).

    The name must be a registered attention module. A class with ``fixed_attention = (name, where)`` (the C3 aliases
    of ``models/blocks.py``) always gets those, and its mapping may hold ``args`` only. ``{}`` when neither applies.
    """
    cls = _REGISTRY[ctx.name].cls if ctx.name in _REGISTRY else None
    fixed = getattr(cls, "fixed_attention", None)
    if option is None and fixed is None:
        return {}
    if cls is None or "attention" not in inspect.signature(cls).parameters:
        raise ModelConfigError(f"{ctx.name} takes no trailing mapping; the attention option "
                               "{attention: Name, where: bottleneck|output|replace, args: [...]} is for C3")
    option, keys = dict(option or {}), ("args",) if fixed else ("attention", "where", "args")
    if set(option) - set(keys):
        why = (f"{ctx.name} is C3 with {fixed[0]} at '{fixed[1]}': its mapping takes 'args' only (write C3 with "
               "{attention: ..., where: ...} for another module or place)" if fixed else f"the keys are {keys}")
        raise ModelConfigError(f"unknown key(s) {sorted(set(option) - set(keys))} in {option}: {why}")
    name, where = fixed or (option.get("attention"), option.get("where", "bottleneck"))
    spec = _REGISTRY.get(name) if isinstance(name, str) else None
    if spec is None and fixed:
        raise ModelConfigError(f"{ctx.name} is C3 with the attention module {name}, which is not registered")
    if spec is None or spec.kind != "attention":
        what = ("no 'attention:' key" if name is None else f"unknown attention module {name!r}" if spec is None
                else f"'{name}' is a {spec.kind} module, not an attention module,")
        hint = closest(str(name), kind="attention") if spec is None and name is not None else []
        raise ModelConfigError(f"{what} in {ctx.name}'s option; " + (f"did you mean {', '.join(hint)}?" if hint else
                               f"attention modules: {', '.join(sorted(c.__name__ for c in classes('attention')))}"))
    if where not in ATTENTION_PLACES:
        raise ModelConfigError(f"where: {where!r} is not one of {', '.join(ATTENTION_PLACES)}")
    if not isinstance(option.get("args", []), list):
        raise ModelConfigError(f"args: {option['args']!r} must be a list (the module's options, no channel count)")
    return {"attention": name, "where": where, **({"attention_args": option["args"]} if option.get("args") else {})}


def input_channels(ctx: LayerContext) -> LayerArgs:
    """The only argument is the input channel count (nn.BatchNorm2d)."""
    return LayerArgs([ctx.c1], ctx.c1, ctx.n)


def concat(ctx: LayerContext) -> LayerArgs:
    """Output channels are the sum of the inputs' (Concat)."""
    return LayerArgs(list(ctx.args), sum(ctx.c_in), ctx.n)


def contract(ctx: LayerContext) -> LayerArgs:
    """Space-to-depth by ``gain = args[0]``: channels times gain²."""
    gain = ctx.args[0] if ctx.args else 2
    return LayerArgs(list(ctx.args), ctx.c1 * gain**2, ctx.n)


def expand(ctx: LayerContext) -> LayerArgs:
    """Depth-to-space by ``gain = args[0]``: channels divided by gain²."""
    gain = ctx.args[0] if ctx.args else 2
    return LayerArgs(list(ctx.args), ctx.c1 // gain**2, ctx.n)


def detect(ctx: LayerContext) -> LayerArgs:
    """``[nc, anchors]`` + the list of input channels; an int ``anchors`` becomes placeholder anchors."""
    if len(ctx.args) < 2:
        raise ModelConfigError(f"{ctx.name} needs the arguments [nc, anchors], got {ctx.args}")
    nc, anchors, *rest = ctx.args
    check_nc(nc)
    check_anchors(anchors)
    if isinstance(anchors, int):  # anchors per level -> (0,1), (2,3), ... px, replaced later by AutoAnchor
        anchors = [list(range(anchors * 2))] * len(ctx.c_in)
    elif len(anchors) != len(ctx.c_in):
        raise ModelConfigError(
            f"{ctx.name} has {len(anchors)} anchor levels but {len(ctx.c_in)} inputs in 'from'")
    return LayerArgs([nc, anchors, list(ctx.c_in), *rest], ctx.c_in[0], 1)


def attention(ctx: LayerContext) -> LayerArgs:
    """Attention contract: output channels = input channels.

    yaml args: an optional nominal channel count (an int, for width 1.0, scaled and checked against the real
    input), then the module's own positional options, then optionally a mapping of keyword options.
    """
    args, kwargs = list(ctx.args), {}
    if args and isinstance(args[-1], dict):
        kwargs = dict(args.pop())
    if args and isinstance(args[0], int) and not isinstance(args[0], bool):
        nominal = args.pop(0)
        expected = ctx.scale(nominal)
        if expected != ctx.c1:
            raise ModelConfigError(
                f"{ctx.name} expects {expected} input channels ({nominal} nominal × width_multiple {ctx.gw}) "
                f"but its input has {ctx.c1} channels; write {[n] if (n := nominal_for(ctx.c1, ctx.gw)) else []} or [] in the yaml")
    return LayerArgs([ctx.c1, *args], ctx.c1, ctx.n, kwargs)


def nominal_for(c: int, gw: float) -> int | None:
    """The nominal (width 1.0) channel count that ``width_multiple`` ``gw`` scales to ``c``, or None if none does."""
    nominal = int(round(c / gw)) if gw else c
    return nominal if make_divisible(nominal * gw, 8) == c else None


# ----------------------------------------------------------------------------------------- the table
@dataclass(frozen=True)
class LayerSpec:
    """One registered layer: its yaml name, class, channel rule and kind (``layer``, ``attention``...)."""

    name: str
    cls: type
    rule: Rule
    kind: str = "layer"


_REGISTRY: dict[str, LayerSpec] = {}


def register(name: str | None = None, *, rule: Rule = passthrough, kind: str = "layer",
             aliases: tuple[str, ...] = ()) -> Callable[[type], type]:
    """Class decorator: make ``cls`` buildable from a yaml line under ``name`` (default: the class name).

    Args:
        name: yaml name; defaults to ``cls.__name__``.
        rule: channel rule (see module docstring).
        kind: a tag used by tools and tests; attention modules use ``"attention"``.
        aliases: further yaml names for the same class (e.g. ``simam_module`` for ``SimAM``).

    Re-registering a name with a class of the same qualified name replaces it (a module imported twice, as
    when ``models/yolo.py`` runs as a script); a different class under a taken name is an error.
    """

    def wrap(cls: type) -> type:
        for key in (name or cls.__name__, *aliases):
            old = _REGISTRY.get(key)
            if old is not None and old.cls.__qualname__ != cls.__qualname__:
                raise ValueError(f"layer name '{key}' is already registered for {old.cls.__module__}."
                                 f"{old.cls.__qualname__}")
            _REGISTRY[key] = LayerSpec(key, cls, rule, kind)
        return cls

    return wrap


def unregister(name: str) -> None:
    """Remove a registered name (tests that register throw-away modules clean up with this)."""
    _REGISTRY.pop(name, None)


def resolve(name: str) -> LayerSpec:
    """Look up a yaml module name; ``KeyError`` with the closest names when it is unknown."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(name) from None


def closest(name: str, n: int = 3, kind: str | None = None) -> list[str]:
    """Registered names (of one ``kind`` if given) closest to ``name`` (for 'did you mean' messages)."""
    names = [k for k, s in _REGISTRY.items() if kind is None or s.kind == kind]
    found = difflib.get_close_matches(name, names, n=n, cutoff=0.5)
    low = {k.lower(): k for k in names}
    if name.lower() in low and low[name.lower()] not in found:
        found.insert(0, low[name.lower()])
    return found[:n]


def specs(kind: str | None = None) -> Iterator[LayerSpec]:
    """All registered specs (one per name, aliases included), optionally of one ``kind``."""
    return (s for s in list(_REGISTRY.values()) if kind is None or s.kind == kind)


def classes(kind: str | None = None) -> list[type]:
    """The distinct registered classes, optionally of one ``kind``, in registration order."""
    seen: dict[type, None] = {}
    for s in specs(kind):
        seen.setdefault(s.cls, None)
    return list(seen)


# torch.nn layers that yamls name as ``nn.<Name>``: the one small table of them.
_TORCH_RULES: dict[str, Rule] = {
    "Upsample": passthrough, "MaxPool2d": passthrough, "AvgPool2d": passthrough, "ZeroPad2d": passthrough,
    "Identity": passthrough, "Dropout": passthrough, "ReLU": passthrough, "SiLU": passthrough,
    "LeakyReLU": passthrough, "Hardswish": passthrough, "AdaptiveAvgPool2d": passthrough,
    "BatchNorm2d": input_channels,
}
for _name, _rule in _TORCH_RULES.items():
    register(f"nn.{_name}", rule=_rule, kind="torch")(getattr(nn, _name))


def resolve_arg(a: Any, scope: dict[str, Any]) -> Any:
    """Resolve one yaml argument without ``eval``: the strings ``None``/``True``/``False`` and names in
    ``scope`` (``nc``, ``anchors``) become values, every other string stays a string (``'nearest'``)."""
    if isinstance(a, str):
        if a in scope:
            return scope[a]
        return {"None": None, "True": True, "False": False}.get(a, a)
    return a


# ----------------------------------------------------------------------------------------- model yaml values
def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def check_nc(nc: Any) -> None:
    """Raise ModelConfigError unless ``nc`` (the number of classes) is a positive int."""
    if not (isinstance(nc, int) and not isinstance(nc, bool) and nc > 0):
        raise ModelConfigError(f"nc must be a positive integer, got {nc!r}")


def check_multiple(key: str, v: Any) -> None:
    """Raise ModelConfigError unless ``v`` (``depth_multiple`` or ``width_multiple``) is a positive number."""
    if not (_is_number(v) and v > 0):
        raise ModelConfigError(f"{key} must be a positive number, got {v!r}")


def check_anchors(anchors: Any) -> None:
    """Raise ModelConfigError unless ``anchors`` is a positive int (anchors per level) or a non-empty list of levels,
    each a non-empty, even-length list (w, h pairs) of positive numbers, all levels of the same length."""
    if isinstance(anchors, int) and not isinstance(anchors, bool) and anchors > 0:
        return
    what = ("anchors must be a positive int (anchors per level) or a non-empty list of levels, each an even-length "
            "list of positive numbers (w, h pairs)")
    if not (isinstance(anchors, list) and anchors):
        raise ModelConfigError(f"{what}; got {anchors!r}")
    for k, a in enumerate(anchors):
        if not (isinstance(a, list) and a and len(a) % 2 == 0 and all(_is_number(v) and v > 0 for v in a)):
            raise ModelConfigError(f"{what}; level {k} is {a!r}")
    if len({len(a) for a in anchors}) > 1:
        raise ModelConfigError(f"every anchor level must have the same number of values, got "
                               f"{[len(a) for a in anchors]}")


def check_model_dict(d: dict, ch: Any) -> list:
    """Check the model-wide values of a model dict and return its layer rows, backbone then head.

    Args:
        d: the model dict (nc, depth_multiple, width_multiple, anchors, backbone, head).
        ch: the input channel count.

    Raises:
        ModelConfigError: a missing key, a bad nc, depth_multiple, width_multiple, anchors or ch, a section that is
            not a list, or no layers; the message leaves naming the file to the caller.
    """
    missing = [k for k in ("nc", "depth_multiple", "width_multiple", "anchors", "backbone", "head") if k not in d]
    if missing:
        raise ModelConfigError(f"missing key(s) {', '.join(missing)}")
    check_nc(d["nc"])
    check_multiple("depth_multiple", d["depth_multiple"])
    check_multiple("width_multiple", d["width_multiple"])
    check_anchors(d["anchors"])
    if not (isinstance(ch, int) and not isinstance(ch, bool) and ch > 0):
        raise ModelConfigError(f"ch (input channels) must be a positive integer, got {ch!r}")
    for k in ("backbone", "head"):
        if not isinstance(d[k], (list, type(None))):
            raise ModelConfigError(f"'{k}' must be a list of layer rows, got {type(d[k]).__name__}")
    rows = (d["backbone"] or []) + (d["head"] or [])
    if not rows:
        raise ModelConfigError("no layers in backbone/head")
    return rows


def from_channels(f: Any, i: int, ch: int, out_ch: list[int]) -> list[int]:
    """The channel counts that layer ``i`` receives: ``out_ch[j]`` of each layer ``j`` its ``from`` field ``f`` names
    (``ch``, the image's, for ``-1`` at layer 0); :attr:`LayerContext.c_in`.

    Raises:
        ModelConfigError: an empty list, a non-index entry, or an index forward of ``i`` or before layer 0.
    """
    if isinstance(f, list) and not f:
        raise ModelConfigError("'from' is an empty list")
    c_in = []
    for x in f if isinstance(f, list) else [f]:
        if not isinstance(x, int) or isinstance(x, bool):
            raise ModelConfigError(f"'from' entries must be layer indices, got {x!r}")
        if x >= i:
            raise ModelConfigError(f"'from' index {x} points forward (layer {i} can only take earlier layers, "
                                   f"0..{i - 1}, or -1 for the previous one)")
        j = i + x if x < 0 else x
        if j < 0 and not (i == 0 and x == -1):
            raise ModelConfigError(f"'from' index {x} points before layer 0")
        c_in.append(ch if j < 0 else out_ch[j])
    return c_in
