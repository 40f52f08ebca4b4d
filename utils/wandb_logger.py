"""Weights & Biases logging of a training run, when the optional ``wandb`` package is installed.

What is logged follows YOLOv5 v6.1: the run config (options and hyps), the label plots at the start, one commit
of the 13 ``results.csv`` scalars per epoch, the best epoch's metrics in the run summary, and at the end the final
metrics, the result plots and (not when evolving) the best weights as a ``model`` artifact. ``WANDB_MODE=offline``
(read by wandb itself) keeps the run on disk under the run folder, for ``wandb sync`` later.

Without ``wandb`` nothing is sent; the W&B flags (``--entity``, ``--upload_dataset``, ``--bbox_interval``,
``--artifact_alias``) then log one warning saying they are ignored. A W&B failure never stops training: the
first error is logged and W&B is turned off for the rest of the run.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Sequence

from utils.general import LOGGER, colorstr

PREFIX = colorstr("Weights & Biases: ")
RESULT_IMAGES = ("results.png", "confusion_matrix.png", "F1_curve.png", "PR_curve.png", "P_curve.png",
                 "R_curve.png")


def wandb_flags(opt: Any) -> list[str]:
    """The W&B options given a non-default value in ``opt``."""
    defaults = {"entity": None, "upload_dataset": False, "bbox_interval": -1, "artifact_alias": "latest"}
    return [f"--{k}" for k, d in defaults.items() if getattr(opt, k, d) != d]


class WandbLogger:
    """One W&B run for one training run.

    Args:
        opt: the training options (``project``, ``name``, ``entity``, ``evolve``...).
        hyp: the hyperparameters (logged in the config).
        save_dir: the run folder (the offline run and its files go under it).
    """

    def __init__(self, opt: Any, hyp: dict | None, save_dir: Path):
        import wandb

        self.wandb, self.save_dir = wandb, Path(save_dir)
        self.evolving = bool(getattr(opt, "evolve", None))
        project = str(getattr(opt, "project", "runs/train"))
        name = getattr(opt, "name", "exp")
        config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(opt).items()} if opt else {}
        config["hyp"] = dict(hyp or {})
        self.run = wandb.run or wandb.init(config=config, project="YOLOv5" if project.endswith("runs/train")
                                           else Path(project).stem, entity=getattr(opt, "entity", None),
                                           name=None if name == "exp" else name, job_type="Training",
                                           resume="allow", allow_val_change=True, dir=str(self.save_dir))

    @classmethod
    def create(cls, opt: Any, hyp: dict | None, save_dir: Path) -> "WandbLogger | None":
        """A logger when ``wandb`` is importable and starts, else None (with one message saying why)."""
        if importlib.util.find_spec("wandb") is None:
            flags = wandb_flags(opt)
            if flags:
                LOGGER.warning(f"{PREFIX}WARNING: {', '.join(flags)} ignored: wandb is not installed "
                               f"(pip install wandb)")
            else:
                LOGGER.info(f"{PREFIX}run 'pip install wandb' to automatically track and visualize YOLOv5 🚀 runs")
            return None
        try:
            return cls(opt, hyp, save_dir)
        except Exception as e:  # not logged in, no network in online mode, a broken install...
            LOGGER.warning(f"{PREFIX}WARNING: W&B could not start ({type(e).__name__}: {e}); training goes on "
                           f"without it (WANDB_MODE=offline logs to disk)")
            return None

    def _safe(self, fn, *args, **kwargs) -> bool:
        """Call a W&B function; on failure log once and turn W&B off. Returns whether it worked."""
        if self.run is None:
            return False
        try:
            fn(*args, **kwargs)
            return True
        except Exception as e:
            LOGGER.warning(f"{PREFIX}An error occurred in wandb logger. The training will proceed without "
                           f"interruption. More info\n{e}")
            self.run = None
            return False

    def _images(self, files: Sequence[Path]) -> list:
        return [self.wandb.Image(str(f), caption=f.name) for f in files if f.exists()]

    def log_labels(self) -> None:
        """The label plots (``labels*.jpg``) as ``Labels``."""
        ims = self._images(sorted(self.save_dir.glob("labels*.jpg")))
        if ims:
            self._safe(self.run.log, {"Labels": ims}, commit=False)

    def log_epoch(self, keys: Sequence[str], vals: Sequence[float], best: bool, epoch: int) -> None:
        """One commit of the epoch's scalars; the best epoch's metrics go to the summary."""
        data = dict(zip(keys, (float(v) for v in vals)))
        if self._safe(self.run.log, data) and best:
            for k in ("metrics/precision", "metrics/recall", "metrics/mAP_0.5", "metrics/mAP_0.5:0.95"):
                if k in data:
                    self.run.summary[f"best/{k.split('/')[1]}"] = data[k]
            self.run.summary["best/epoch"] = epoch

    def update_config(self, params: dict) -> None:
        """Config values that change after the start (the scaled hyps)."""
        self._safe(self.run.config.update, {"hyp": dict(params)}, allow_val_change=True)

    def finish(self, keys: Sequence[str], results: Sequence[float], best: Path, last: Path) -> None:
        """The final metrics and result plots; the best weights as an artifact (not when evolving); close."""
        if self.run is None:
            return
        data = dict(zip(keys[3:10], (float(v) for v in results)))
        ims = self._images([self.save_dir / f for f in RESULT_IMAGES])
        self._safe(self.run.log, {**data, **({"Results": ims} if ims else {})})
        weights = best if best.exists() else last
        if not self.evolving and weights.exists():
            art = self.wandb.Artifact(f"run_{self.run.id}_model", type="model")
            art.add_file(str(weights), name=weights.name)
            self._safe(self.run.log_artifact, art, aliases=["latest", "best", "stripped"])
        self.close()

    def close(self) -> None:
        """Finish the W&B run (also for a run that stopped or failed)."""
        self._safe(self.run.finish)
        self.run = None
