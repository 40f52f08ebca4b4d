"""OpenVINO inference for ``DetectMultiBackend``: a ``<name>_openvino_model/`` folder or its ``<name>.xml``.

The export writes ``<name>_openvino_model/`` holding ``<name>.xml`` (the graph), ``<name>.bin`` (the weights) and
``<name>.yaml`` (``stride``, ``names``, ``dynamic``, ``shape``, ``half``); ``stride`` and ``names`` are also kept in
the model's runtime info (section ``model_info``), so an ``.xml`` copied without its yaml still carries them.

The model runs on the CPU (OpenVINO's CPU plugin) in fp32: on CPUs with bf16 units OpenVINO would otherwise pick
bf16, which moves scores by about 1e-2. It uses as many threads as torch (``torch.get_num_threads()``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from utils.backend_deps import import_openvino
from utils.general import LOGGER

SUFFIX = "_openvino_model"
RT_SECTION = "model_info"  # runtime-info section of the .xml holding the metadata


def openvino_dir(weights: str | Path) -> Path:
    """``path/yolov5s.pt`` -> ``path/yolov5s_openvino_model``."""
    w = Path(weights)
    return w.parent / f"{w.stem}{SUFFIX}"


def openvino_xml(path: str | Path) -> Path:
    """The ``.xml`` of an OpenVINO folder (``<name>.xml`` first, else the only one) or ``path`` itself.

    Raises:
        FileNotFoundError: no such folder or file, or a folder without an ``.xml``.
    """
    p = Path(path)
    if p.is_dir():
        stem = p.name[: -len(SUFFIX)] if p.name.endswith(SUFFIX) else p.name
        xmls = sorted(p.glob("*.xml"))
        if (p / f"{stem}.xml").is_file():
            return p / f"{stem}.xml"
        if len(xmls) == 1:
            return xmls[0]
        raise FileNotFoundError(f"{p}: expected {stem}.xml (an OpenVINO model folder), found "
                                f"{[x.name for x in xmls] or 'no .xml'}")
    if not p.is_file():
        raise FileNotFoundError(f"model file not found: {p}")
    return p


def read_metadata(xml: Path, model: Any) -> dict[str, Any]:
    """``stride``/``names`` (and ``dynamic``, ``shape``, ``half`` when present) from ``<name>.yaml`` beside
    ``xml``, else from the model's runtime info; empty when neither has them."""
    f = xml.with_suffix(".yaml")
    if f.is_file():
        d = yaml.safe_load(f.read_text(encoding="utf-8"))
        if isinstance(d, dict):
            return d
        LOGGER.warning(f"WARNING: ignoring {f}: not a mapping")
    meta = {}
    for k in ("stride", "names"):
        try:
            if model.has_rt_info([RT_SECTION, k]):
                meta[k] = model.get_rt_info([RT_SECTION, k]).astype(str)
        except (AttributeError, RuntimeError) as e:  # an older runtime-info API: no metadata, defaults apply
            LOGGER.warning(f"WARNING: could not read {k} from {xml}'s runtime info: {e}")
    return meta


class OpenVINORunner:
    """A compiled OpenVINO model, called with a numpy batch.

    Attributes:
        xml: the model file.
        meta: the metadata read by :func:`read_metadata`.
        shape: the input shape, None for a dynamic axis.
        input_dtype: the numpy dtype of the input (float32, or float16 for an fp16 graph).
    """

    def __init__(self, path: str | Path):
        """Read and compile the model for the CPU.

        Raises:
            MissingPackageError: openvino is not installed (pip install openvino).
            FileNotFoundError: no model at ``path``.
        """
        ov = import_openvino(f"{path}: OpenVINO inference")
        self.xml = openvino_xml(path)
        LOGGER.info(f"Loading {self.xml} for OpenVINO inference...")
        core = ov.Core()
        model = core.read_model(str(self.xml))  # the weights come from the .bin of the same name
        self.meta = read_metadata(self.xml, model)
        self.shape = [d.get_length() if d.is_static else None for d in model.input(0).get_partial_shape()]
        self.input_dtype = np.float16 if model.input(0).get_element_type() == ov.Type.f16 else np.float32
        config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": int(torch.get_num_threads())}
        self.compiled = core.compile_model(model, "CPU", config)
        outs = self.compiled.outputs
        self.output = next((o for o in outs if "output" in o.get_names()), outs[0])  # the decoded predictions

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The decoded (bs, N, 5 + nc) predictions for a (bs, 3, h, w) batch.

        Raises:
            RuntimeError: the output's batch is not the input's (a graph that cannot take this batch size).
        """
        y = self.compiled([x.astype(self.input_dtype, copy=False)])[self.output]
        if y.shape[0] != x.shape[0]:
            raise RuntimeError(f"{self.xml}: OpenVINO returned batch {y.shape[0]} for an input of batch {x.shape[0]}")
        return y
