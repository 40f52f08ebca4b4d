"""Weights & Biases logging of a training run, when the optional ``wandb`` package is installed.

What is logged follows YOLOv5 v6.1: the run config (options and hyps), the label plots at the start, the first
training mosaics (``Mosaics``), one commit of the 13 ``results.csv`` scalars per epoch, up to 16 validation images
with their predicted boxes every ``--bbox_interval`` epochs (``BoundingBoxDebugger``), the best epoch's metrics in
the run summary, ``last.pt`` as a ``run_<id>_model`` artifact every ``--save-period`` epochs, and at the end the
final metrics, the result and validation plots and (not when evolving) the best weights as a ``model`` artifact.
``--upload_dataset`` (``val``: the val split only) logs the splits as ``dataset`` artifacts with a table of the
images and their boxes. ``WANDB_MODE=offline`` (read by wandb itself) keeps the run on disk under the run folder,
for ``wandb sync`` later; ``--resume`` continues the run's W&B run (its id is read from the run folder).

Not supported: ``wandb-artifact://`` dataset paths and resuming from a W&B artifact (v6.1's
``--resume wandb-artifact://...``), and v6.1's per-epoch evaluation table of ``--upload_dataset``.

Without ``wandb`` nothing is sent; the W&B flags (``--entity``, ``--upload_dataset``, ``--bbox_interval``,
``--artifact_alias``) then log one warning saying they are ignored. A W&B failure never stops training: the
first error is logged and W&B is turned off for the rest of the run.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Sequence

from utils.general import LOGGER, colorstr
from utils.labels import img2label_paths, img_files_from_path

PREFIX = colorstr("Weights & Biases: ")
MAX_DEBUG_IMAGES = 16  # BoundingBoxDebugger images per logged epoch
RESULT_IMAGES = ("results.png", "confusion_matrix.png", "F1_curve.png", "PR_curve.png", "P_curve.png",
                 "R_curve.png")


def wandb_flags(opt: Any) -> list[str]:
    """The W&B options given a non-default value in ``opt``."""
    defaults = {"entity": None, "upload_dataset": False, "bbox_interval": -1, "artifact_alias": "latest"}
    return [f"--{k}" for k, d in defaults.items() if getattr(opt, k, d) != d]


def _label_rows(file: Path) -> list[tuple[int, float, float, float, float]]:
    """The well-formed ``cls x y w h`` rows of a YOLO label file (none when it is missing); bad rows are skipped
    here, as training reports them."""
    out = []
    for line in file.read_text(encoding="utf-8-sig").splitlines() if file.exists() else []:
        try:
            c, *xywh = (float(v) for v in line.split())
        except ValueError:
            continue
        if len(xywh) == 4:
            out.append((int(c), *xywh))
    return out


def bbox_interval(opt: Any) -> int:
    """Epochs between ``BoundingBoxDebugger`` logs: ``--bbox_interval``, where -1 means epochs // 10 (at least 1);
    never while evolving."""
    epochs = int(getattr(opt, "epochs", 1) or 1)
    if getattr(opt, "evolve", None):
        return epochs + 1
    n = int(getattr(opt, "bbox_interval", -1))
    return n if n > 0 else (epochs // 10 if epochs > 10 else 1)


def resumed_run_id(save_dir: Path) -> str | None:
    """The W&B run id of an earlier session of this run folder (``wandb/latest-run`` -> ``...-<id>``)."""
    latest = Path(save_dir) / "wandb" / "latest-run"
    return latest.resolve().name.rsplit("-", 1)[-1] if latest.exists() else None


class WandbLogger:
    """One W&B run for one training run.

    Args:
        opt: the training options (``project``, ``name``, ``entity``, ``evolve``...).
        hyp: the hyperparameters (logged in the config).
        save_dir: the run folder (the offline run and its files go under it).
    """

    def __init__(self, opt: Any, hyp: dict | None, save_dir: Path):
        import wandb

        self.wandb, self.save_dir, self.opt = wandb, Path(save_dir), opt
        self.evolving = bool(getattr(opt, "evolve", None))
        self.bbox_interval, self.epoch, self.debug_images, self.mosaics_logged = bbox_interval(opt), 0, [], False
        resume = getattr(opt, "resume", False)
        project = str(getattr(opt, "project", "runs/train"))
        name = getattr(opt, "name", "exp")
        config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(opt).items()} if opt else {}
        config["hyp"] = dict(hyp or {})
        self.run = wandb.run or wandb.init(config=config, project="YOLOv5" if project.endswith("runs/train")
                                           else Path(project).stem, entity=getattr(opt, "entity", None),
                                           name=None if name == "exp" else name, job_type="Training",
                                           resume="allow", allow_val_change=True, dir=str(self.save_dir),
                                           id=resumed_run_id(self.save_dir) if resume else None)
        upload = getattr(opt, "upload_dataset", False)
        if upload and not resume and getattr(opt, "data", None):
            try:
                self.upload_dataset(opt.data, ("val",) if upload == "val" else ("train", "val"))
            except Exception as e:  # a dataset that cannot be uploaded never stops training (nor W&B)
                LOGGER.warning(f"{PREFIX}WARNING: --upload_dataset failed ({type(e).__name__}: {e})")

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

    def log_mosaics(self) -> None:
        """The first training mosaics (``train_batch*.jpg``) as ``Mosaics``, once."""
        ims = self._images(sorted(self.save_dir.glob("train*.jpg")))
        if ims and not self.mosaics_logged:
            self.mosaics_logged = self._safe(self.run.log, {"Mosaics": ims}, commit=False)

    def val_image(self, pred: Any, path: Any, names: Sequence[str] | dict, im: Any) -> None:
        """Collect one validation image with its predictions (letterboxed pixels) on ``--bbox_interval`` epochs."""
        if (self.run is None or self.epoch == 0 or self.epoch % self.bbox_interval or im is None
                or len(self.debug_images) >= MAX_DEBUG_IMAGES):
            return
        names = dict(enumerate(names)) if not isinstance(names, dict) else names
        boxes = [{"position": {"minX": float(x1), "minY": float(y1), "maxX": float(x2), "maxY": float(y2)},
                  "class_id": int(c), "box_caption": f"{names[int(c)]} {float(conf):.3f}",
                  "scores": {"class_score": float(conf)}, "domain": "pixel"}
                 for x1, y1, x2, y2, conf, c in pred.tolist()]
        img = im.detach().float().cpu()
        img = img / 255 if img.max() > 1 else img  # CHW, 0-1
        self.debug_images.append(self.wandb.Image(img, caption=Path(str(path)).name, boxes={
            "predictions": {"box_data": boxes, "class_labels": {int(k): str(v) for k, v in names.items()}}}))

    def log_debug_images(self) -> None:
        """The collected validation images as ``BoundingBoxDebugger`` (committed with the epoch's scalars)."""
        if self.debug_images:
            self._safe(self.run.log, {"BoundingBoxDebugger": self.debug_images}, commit=False)
            self.debug_images = []

    def log_model(self, last: Path, epoch: int, fitness: float, best: bool) -> None:
        """``last.pt`` as a ``run_<id>_model`` artifact with v6.1's metadata and aliases (``--save-period``)."""
        if self.run is None or not Path(last).exists():
            return
        meta = {"original_url": str(last), "epochs_trained": epoch + 1, "save period": self.opt.save_period,
                "project": str(self.opt.project), "total_epochs": self.opt.epochs,
                "fitness_score": float(fitness)}
        art = self.wandb.Artifact(f"run_{self.run.id}_model", type="model", metadata=meta)
        art.add_file(str(last), name="last.pt")
        if self._safe(self.run.log_artifact, art, aliases=["latest", "last", f"epoch {epoch + 1}",
                                                           "best" if best else ""]):
            LOGGER.info(f"{PREFIX}Saving model artifact on epoch {epoch + 1}")

    def upload_dataset(self, data: Any, splits: Sequence[str]) -> None:
        """Log each split as a ``dataset`` artifact: ``data/images/<file>`` and ``data/labels/<stem>.txt`` for every
        image of the split (folders or ``.txt`` lists), and a table ``id, train_image, Classes, name`` whose images
        carry their ground-truth boxes."""
        from utils.dataset_yaml import check_dataset  # the dataset is checked again by training right after

        d = check_dataset(data)
        names = dict(enumerate(d["names"]))
        class_set = self.wandb.Classes([{"id": k, "name": v} for k, v in names.items()])  # one object: W&B
        for split in splits:
            files = img_files_from_path(d[split])
            art = self.wandb.Artifact(split, type="dataset")
            table = self.wandb.Table(columns=["id", "train_image", "Classes", "name"])
            for si, (f, lab) in enumerate(zip(map(Path, files), map(Path, img2label_paths(files)))):
                art.add_file(str(f), name=f"data/images/{f.name}")
                rows = _label_rows(lab)
                if lab.exists():
                    art.add_file(str(lab), name=f"data/labels/{lab.name}")
                boxes = [{"position": {"middle": [x, y], "width": w, "height": h}, "class_id": c,
                          "box_caption": names.get(c, str(c))} for c, x, y, w, h in rows]
                image = self.wandb.Image(str(f), classes=class_set, boxes={
                    "ground_truth": {"box_data": boxes, "class_labels": names}})
                table.add_data(si, image, sorted({names.get(c, str(c)) for c, *_ in rows}), f.name)
            art.add(table, split)
            self._safe(self.run.log_artifact, art)

    def update_config(self, params: dict) -> None:
        """Config values that change after the start (the scaled hyps)."""
        self._safe(self.run.config.update, {"hyp": dict(params)}, allow_val_change=True)

    def finish(self, keys: Sequence[str], results: Sequence[float], best: Path, last: Path) -> None:
        """The final metrics and result plots; the best weights as an artifact (not when evolving); close."""
        if self.run is None:
            return
        data = dict(zip(keys[3:10], (float(v) for v in results)))
        ims = self._images([self.save_dir / f for f in RESULT_IMAGES])
        val = self._images(sorted(self.save_dir.glob("val*.jpg")))
        self.log_mosaics()  # a run of fewer than 10 batches
        self._safe(self.run.log, {**data, **({"Results": ims} if ims else {}), **({"Validation": val} if val else {})})
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
