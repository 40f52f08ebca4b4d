"""Record what chosen layers receive and return during a forward pass (and, optionally, their output gradients).

One mechanism for everything that needs to look inside a forward: attention heatmaps, EigenCAM / Grad-CAM, the
input shapes that the latency benchmark times layers at. Nothing here knows any model::

    with Recorder([(17, model.model[17]), (20, model.model[20])]) as rec:
        model(im)
    rec[17].output, rec[17].inputs      # detached copies, taken at the first call of layer 17

    with torch.enable_grad(), Recorder([(17, layer)], grad=True) as rec:
        score = model(im)[0][..., 4].max()
    score.backward()
    rec[17].grad                         # d score / d (layer 17's output), same shape as rec[17].output

``models.yolo.Model.record(indices)`` builds one over a model's own layers.

Rules:

* Only the **first** call of each layer after entering (or :meth:`Recorder.reset`) is kept: test-time
  augmentation runs the model several times, and the first run is the un-augmented image.
* ``inputs`` (the positional arguments) are copied *before* the layer runs and ``output`` right after it, as
  detached clones, through lists, tuples and dicts: in-place operations later in the forward (or inside the
  layer, e.g. ``Detect`` rewriting its input list) do not change them.
* With ``grad=True`` the live output stays in the autograd graph and a tensor hook stores the gradient that a
  later ``backward()`` sends to it (accumulated over backward passes, like ``.grad``). An output that does not
  require gradients (frozen parameters, an input without gradients) is replaced by a detached alias that does,
  so it becomes the leaf the gradient stops at; nothing upstream of it changes. Gradients are only recorded when
  autograd is enabled during the forward, and only for a top-level tensor output.
* Hooks are registered on entering and removed on exit, also when the forward raises; the records stay
  readable after the ``with`` block, and the gradient hooks (on the tensors, not the modules) still fire.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import torch
import torch.nn as nn
from torch.utils.hooks import RemovableHandle

__all__ = ["Record", "Recorder", "detached"]


def detached(x: Any) -> Any:
    """A detached clone of ``x``: tensors cloned, lists / tuples / dicts copied recursively, anything else as is."""
    if isinstance(x, torch.Tensor):
        return x.detach().clone()
    if isinstance(x, (list, tuple)):
        items = [detached(v) for v in x]
        return type(x)(items) if not hasattr(x, "_fields") else type(x)(*items)  # a namedtuple too
    if isinstance(x, dict):
        return {k: detached(v) for k, v in x.items()}
    return x


@dataclass
class Record:
    """What one layer received and returned at its first call.

    Attributes:
        index: the index the layer was given under (its yaml row for a YOLOv5 model).
        module: the layer.
        inputs: detached clones of the positional arguments, taken before the call.
        output: detached clone of what it returned.
        grad: with ``grad=True``, the gradient of a backward pass with respect to the output (a tensor of the
            output's shape), else None; None too until a backward reaches it.
    """

    index: int
    module: nn.Module
    inputs: tuple
    output: Any
    grad: torch.Tensor | None = None


class Recorder:
    """Forward hooks on ``(index, module)`` pairs that keep each module's inputs, output and output gradient.

    A context manager: hooks exist only inside the ``with`` block (see the module docstring for the rules).
    Indexing by layer index gives its :class:`Record`.

    Args:
        layers: ``(index, module)`` pairs to record; indices must be distinct.
        grad: also record the gradient of each output (Grad-CAM); see the module docstring.

    Raises:
        ValueError: an index given twice.
    """

    def __init__(self, layers: Iterable[tuple[int, nn.Module]], grad: bool = False) -> None:
        self.layers = [(int(i), m) for i, m in layers]
        indices = [i for i, _ in self.layers]
        if len(set(indices)) != len(indices):
            raise ValueError(f"Recorder: each layer index once, got {indices}")
        self.grad = grad
        self.records: dict[int, Record] = {}
        self._pending: dict[int, tuple] = {}  # inputs of a call that has started and not returned yet
        self._handles: list[RemovableHandle] = []

    # ------------------------------------------------------------------------------------------ hooks
    def _pre_hook(self, i: int):
        def hook(module: nn.Module, inputs: tuple) -> None:
            if i not in self.records and i not in self._pending:
                self._pending[i] = detached(inputs)
        return hook

    def _hook(self, i: int):
        def hook(module: nn.Module, inputs: tuple, output: Any) -> Any:
            if i not in self._pending:
                return None  # a later call (TTA): leave it alone
            self.records[i] = Record(i, module, self._pending.pop(i), detached(output))
            if self.grad and isinstance(output, torch.Tensor) and torch.is_grad_enabled() \
                    and (output.is_floating_point() or output.is_complex()):
                if not output.requires_grad:
                    output = output.detach().requires_grad_(True)  # the leaf the gradient stops at
                output.register_hook(self._grad_hook(i))
                return output
            return None  # None: the layer's output is used as it is
        return hook

    def _grad_hook(self, i: int):
        def hook(g: torch.Tensor) -> None:
            r = self.records.get(i)
            if r is not None:
                r.grad = g.detach().clone() if r.grad is None else r.grad + g.detach()
        return hook

    # ------------------------------------------------------------------------------------------ API
    def reset(self) -> None:
        """Forget the records: the next call of each layer is recorded again."""
        self.records.clear()
        self._pending.clear()

    def open(self) -> Recorder:
        """Reset and register the hooks (what entering the ``with`` block does).

        Raises:
            RuntimeError: the hooks are already registered.
        """
        if self._handles:
            raise RuntimeError("Recorder is already recording: enter it once at a time")
        self.reset()
        for i, m in self.layers:
            self._handles.append(m.register_forward_pre_hook(self._pre_hook(i)))
            self._handles.append(m.register_forward_hook(self._hook(i)))
        return self

    def close(self) -> None:
        """Remove the hooks (records are kept)."""
        for h in self._handles:
            h.remove()
        self._handles = []
        self._pending.clear()

    def __enter__(self) -> Recorder:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getitem__(self, index: int) -> Record:
        """The record of layer ``index``.

        Raises:
            KeyError: that layer is not recorded here, or did not run.
        """
        try:
            return self.records[index]
        except KeyError:
            known = [i for i, _ in self.layers]
            why = "did not run" if index in known else f"is not recorded (recorded: {known})"
            raise KeyError(f"layer {index} {why}") from None

    def __contains__(self, index: object) -> bool:
        return index in self.records

    def __iter__(self) -> Iterator[Record]:
        """The records, in index order."""
        return iter([self.records[i] for i in sorted(self.records)])

    def __len__(self) -> int:
        return len(self.records)
