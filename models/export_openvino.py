"""OpenVINO export: the project's ONNX export converted with the openvino package's own ONNX frontend.

``path/yolov5s.pt`` -> ``path/yolov5s_openvino_model/`` holding ``yolov5s.xml`` + ``yolov5s.bin`` (the OpenVINO IR)
and ``yolov5s.yaml`` (``stride``, ``names``, ``dynamic``, ``shape``, ``half``); stride and names are also stored in
the IR's runtime info. The ONNX file (opset 12, fp32, static or ``--dynamic``) is written to a temporary folder,
read by OpenVINO's ONNX frontend (``Core.read_model``) and saved with ``openvino.save_model``; ``--half`` stores
the weights in fp16 (``compress_to_fp16``; the CPU computes in fp32 either way), otherwise they stay fp32.

``openvino.convert_model`` is not used: its offline transformations move Detect's anchor-grid broadcast behind
the multiplication it feeds, with the grid's batch-1 target shape, so a ``--dynamic`` model then fails on any
batch above 1 (seen with openvino 2026.4); the frontend alone keeps the graph as exported.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import yaml

from models.backend_openvino import RT_SECTION, openvino_dir
from utils.backend_deps import import_openvino
from utils.general import LOGGER, colorstr

OPENVINO_OPSET = 12  # the ONNX opset the conversion starts from


def openvino_requirements() -> None:
    """Fail before any work when the openvino package (>= 2023.1) is missing.

    Raises:
        MissingPackageError: with the pip command.
    """
    import_openvino("OpenVINO export")


def write_openvino_metadata(folder: Path, stem: str, meta: dict[str, str], shape: tuple[int, ...], dynamic: bool,
                            half: bool) -> Path:
    """``folder/stem.yaml``: stride (int), names (list), dynamic, the export input shape, half."""
    f = folder / f"{stem}.yaml"
    d = {"stride": int(meta["stride"]), "names": json.loads(meta["names"]), "dynamic": bool(dynamic),
         "shape": [int(s) for s in shape], "half": bool(half)}
    f.write_text(yaml.safe_dump(d, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return f


def export_openvino(onnx_export: Callable[[Path], Path | None], file: Path, meta: dict[str, str],
                    shape: tuple[int, ...], dynamic: bool = False, half: bool = False,
                    prefix: str = colorstr("OpenVINO:")) -> Path | None:
    """Export ``file``'s model to ``<stem>_openvino_model/``.

    Args:
        onnx_export: given a checkpoint-like path, writes the fp32 ONNX export beside it and returns that
            ``.onnx`` path (None when it failed).
        file: the checkpoint path (names the output folder).
        meta: ``stride`` and ``names`` as text (``export_metadata``).
        shape: the export input shape (batch, 3, h, w).
        dynamic: the ONNX has free batch, height and width axes, and so has the IR.
        half: store the weights in fp16.

    Returns:
        The folder, or None when the export failed (logged, as the other formats).
    """
    try:
        ov = import_openvino("OpenVINO export")
        LOGGER.info(f"\n{prefix} starting export with openvino {ov.__version__}...")
        d = openvino_dir(file)
        if d.exists():
            shutil.rmtree(d)
        with tempfile.TemporaryDirectory() as tmp:
            f_onnx = onnx_export(Path(tmp) / f"{file.stem}.pt")
            if f_onnx is None:
                raise RuntimeError("the ONNX export it converts failed (see the log above)")
            model = ov.Core().read_model(str(f_onnx))
            for k, v in meta.items():
                model.set_rt_info(v, [RT_SECTION, k])
            d.mkdir(parents=True)
            xml = d / f"{file.stem}.xml"
            ov.save_model(model, str(xml), compress_to_fp16=half)  # inside the with: weights may map the ONNX file
        write_openvino_metadata(d, file.stem, meta, shape, dynamic, half)
        mb = sum(f.stat().st_size for f in d.iterdir()) / 1e6
        LOGGER.info(f"{prefix} export success, saved as {d} ({mb:.1f} MB)")
        return d
    except Exception as e:  # noqa: BLE001 - a failed format is logged and the next one is exported
        LOGGER.info(f"{prefix} export failure: {e}")
        return None
