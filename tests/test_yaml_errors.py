"""Malformed model yamls give errors that name the file, the layer and what is wrong."""

from __future__ import annotations

import pytest
import yaml

from models.registry import ModelConfigError
from models.yolo import Model
from tests.conftest import ROOT


def _write(tmp_path, edit, name="bad.yaml"):
    d = yaml.safe_load((ROOT / "models" / "yolov5n.yaml").read_text())
    edit(d)
    f = tmp_path / name
    f.write_text(yaml.safe_dump(d, sort_keys=False))
    return f


def test_unknown_module_names_file_layer_and_closest(tmp_path):
    def edit(d):
        d["head"].insert(14, [-1, 1, "NAMAtention", [1024]])  # layer 24, typo

    f = _write(tmp_path, edit)
    with pytest.raises(ModelConfigError) as e:
        Model(f)
    msg = str(e.value)
    assert str(f) in msg and "layer 24" in msg and "unknown module 'NAMAtention'" in msg and "NAMAttention" in msg


def test_attention_channel_mismatch(tmp_path):
    def edit(d):
        d["head"].insert(14, [-1, 1, "NAMAttention", [512]])  # input of layer 24 has 1024 nominal -> 256 at n

    f = _write(tmp_path, edit)
    with pytest.raises(ModelConfigError) as e:
        Model(f)
    msg = str(e.value)
    assert str(f) in msg and "layer 24" in msg and "NAMAttention" in msg
    assert "expects 128 input channels" in msg and "has 256 channels" in msg


def test_forward_from_and_out_of_range(tmp_path):
    f = _write(tmp_path, lambda d: d["head"].__setitem__(2, [[-1, 16], 1, "Concat", [1]]))  # layer 12 from 16
    with pytest.raises(ModelConfigError, match=r"layer 12 .*'from' index 16 points forward"):
        Model(f)
    f = _write(tmp_path, lambda d: d["head"].__setitem__(2, [[-1, -13], 1, "Concat", [1]]), "bad2.yaml")
    with pytest.raises(ModelConfigError, match=r"bad2.yaml: layer 12 .*points before layer 0"):
        Model(f)


def test_missing_detect_args(tmp_path):
    f = _write(tmp_path, lambda d: d["head"][-1].__setitem__(3, []))
    with pytest.raises(ModelConfigError, match=r"layer 24 .*Detect needs the arguments \[nc, anchors\]"):
        Model(f)


def test_missing_key_bad_row_and_bad_yaml(tmp_path):
    f = _write(tmp_path, lambda d: d.pop("anchors"))
    with pytest.raises(ModelConfigError, match=r"bad.yaml: missing key\(s\) anchors"):
        Model(f)
    f = _write(tmp_path, lambda d: d["backbone"].__setitem__(1, [-1, 1, "Conv"]), "row.yaml")
    with pytest.raises(ModelConfigError, match=r"row.yaml: layer 1 .*\[from, number, module, args\]"):
        Model(f)
    g = tmp_path / "syntax.yaml"
    g.write_text("nc: 80\nbackbone: [[-1, 1, Conv, [64, 6, 2, 2]]\n")
    with pytest.raises(ModelConfigError, match="syntax.yaml: not valid yaml"):
        Model(g)
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        Model(tmp_path / "missing.yaml")


def test_constructor_failure_is_located(tmp_path):
    f = _write(tmp_path, lambda d: d["backbone"].__setitem__(9, [-1, 1, "SPPF", [1024, 5, 7, 9]]))
    with pytest.raises(ModelConfigError, match=r"layer 9 .*SPPF\(.*\) failed: TypeError"):
        Model(f)
