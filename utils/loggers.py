"""Run loggers: ``results.csv`` (exact v6.1 format), TensorBoard scalars/images and training plots.

Every public method is named after a train.py hook, so train.py can register them all on its
``Callbacks``. Weights & Biases logs too when ``wandb`` is installed (``utils/wandb_logger.py``).
"""

from __future__ import annotations

import logging
import threading
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from utils.general import LOGGER, colorstr
from utils.plots import plot_images, plot_labels, plot_results
from utils.torch_utils import de_parallel
from utils.wandb_logger import WandbLogger

LOGGERS = ("csv", "tb", "wandb")  # what this project can log to (wandb: when installed)

KEYS: tuple[str, ...] = (
    "train/box_loss", "train/obj_loss", "train/cls_loss",  # train loss
    "metrics/precision", "metrics/recall", "metrics/mAP_0.5", "metrics/mAP_0.5:0.95",  # metrics
    "val/box_loss", "val/obj_loss", "val/cls_loss",  # val loss
    "x/lr0", "x/lr1", "x/lr2")  # learning rates, one per parameter group

_tb_warned = False  # the TensorBoard import warning is logged once per process


def csv_header(keys: Sequence[str] = KEYS) -> str:
    """The ``results.csv`` header line (no newline): every cell ``%20s``, comma separated."""
    return ",".join("%20s" % k for k in ("epoch", *keys))


def csv_row(epoch: int | float, vals: Sequence[float]) -> str:
    """One ``results.csv`` row (no newline): epoch and values each ``%20.5g``, comma separated."""
    return ",".join("%20.5g" % float(v) for v in (epoch, *vals))


def _summary_writer(log_dir: Path):
    """A TensorBoard ``SummaryWriter`` for ``log_dir``, or None (warning once) when TensorBoard is unusable."""
    global _tb_warned
    try:
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(log_dir))
    except Exception as e:  # tensorboard not installed or broken
        if not _tb_warned:
            LOGGER.warning(f"{colorstr('TensorBoard: ')}WARNING: not available ({e}), TensorBoard logging skipped")
            _tb_warned = True
        return None


class Loggers:
    """CSV + TensorBoard logging and the training plots of one run.

    Args:
        save_dir: the run folder (``runs/train/exp``).
        weights: initial weights path (unused; kept for the v6.1 signature).
        opt: training options; ``opt.evolve`` disables TensorBoard.
        hyp: hyperparameters (unused; kept for the v6.1 signature).
        logger: where messages go (default the project LOGGER).
        include: loggers to enable, from ``('csv', 'tb', 'wandb')``.
    """

    def __init__(self, save_dir: Path | str | None = None, weights: str | None = None, opt: Any = None,
                 hyp: dict | None = None, logger: logging.Logger | None = None,
                 include: Sequence[str] = LOGGERS) -> None:
        self.save_dir = Path(save_dir) if save_dir is not None else Path("runs/train/exp")
        self.weights, self.opt, self.hyp = weights, opt, hyp
        self.logger = logger or LOGGER
        self.include = tuple(include)
        self.keys = list(KEYS)
        self.csv = "csv" in self.include
        self.tb = None
        self._threads: list[threading.Thread] = []
        if self.csv:
            self.save_dir.mkdir(parents=True, exist_ok=True)
        self.wandb = WandbLogger.create(opt, hyp, self.save_dir) if "wandb" in self.include else None
        if "tb" in self.include and not getattr(opt, "evolve", False):
            self.tb = _summary_writer(self.save_dir)
            if self.tb is not None:
                self.logger.info(f"{colorstr('TensorBoard: ')}Start with 'tensorboard --logdir "
                                 f"{self.save_dir.parent}', view at http://localhost:6006/")

    # ----------------------------------------------------------------------------------------------- hooks
    def on_pretrain_routine_end(self, labels: np.ndarray | None = None, names: Sequence[str] | dict = (),
                                plots: bool = True) -> None:
        """Plot ``labels.jpg`` / ``labels_correlogram.jpg`` when dataset ``labels`` (n, 5) are given."""
        if plots and labels is not None and len(labels):
            self.save_dir.mkdir(parents=True, exist_ok=True)
            plot_labels(labels, names, self.save_dir)
        if self.wandb:
            self.wandb.log_labels()

    def on_train_batch_end(self, ni: int, model: torch.nn.Module, imgs: torch.Tensor, targets: torch.Tensor,
                           paths: Sequence[str], plots: bool, sync_bn: bool) -> None:
        """First batches: model graph to TensorBoard (ni 0) and ``train_batch{ni}.jpg`` for ni < 3 (in a thread)."""
        if not plots:
            return
        if ni == 10 and self.wandb:  # the three mosaics are written (v6.1 logs them at batch 10)
            for t in self._threads:
                t.join()
            self.wandb.log_mosaics()
        if ni == 0 and self.tb is not None and not sync_bn:
            self._add_graph(model, imgs)
        if ni < 3:
            f = self.save_dir / f"train_batch{ni}.jpg"
            args = (imgs.detach().cpu().clone(), targets.detach().cpu().clone(), list(paths), f)
            t = threading.Thread(target=self._plot_images_safe, args=args, daemon=True)
            t.start()
            self._threads.append(t)

    def on_train_epoch_end(self, epoch: int) -> None:
        """Called after the last batch of an epoch (W&B: the epoch whose validation follows)."""
        self.current_epoch = epoch
        if self.wandb:
            self.wandb.epoch = epoch + 1  # epochs trained: v6.1 logs BoundingBoxDebugger at (epoch + 1) % interval

    def on_val_image_end(self, pred: Any = None, predn: Any = None, path: Any = None, names: Any = None,
                         im: Any = None) -> None:
        """Per validation image: W&B collects it for ``BoundingBoxDebugger`` on ``--bbox_interval`` epochs."""
        if self.wandb and pred is not None:
            self.wandb.val_image(pred, path, names, im)

    def on_val_end(self) -> None:
        """After a validation with plots (nothing to do: W&B logs its images with the epoch's scalars)."""

    def on_fit_epoch_end(self, vals: Sequence[float], epoch: int, best_fitness: float | np.ndarray,
                         fi: float | np.ndarray) -> None:
        """Append the epoch row to ``results.csv`` (header first) and log the scalars to TensorBoard."""
        vals = [float(v) for v in vals]
        if self.csv:
            file = self.save_dir / "results.csv"
            header = "" if file.exists() else csv_header(self.keys[:len(vals)]) + "\n"
            with open(file, "a") as f:
                f.write(header + csv_row(epoch, vals) + "\n")
        if self.tb is not None:
            for k, v in zip(self.keys, vals):
                self.tb.add_scalar(k, v, epoch)
            self.tb.flush()
        if self.wandb:
            self.wandb.log_debug_images()  # BoundingBoxDebugger, in the epoch's commit
            self.wandb.log_epoch(self.keys, vals, best=float(best_fitness) == float(fi), epoch=epoch)

    def on_model_save(self, last: Path, epoch: int, final_epoch: bool, best_fitness: float | np.ndarray,
                      fi: float | np.ndarray) -> None:
        """After a checkpoint is written: W&B logs ``last.pt`` as an artifact every ``--save-period`` epochs."""
        period = int(getattr(self.opt, "save_period", -1) or -1)
        if self.wandb and period > 0 and (epoch + 1) % period == 0 and not final_epoch:
            self.wandb.log_model(last, epoch, float(fi), best=float(best_fitness) == float(fi))

    def on_params_update(self, params: dict) -> None:
        """The run's hyperparameters after the loss-gain scaling (to the W&B config)."""
        if self.wandb:
            self.wandb.update_config(params)

    def on_train_end(self, last: Path, best: Path, plots: bool, epoch: int, results: Sequence[float]) -> None:
        """Finish the batch plots, draw ``results.png`` and send the result images to TensorBoard."""
        for t in self._threads:
            t.join()
        self._threads.clear()
        if plots and (self.save_dir / "results.csv").exists():
            plot_results(file=self.save_dir / "results.csv")
        if self.tb is not None:
            import cv2

            names = ["results.png", "confusion_matrix.png", *(f"{x}_curve.png" for x in ("F1", "PR", "P", "R"))]
            for f in (self.save_dir / n for n in names):
                im = cv2.imread(str(f)) if f.exists() else None
                if im is not None:
                    self.tb.add_image(f.stem, np.ascontiguousarray(im[..., ::-1]), epoch, dataformats="HWC")
            self.tb.close()
            self.tb = None
        if self.wandb:
            self.wandb.finish(self.keys, results, best, last)

    def teardown(self) -> None:
        """The end of a run however it ended (also a stopped or failed one): finish the batch plots and close
        TensorBoard. Nothing is left to do after ``on_train_end``."""
        for t in self._threads:
            t.join()
        self._threads.clear()
        if self.tb is not None:
            self.tb.close()
            self.tb = None
        if self.wandb and self.wandb.run is not None:  # a run that failed or stopped: close the W&B run too
            self.wandb.close()

    # ----------------------------------------------------------------------------------------------- helpers
    def _add_graph(self, model: torch.nn.Module, imgs: torch.Tensor) -> None:
        """Trace the model on one image and add the graph to TensorBoard; failures only warn."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # jit tracer warnings
                self.tb.add_graph(torch.jit.trace(de_parallel(model), imgs[0:1], strict=False), [])
        except Exception as e:
            self.logger.warning(f"{colorstr('TensorBoard: ')}WARNING: model graph visualization failed {e}")

    def _plot_images_safe(self, imgs: torch.Tensor, targets: torch.Tensor, paths: list, f: Path) -> None:
        try:
            plot_images(imgs, targets, paths, f)
        except Exception as e:  # a plotting failure must never stop training
            self.logger.warning(f"WARNING: plotting {f.name} failed: {e}")
