"""Training / validation hooks: named lists of callables run in registration order."""

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
