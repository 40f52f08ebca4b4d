"""The training loader whose workers live as long as the loader, and what every loader worker sets first."""

from __future__ import annotations

from typing import Any, Iterator

import cv2
from torch.utils.data import DataLoader


def worker_init(worker_id: int) -> None:
    """Run first in every loader worker: OpenCV without its own thread pool (``cv2.setNumThreads(0)``), as YOLOv5
    v6.1 sets it; each worker is already one of ``num_workers`` processes, so OpenCV threads inside it only add
    context switches."""
    cv2.setNumThreads(0)


class _RepeatSampler:
    """Iterates a batch sampler again and again, so the DataLoader iterator (and its workers) never ends."""

    def __init__(self, sampler: Any):
        self.sampler = sampler

    def __iter__(self) -> Iterator:
        while True:
            yield from iter(self.sampler)


class InfiniteDataLoader(DataLoader):
    """DataLoader whose worker processes are created once and reused for every epoch.

    ``len()`` is the number of batches per epoch; each ``iter()`` yields exactly one epoch.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        object.__setattr__(self, "batch_sampler", _RepeatSampler(self.batch_sampler))
        # workers start now, forked from the process as it is while the loaders are built (before training has
        # grown it); without workers the iterator is made at the first epoch
        self._epoch_iterator = super().__iter__() if self.num_workers > 0 else None

    def __len__(self) -> int:
        return len(self.batch_sampler.sampler)

    def __iter__(self) -> Iterator:
        if self._epoch_iterator is None:
            self._epoch_iterator = super().__iter__()
        for _ in range(len(self)):
            yield next(self._epoch_iterator)

    def close(self) -> None:
        """Stop the workers now (a later ``iter()`` starts new ones).

        Workers prefetch batches that nobody reads once training ends; a worker cannot exit while those sit in its
        queue, so PyTorch's own shutdown (when the loader is garbage-collected, at some later point of the
        process) waits 5 s per worker before killing it: 20 s in the middle of the next ``train.run``. Nothing is
        left to read, so the workers are terminated first and the shutdown is immediate.
        """
        it, self._epoch_iterator = self._epoch_iterator, None
        if it is None:
            return
        for w in getattr(it, "_workers", []):
            if w.is_alive():
                w.terminate()
        shutdown = getattr(it, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
