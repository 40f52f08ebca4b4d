"""Safe checkpoint loading: ``torch.load(weights_only=True)`` with an allowlist of classes.

YOLOv5 checkpoints pickle whole model objects, and a plain ``torch.load`` of a pickle runs whatever code the
file names. Here a checkpoint may only reference the classes the caller allows (the project's layers and
torch.nn's, see ``models.experimental.safe_classes``); anything else is refused with a message that names
the global it wanted. A user who trusts a file opts in with the environment variable
``YOLOV5_TRUST_CHECKPOINT=1`` (or ``trusted=True``), which loads it as an ordinary pickle.

Also here: atomic saves (:func:`save_atomic`), release checkpoints (:func:`strip_optimizer`) and restoring a
training state (optimizer, EMA, epoch) that may come from another model (:func:`restore_training_state`).
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np
import torch

from utils.general import LOGGER, InputError, atomic_write

if TYPE_CHECKING:
    from utils.torch_utils import ModelEMA

TRUST_ENV = "YOLOV5_TRUST_CHECKPOINT"


class UnsafeCheckpointError(pickle.UnpicklingError, InputError):
    """A checkpoint that needs a global outside the allowlist; nothing from it was executed."""


class CheckpointError(InputError):
    """A file that is not a usable checkpoint (empty, truncated, not a PyTorch file, or the wrong content)."""


def _numpy_globals() -> list:
    """numpy objects a pickled array (e.g. v6.1's ``best_fitness``) needs, under numpy 1.x and 2.x names."""
    core = getattr(np, "_core", None) or np.core  # numpy 2 renamed numpy.core; pickles name either
    rec, scalar = core.multiarray._reconstruct, core.multiarray.scalar
    out = [(rec, "numpy.core.multiarray._reconstruct"), (rec, "numpy._core.multiarray._reconstruct"),
           np.ndarray, np.dtype, (scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar")]
    out += [type(np.dtype(t)) for t in (np.float16, np.float32, np.float64, np.int32, np.int64, np.bool_)]
    return out


def trust_requested(trusted: bool | None = None) -> bool:
    """True when the caller or the environment (``YOLOV5_TRUST_CHECKPOINT=1``) opts in to full unpickling."""
    if trusted is not None:
        return trusted
    return os.getenv(TRUST_ENV, "").strip().lower() in ("1", "true", "yes")


def load_checkpoint(f: str | Path, map_location: Any = None, allowed: Iterable = (),
                    trusted: bool | None = None) -> Any:
    """Load a torch checkpoint allowing only ``allowed`` globals (plus torch's tensor types and numpy arrays).

    Every entry point (train, val, detect, export, ablate) reads checkpoints through this function, so a bad
    file gets the same message everywhere.

    Args:
        f: checkpoint path.
        map_location: as in ``torch.load``.
        allowed: classes/functions (or ``(obj, "dotted.name")`` pairs) the pickle may reference.
        trusted: load as a full pickle (runs code from the file); default from ``YOLOV5_TRUST_CHECKPOINT``.

    Raises:
        FileNotFoundError: ``f`` does not exist.
        CheckpointError: ``f`` is empty, truncated or not a PyTorch checkpoint.
        UnsafeCheckpointError: the file references a global outside the allowlist.
    """
    f = Path(f)
    if not f.is_file():
        raise FileNotFoundError(f"checkpoint not found: {f}")
    if f.stat().st_size == 0:
        raise CheckpointError(f"{f} is empty (0 bytes): an interrupted download or copy? Get the file again.")
    try:
        if trust_requested(trusted):
            return torch.load(f, map_location=map_location, weights_only=False)
        with torch.serialization.safe_globals([*allowed, *_numpy_globals()]):
            return torch.load(f, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        m = re.search(r"GLOBAL ([\w.]+)", str(e)) or re.search(r"global[s]? [`']?([\w.]+)", str(e))
        if not m:  # not an allowlist refusal: the bytes are not a pickle torch can read
            raise CheckpointError(_unreadable(f, e)) from None
        raise UnsafeCheckpointError(
            f"Refusing to load {f}: it references '{m.group(1)}', which is not one of the model classes this "
            f"project allows in a checkpoint, and unpickling it could run code from the file. Nothing was "
            f"executed. If you trust this file, set {TRUST_ENV}=1 and load it again.") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, IndexError, KeyError) as e:
        raise CheckpointError(_unreadable(f, e)) from None


def _unreadable(f: Path, e: BaseException) -> str:
    """The message for a file torch cannot read as a checkpoint."""
    detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if isinstance(e, pickle.UnpicklingError):  # torch's text here is about weights_only, which would mislead
        detail = "its bytes are not a pickle torch can read"
    return (f"{f} is not a readable PyTorch checkpoint ({f.stat().st_size} bytes): truncated, corrupt or another "
            f"kind of file ({type(e).__name__}: {detail})")


def save_atomic(obj: Any, f: str | Path) -> None:
    """``torch.save`` to a uniquely named temporary file beside ``f``, then rename: ``f`` is always a complete
    checkpoint, and two processes writing the same ``f`` never collide (the last rename wins)."""
    atomic_write(f, lambda fh: torch.save(obj, fh))


def strip_optimizer(f: str | Path = "best.pt", s: str | Path = "", allowed: Iterable = ()) -> None:
    """Make a release checkpoint: EMA as the model, FP16, no optimizer state, epoch -1."""
    x = load_checkpoint(f, map_location=torch.device("cpu"), allowed=allowed)
    if not isinstance(x, dict) or not isinstance(x.get("ema") or x.get("model"), torch.nn.Module):
        raise CheckpointError(f"{f} is not a YOLOv5 training checkpoint (a dict with a 'model'); nothing stripped")
    if x.get("ema"):
        x["model"] = x["ema"]
    for k in "optimizer", "best_fitness", "wandb_id", "ema", "updates":
        x[k] = None
    x["epoch"] = -1
    x["model"].half()
    for p in x["model"].parameters():
        p.requires_grad = False
    save_atomic(x, s or f)
    mb = os.path.getsize(s or f) / 1e6
    LOGGER.info(f"Optimizer stripped from {f},{(' saved as %s,' % s) if s else ''} {mb:.1f}MB")


def optimizer_state_fits(optimizer: torch.optim.Optimizer, state: dict) -> str:
    """Why a saved optimizer state does not fit ``optimizer`` ('' when it does): groups or buffer shapes differ."""
    groups = state.get("param_groups") if isinstance(state, dict) else None
    if not isinstance(groups, list) or len(groups) != len(optimizer.param_groups):
        return "its parameter groups differ from this model's"
    params = {}
    for g, saved in zip(optimizer.param_groups, groups):
        if len(g["params"]) != len(saved.get("params", ())):
            return "its parameter groups hold a different number of parameters"
        params.update(zip(saved["params"], g["params"]))
    for k, st in state.get("state", {}).items():
        for v in st.values() if isinstance(st, dict) else ():
            if isinstance(v, torch.Tensor) and v.ndim and k in params and v.shape != params[k].shape:
                return f"a saved buffer of shape {tuple(v.shape)} meets a parameter of shape {tuple(params[k].shape)}"
    return ""


def restore_training_state(ckpt, weights: str, optimizer: torch.optim.Optimizer, ema: ModelEMA | None, epochs: int,
                           resume: bool) -> tuple[int, float, int]:
    """Optimizer, EMA, best fitness and epoch from a checkpoint: ``(start_epoch, best_fitness, epochs)``.

    A state saved for another model (fine-tuning into a different ``--cfg``) is skipped with a warning; when
    resuming it is an error.
    """
    if not isinstance(ckpt, dict):
        return 0, 0.0, epochs
    best_fitness = 0.0
    if ckpt.get("optimizer") is not None:
        why = optimizer_state_fits(optimizer, ckpt["optimizer"])
        if why and resume:
            raise CheckpointError(f"--resume {weights}: its optimizer state does not fit this model ({why})")
        if why:
            LOGGER.warning(f"WARNING: {weights}: optimizer state not loaded ({why}); starting a fresh optimizer")
        else:
            optimizer.load_state_dict(ckpt["optimizer"])
            best_fitness = float(np.asarray(ckpt.get("best_fitness") or 0.0).reshape(-1)[0])
    if ema and isinstance(ckpt.get("ema"), torch.nn.Module):
        esd, msd = ckpt["ema"].float().state_dict(), ema.ema.state_dict()
        if esd.keys() == msd.keys() and all(esd[k].shape == msd[k].shape for k in esd):
            ema.ema.load_state_dict(esd)
            ema.updates = int(ckpt.get("updates") or 0)
        elif resume:
            raise CheckpointError(f"--resume {weights}: its EMA model does not match the model it resumes")
        else:
            LOGGER.warning(f"WARNING: {weights}: its EMA is of another model; the EMA starts from the new weights")
    epoch = ckpt.get("epoch")
    start_epoch = (int(epoch) if isinstance(epoch, (int, float)) else -1) + 1
    if resume and start_epoch <= 0:
        raise CheckpointError(f"{weights} training to {epochs} epochs is finished, nothing to resume.")
    if epochs < start_epoch:
        LOGGER.info(f"{weights} has been trained for {epoch} epochs. Fine-tuning for {epochs} more epochs.")
        epochs += int(epoch)
    return start_epoch, best_fitness, epochs
