"""Training / validation hooks: named lists of callables run in registration order.

Every hook in :data:`HOOKS` is fired by train.py or val.py, with these arguments (positional unless written
``name=``). "Every rank" hooks run in each DDP process; the others only on rank 0 (or in a single process).

train.py, in order:

- ``on_pretrain_routine_start()``: the run folder, hyps and run loggers exist; nothing loaded yet. Every rank.
- ``on_pretrain_routine_end()``: data, model, optimizer and loaders are ready (before the DDP wrap). Rank 0.
- ``on_params_update(params: dict)``: a copy of the run's hyperparameters once the loss gains are scaled to the
  classes, detection levels and image size (what ``ComputeLoss`` and ``model.hyp`` use). Every rank.
- ``on_train_start()``: setup done, before the first epoch. Every rank.
- ``on_train_epoch_start(epoch=int)``: the model is in train mode, before the epoch's first batch. Every rank.
- ``on_train_batch_start(ni: int, epoch: int)``: a batch was loaded; ``ni`` counts batches since training
  began. Every rank.
- ``optimizer_step(model: nn.Module, optimizer: Optimizer)``: before each optimizer step, after ``backward``
  and after ``GradScaler.unscale_`` (the gradients are the true ones under AMP too); change ``.grad`` here
  (the ``regularizers`` of ``utils.regularizers`` do). Once per optimizer step, every rank.
- ``on_before_zero_grad(model: nn.Module, optimizer: Optimizer)``: after the optimizer step, before the
  gradients are zeroed. Every rank.
- ``on_train_batch_end(ni: int, model: nn.Module, imgs: Tensor, targets: Tensor, paths: list, plots: bool,
  sync_bn: bool)``: after the batch's losses were logged; a callback may set ``stop_training``. Rank 0.
- ``on_train_epoch_end(epoch=int)``: after the epoch's last batch and the LR scheduler step. Rank 0.
- ``on_fit_epoch_end(vals: list, epoch: int, best_fitness: float, fi: float)``: after the epoch's validation;
  ``vals`` = 3 train losses, P, R, mAP@.5, mAP@.5:.95, 3 val losses, 3 learning rates. Rank 0.
- ``on_model_save(last: Path, epoch: int, final_epoch: bool, best_fitness: float, fi: float)``: after the
  epoch's checkpoints were written. Rank 0.
- ``on_train_end(last: Path, best: Path, plots: bool, epoch: int, results: tuple)``: after the final
  validation of best.pt. Rank 0.
- ``teardown()``: the very end of ``train()``, however it ends (finished, stopped by a callback, or an
  exception). Every rank.

val.py (``val.run``; during training on rank 0, with the training's callbacks):

- ``on_val_start()``: model and dataloader ready, before the first batch.
- ``on_val_batch_start()``: before each batch is moved to the device.
- ``on_val_image_end(pred: Tensor, predn: Tensor, path: Path, names: dict, im: Tensor)``: per image with
  predictions: ``pred`` in input-image pixels, ``predn`` in original-image pixels, ``im`` the input image.
- ``on_val_batch_end(batch_i: int, im: Tensor, targets: Tensor, paths: list, shapes: list, out: list)``:
  after a batch; ``targets`` in input-image pixels, ``out`` the per-image detections after NMS.
- ``on_val_end()``: after the metrics and the confusion-matrix plot, before the optional COCO evaluation; only
  when the validation plots (as in v6.1: the final validation of a training run, or ``val.py``).
"""

from __future__ import annotations

from typing import Any, Callable

HOOKS: tuple[str, ...] = (
    # train.py
    "on_pretrain_routine_start", "on_pretrain_routine_end", "on_train_start", "on_train_epoch_start",
    "on_train_batch_start", "optimizer_step", "on_before_zero_grad", "on_train_batch_end", "on_train_epoch_end",
    # val.py
    "on_val_start", "on_val_batch_start", "on_val_image_end", "on_val_batch_end", "on_val_end",
    # fit = train + val
    "on_fit_epoch_end", "on_model_save", "on_train_end", "on_params_update", "teardown",
)


class Callbacks:
    """Registry of actions per hook; ``run(hook, ...)`` calls them in order. ``stop_training`` ends training."""

    def __init__(self) -> None:
        self._callbacks: dict[str, list[dict[str, Any]]] = {k: [] for k in HOOKS}
        self.stop_training = False  # set True from any callback to end training after the current batch

    def register_action(self, hook: str, name: str = "", callback: Callable[..., Any] | None = None) -> None:
        """Append ``callback`` (called ``name``) to ``hook``.

        Raises:
            KeyError: unknown hook name.
            TypeError: ``callback`` is not callable.
        """
        if hook not in self._callbacks:
            raise KeyError(f"hook '{hook}' not found in callbacks {list(self._callbacks)}")
        if not callable(callback):
            raise TypeError(f"callback '{callback}' is not callable")
        self._callbacks[hook].append({"name": name, "callback": callback})

    def get_registered_actions(self, hook: str | None = None) -> list[dict[str, Any]] | dict[str, list[dict[str, Any]]]:
        """The ``{'name', 'callback'}`` entries of ``hook``, or the whole table when ``hook`` is None."""
        return self._callbacks[hook] if hook else self._callbacks

    def unregister(self, name: str) -> None:
        """Remove every action registered under ``name`` (on every hook)."""
        for hook, actions in self._callbacks.items():
            self._callbacks[hook] = [a for a in actions if a["name"] != name]

    def run(self, hook: str, *args: Any, **kwargs: Any) -> None:
        """Call every action registered on ``hook`` with the given arguments, in registration order.

        Raises:
            KeyError: unknown hook name.
        """
        if hook not in self._callbacks:
            raise KeyError(f"hook '{hook}' not found in callbacks {list(self._callbacks)}")
        for logger in self._callbacks[hook]:
            logger["callback"](*args, **kwargs)
