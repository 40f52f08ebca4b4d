"""Pretrained weight transfer that survives inserted, moved and removed layers.

YOLOv5 v6.1 transfers a checkpoint by state_dict key and shape (facts §6.4). Keys carry the layer index
(``model.17.cv1.conv.weight``), so one layer inserted at index 10 shifts every later key: those layers are lost, or
worse, a layer that only happens to have the same shape at the old index is loaded with unrelated weights.

Here the two layer lists (the checkpoint's yaml and the new model's) are aligned first. Each layer is described by
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

from utils.torch_utils import intersect_dicts

_KEY = re.compile(r"^model\.(\d+)\.(.*)$")


def _rows(d: dict) -> list:
    return list(d.get("backbone") or []) + list(d.get("head") or [])


def signature(row: list) -> str:
    """A layer's identity for alignment: module name, repeat count and yaml arguments (``from`` excluded)."""
    _, n, module, args = row
    return f"{module}|{n}|{args!r}"


def align_layers(src: dict, dst: dict) -> dict[int, int]:
    """Pair the layers of two model dicts: ``{source index: destination index}``.

    Args:
        src: the checkpoint's model dict (``model.yaml``).
        dst: the new model's dict.

    Returns:
        The pairs, in order (inserted/removed layers have no entry; a moved layer is paired when its signature is
        unique among the unpaired layers on both sides).
    """
    a, b = [signature(r) for r in _rows(src)], [signature(r) for r in _rows(dst)]
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
    out = intersect_dicts(renamed, dst_sd, exclude=tuple(exclude))  # key, shape and exclude checks (facts §6.4)
    return out, sum(k != old_key[k] for k in out)
