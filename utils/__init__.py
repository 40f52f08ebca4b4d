"""Utilities split by concern (``utils/*.py``); this package never imports ``models`` or the scripts.

Importing it checks the one hard dependency floor: the checkpoint loader needs ``torch.serialization.safe_globals``
with ``(class, "dotted.name")`` entries and the code uses ``torch.amp.GradScaler("cpu")``, both in torch >= 2.6
(and torchvision >= 0.21, its matching release). An older torch fails here, naming the version, instead of deep
inside a checkpoint load.
"""

from __future__ import annotations

TORCH_MIN = (2, 6)  # keep in step with requirements.txt


def _version_tuple(v: str) -> tuple[int, ...]:
    """``'2.6.0+cu124'`` -> ``(2, 6, 0)``."""
    out = []
    for part in v.split("+")[0].split("."):
        digits = part[:len(part) - len(part.lstrip("0123456789"))]  # the leading digits ('0rc1' -> '0')
        if not digits:
            break  # 'dev20250101', 'post1': not part of the release number
        out.append(int(digits))
        if len(digits) < len(part):
            break
    return tuple(out)


def check_torch_version(version: str | None = None) -> None:
    """Raise ImportError naming the needed version when torch (``version``, default the installed one) is too old."""
    if version is None:
        import torch

        version = torch.__version__
    if _version_tuple(version)[:2] < TORCH_MIN:
        need = ".".join(map(str, TORCH_MIN))
        raise ImportError(f"YOLOv5-attention needs torch>={need} (torch.serialization.safe_globals with (class, "
                          f"name) entries, torch.amp.GradScaler('cpu')); found torch {version}. "
                          f"Install the requirements: pip install -r requirements.txt")


check_torch_version()
