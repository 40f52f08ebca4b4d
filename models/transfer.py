"""Pretrained weight transfer that survives inserted, moved and removed layers.

YOLOv5 v6.1 transfers a checkpoint by state_dict key and shape. Keys carry the layer index
(``model.17.cv1.conv.weight``), so one layer inserted at index 10 shifts every later key: those layers are lost, or
worse, a layer that only happens to have the same shape at the old index is loaded with unrelated weights.

Here the two layer lists (the checkpoint's yaml and the new model's) are paired first. When the new model is the
checkpoint's model plus inserted layers (an ``attention:`` key over the same rows, or rows inserted with
``models/yaml_edit.py``), the pairing is exact: it is the layer graph's ``old index -> new index`` mapping of those
insertions (:func:`exact_pairs`). Otherwise (a hand-edited yaml) the layers are aligned. Each layer is described by
its *signature*, ``(module, number, args)`` as written in the yaml (before width/depth scaling and with ``nc`` and
``anchors`` unresolved), and the longest common subsequence of signatures pairs the layers that both models share,
in order; a layer left over on both sides with one unique partner of the same signature (a moved layer) is paired
too. Only tensors of paired layers transfer, under the new index, and only when their shapes agree. Keys of layers
without a partner never receive weights, whatever their shape.
"""

from __future__ import annotations

import difflib
import re
from collections import defaultdict

import torch

from models.experimental import checkpoint_model, describe_checkpoint, safe_classes
from models.graph import LayerGraph, compose, layer_origins
from models.registry import ModelConfigError, resolve, specs
from models.yolo import Model
from utils.checkpoint import CheckpointError, load_checkpoint
from utils.general import LOGGER
from utils.torch_utils import intersect_dicts

_KEY = re.compile(r"^model\.(\d+)\.(.*)$")


def _rows(d: dict) -> list:
    return list(d.get("backbone") or []) + list(d.get("head") or [])


def signature(row: list) -> str:
    """A layer's identity for alignment: module family, repeat count and yaml arguments (``from`` excluded).

    The family of a module is the registered layer it extends (``C3`` for ``C3SE`` and the other attention-in-C3
    aliases), and a trailing option mapping (``{attention: SEAttention}``) is left out: such a row pairs with the
    plain layer it replaced, whose tensors then load wherever key and shape agree (the attention's own are new).
    """
    _, n, module, args = row
    if isinstance(args, list) and args and isinstance(args[-1], dict):
        args = args[:-1]
    return f"{family(module)}|{n}|{args!r}"


def family(module: str) -> str:
    """The registered name of the nearest registered base class of ``module``'s class (itself if none)."""
    try:
        cls = resolve(module).cls
    except (KeyError, TypeError):
        return str(module)
    names = {s.cls: s.name for s in specs() if s.name == s.cls.__name__}
    return next((names[b] for b in cls.__mro__[1:] if b in names), module)


def _plain_rows(d: dict) -> list:
    """The rows the model is built from (an ``attention:`` key expanded; as written if it cannot be)."""
    if d.get("attention") is None:
        return _rows(d)
    try:
        return _rows(LayerGraph.from_dict(d).to_dict())
    except ModelConfigError:
        return _rows(d)


def exact_pairs(src: dict, dst: dict) -> dict[int, int] | None:
    """The exact pairing when ``dst`` is ``src`` plus inserted layers, else None.

    Two cases are recognised:

    * both dicts have the same plain rows and differ only in their ``attention:`` placements (either may have none):
      layers pair by origin, a plain row with itself and a placement (module, args, repeat count, the row it
      follows) with the same placement in the other (the ``j``-th identical one with the ``j``-th);
    * ``dst``'s rows with the layers that alignment leaves unpaired removed give exactly ``src``'s rows, ``from``
      indices included (rows inserted with ``models/yaml_edit.py``): the pairing is the inverse of the removals.
    """
    try:
        if (src.get("attention") is not None or dst.get("attention") is not None) and _rows(src) == _rows(dst):
            where = {o: j for j, o in enumerate(layer_origins(dst))}
            return {i: where[o] for i, o in enumerate(layer_origins(src)) if o in where}
        src_rows = _plain_rows(src)
        graph = LayerGraph.from_dict(dst)
        extra = sorted(set(range(len(graph))) - set(aligned_pairs(src, dst).values()), reverse=True)
        if len(graph) - len(extra) != len(src_rows):
            return None
        maps = []
        for i in extra:  # highest first: the lower indices stay valid
            graph, m = graph.remove(i)
            maps.append(m)
        if _rows(graph.to_dict()) != src_rows:
            return None
        back = compose(*maps) if maps else {i: i for i in range(len(graph))}  # dst index -> src index
        return dict(sorted((s, d) for d, s in back.items()))
    except ModelConfigError:  # a layer this build does not know, or an edit that does not apply: not a pure insertion
        return None


def align_layers(src: dict, dst: dict) -> dict[int, int]:
    """Pair the layers of two model dicts: ``{source index: destination index}``.

    Exact (:func:`exact_pairs`) when ``dst`` is ``src`` plus insertions, else by alignment (:func:`aligned_pairs`).
    """
    exact = exact_pairs(src, dst)
    return exact if exact is not None else aligned_pairs(src, dst)


def aligned_pairs(src: dict, dst: dict) -> dict[int, int]:
    """Pair the layers of two model dicts by aligning their signatures: ``{source index: destination index}``.

    Args:
        src: the checkpoint's model dict (``model.yaml``).
        dst: the new model's dict.

    Returns:
        The pairs, in order (inserted/removed layers have no entry; a moved layer is paired when its signature is
        unique among the unpaired layers on both sides).
    """
    a, b = [signature(r) for r in _plain_rows(src)], [signature(r) for r in _plain_rows(dst)]
    pairs: dict[int, int] = {}
    for blk in difflib.SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks():
        for k in range(blk.size):
            pairs[blk.a + k] = blk.b + k
    left_a = defaultdict(list)
    for i, s in enumerate(a):
        if i not in pairs:
            left_a[s].append(i)
    taken = set(pairs.values())
    left_b = defaultdict(list)
    for j, s in enumerate(b):
        if j not in taken:
            left_b[s].append(j)
    for s, ia in left_a.items():  # moved layers: one unpaired twin on each side
        if len(ia) == 1 and len(left_b.get(s, [])) == 1:
            pairs[ia[0]] = left_b[s][0]
    return dict(sorted(pairs.items()))


def transfer_state_dict(src_sd: dict[str, torch.Tensor], src_yaml: dict | None, dst_sd: dict[str, torch.Tensor],
                        dst_yaml: dict | None, exclude: tuple | list = ()) -> tuple[dict[str, torch.Tensor], int]:
    """The entries of ``src_sd`` to load into a model whose state_dict is ``dst_sd``, renamed to its indices.

    Args:
        src_sd: the checkpoint model's state_dict.
        src_yaml: the checkpoint model's yaml dict; None falls back to v6.1's matching by key.
        dst_sd: the new model's state_dict (for keys and shapes).
        dst_yaml: the new model's yaml dict.
        exclude: substrings of keys never transferred (v6.1 excludes ``anchor`` when a new cfg is given).

    Returns:
        ``(state_dict to load, number of entries whose layer index changed)``.
    """
    if not src_yaml or not dst_yaml or not _rows(src_yaml) or not _rows(dst_yaml):
        pairs = None
    else:
        pairs = align_layers(src_yaml, dst_yaml)
    renamed, old_key = {}, {}
    for k, v in src_sd.items():
        m = _KEY.match(k)
        if pairs is not None and m is not None:
            i = int(m.group(1))
            if i not in pairs:  # a layer without a partner: never loaded, whatever its shape
                continue
            k_new = f"model.{pairs[i]}.{m.group(2)}"
        else:
            k_new = k
        renamed[k_new], old_key[k_new] = v, k
    out = intersect_dicts(renamed, dst_sd, exclude=tuple(exclude))  # key, shape and exclude checks
    return out, sum(k != old_key[k] for k in out)


def load_pretrained(weights: str, cfg: str, nc: int, hyp: dict, resume: bool, device: torch.device):
    """Build the model and transfer a checkpoint's weights by name and shape.

    Layers are paired by aligning the checkpoint's yaml with the new one (models/transfer.py), so a ``--cfg`` with
    inserted, moved or removed layers still receives every shared layer; the log then says how many entries
    changed index: ``Transferred 348/354 items from yolov5s.pt (24 remapped)``. A checkpoint that holds only an
    EMA model, or (with ``--cfg``) a plain state_dict or a model without its yaml, transfers by layer name.

    Raises:
        CheckpointError: the file holds no usable weights, or cannot be resumed (the message says why).
    """
    ckpt = load_checkpoint(weights, map_location="cpu", allowed=safe_classes())
    try:
        src = checkpoint_model(ckpt, weights, prefer_ema=False)
        src_sd, src_yaml = src.float().state_dict(), getattr(src, "yaml", None)
    except CheckpointError:
        if resume or not isinstance(ckpt, dict):
            raise
        src_sd, src_yaml = plain_state_dict(ckpt, weights), None  # weights only: transfer by layer name
    if resume and isinstance(ckpt, dict) and ckpt.get("epoch") == -1:  # stripped at the end of training
        raise CheckpointError(f"{weights} training is finished (its last epoch ran and the optimizer state was "
                              f"stripped), nothing to resume. To train further, start a new run with --weights {weights}")
    if resume and not (isinstance(ckpt, dict) and ckpt.get("optimizer") is not None and src_yaml):
        raise CheckpointError(f"--resume {weights}: not a training checkpoint (it needs the model, its optimizer "
                              f"state and epoch, as train.py saves last.pt); start a new run with --weights {weights}")
    if not (cfg or src_yaml):
        raise CheckpointError(f"{weights} holds {describe_checkpoint(ckpt)} without its model yaml: pass "
                              f"--cfg <model.yaml> to say which model to build")
    model = Model(cfg or src_yaml, ch=3, nc=nc, anchors=hyp.get("anchors")).to(device)
    exclude = ["anchor"] if (cfg or hyp.get("anchors")) and not resume else []
    csd, remapped = transfer_state_dict(src_sd, src_yaml, model.state_dict(), model.yaml, exclude=exclude)
    model.load_state_dict(csd, strict=False)
    note = f" ({remapped} remapped)" if remapped else ""
    LOGGER.info(f"Transferred {len(csd)}/{len(model.state_dict())} items from {weights}{note}")
    return model, ckpt


def plain_state_dict(ckpt, weights: str) -> dict[str, torch.Tensor]:
    """The tensors of a state_dict checkpoint (``module.`` prefixes of DDP saves removed).

    Raises:
        CheckpointError: no tensors to transfer.
    """
    sd = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not (isinstance(sd, dict) and sd and all(isinstance(v, torch.Tensor) for v in sd.values())):
        raise CheckpointError(f"{weights} holds {describe_checkpoint(ckpt)}: no weights to transfer")
    return {k.removeprefix("module."): v for k, v in sd.items()}
