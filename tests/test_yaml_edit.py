"""Tests of models/yaml_edit.py (re-indexing layer edits) and models/transfer.py (weight transfer past them)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import models.attention  # noqa: F401  (registers every attention module)
from models import registry
from models.registry import ModelConfigError
from models.transfer import align_layers, transfer_state_dict
from models.yaml_edit import insert, insert_after, layer_rows, move, remove

ROOT = Path(__file__).resolve().parents[1]
OFFICIAL = sorted([*ROOT.glob("models/yolov5[nsmlx].yaml"),
                   *(p for p in ROOT.glob("models/hub/*.yaml") if p.name != "anchors.yaml")])
YOLOV5S = (ROOT / "models/yolov5s.yaml").read_text()


def _build(text: str):
    from models.yolo import Model

    return Model(yaml.safe_load(text))


def test_official_yaml_count():
    assert len(OFFICIAL) == 22


@pytest.mark.parametrize("path", OFFICIAL, ids=lambda p: p.name)
def test_insert_then_remove_round_trips(path):
    text = path.read_text()
    n = len(layer_rows(text))
    for p in sorted({0, 1, 2, n // 2, n - 3, n - 2, n - 1, *range(3, n - 1, 4)}):
        for rewire in (True, False):
            if p == 0 and not rewire:  # layer 1 cannot read the image: refused rather than written unbuildable
                with pytest.raises(ModelConfigError, match="only layer 0 can read"):
                    insert(text, p, "SimAM", rewire=rewire)
                continue
            edited = insert(text, p, "SimAM", rewire=rewire)
            assert len(layer_rows(edited)) == n + 1
            assert remove(edited, p) == text, f"{path.name}: insert/remove at {p} (rewire={rewire})"


def test_insert_after_23_renumbers_detect_and_keeps_comments():
    out = insert_after(YOLOV5S, 23, "NAMAttention", [1024])
    rows = layer_rows(out)
    assert rows[24] == [-1, 1, "NAMAttention", [1024]]
    assert rows[25][0] == [17, 20, 24] and rows[25][2] == "Detect"
    assert "[[17, 20, 24], 1, Detect, [nc, anchors]],  # Detect(P3, P4, P5)" in out
    assert "# 23 (P5/32-large)" in out and "# YOLOv5 v6.0 head" in out
    # everything but the new line is unchanged
    assert [x for x in out.splitlines() if "NAMAttention" not in x and "Detect" not in x] == \
           [x for x in YOLOV5S.splitlines() if "Detect" not in x]


def test_insert_after_17_rewires_every_reader_and_renumbers_comments():
    out = insert_after(YOLOV5S, 17, "SimAM")
    rows = layer_rows(out)
    assert rows[18][2] == "SimAM" and rows[19] == [-1, 1, "Conv", [256, 3, 2]]  # 19 reads SimAM through -1
    assert rows[20][0] == [-1, 14] and rows[23][0] == [-1, 10]  # absolute indices < 18 unchanged
    assert rows[-1][0] == [18, 21, 24]  # Detect reads SimAM, and the shifted P4/P5 layers
    assert "# 21 (P4/16-medium)" in out and "# 24 (P5/32-large)" in out and "# 19\n" in out


def test_no_rewire_keeps_readers():
    rows = layer_rows(insert_after(YOLOV5S, 17, "SimAM", rewire=False))
    assert rows[-1][0] == [17, 21, 24]


def test_relative_minus_two_keeps_pointing_at_the_same_layer():
    text = (ROOT / "models/hub/yolov3.yaml").read_text()
    rows = layer_rows(insert_after(text, 14, "SimAM", rewire=False))
    assert rows[17][0] == -3  # was layer 16 [-2 -> 14]; now layer 17, still layer 14
    rows = layer_rows(insert_after(text, 14, "SimAM"))
    assert rows[17][0] == -2  # rewired: reads the SimAM wrapping layer 14 (index 15)


def test_remove_redirects_readers_and_move():
    nam = (ROOT / "models/yolov5s-NAM.yaml").read_text()
    assert layer_rows(remove(nam, 24)) == layer_rows(YOLOV5S)
    moved = move(nam, 24, 18)
    rows = layer_rows(moved)
    assert rows[18] == [-1, 1, "NAMAttention", []]  # the nominal 1024 no longer applies at P3 and is dropped
    assert rows[-1][0] == [18, 21, 24] and rows[24] == [-1, 3, "C3", [1024, False]]
    _build(moved)


def test_bad_edits_are_clear_errors():
    with pytest.raises(ModelConfigError, match="out of range"):
        insert(YOLOV5S, 99, "SimAM")
    with pytest.raises(ModelConfigError, match="several inputs|inputs"):
        remove(YOLOV5S, 12)  # the Concat read by layer 13
    with pytest.raises(ModelConfigError, match="one row per line"):
        insert("nc: 1\nbackbone: [[-1, 1, Conv, [8, 3, 2]], [-1, 1, Conv, [8, 3, 2]]]\nhead: [[-1, 1, SimAM, []]]\n",
               1, "SimAM")


ATTENTION = sorted({s.cls.__name__ for s in registry.specs("attention")})


@pytest.mark.parametrize("after", [23, 17])
@pytest.mark.parametrize("name", ATTENTION)
def test_every_attention_module_builds_when_inserted(name, after):
    from models.yolo import Model

    d = yaml.safe_load(insert_after(YOLOV5S, after, name))
    d["depth_multiple"], d["width_multiple"] = 0.33, 0.125  # yolov5s's layout, narrow: fast
    m = Model(d).eval()
    assert type(m.model[after + 1]).__name__ == name
    with torch.no_grad():
        y = m(torch.zeros(1, 3, 64, 64))[0]
    assert y.shape == (1, 3 * (16 + 64 + 4), 85)


def test_cli_writes_a_building_yaml(tmp_path):
    out = tmp_path / "s-simam.yaml"
    r = subprocess.run([sys.executable, "models/yaml_edit.py", "insert", "--cfg", "models/yolov5s.yaml", "--after", "23",
                        "--module", "SimAM", "--args", "1024", "0.1", "--out", str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert layer_rows(out.read_text())[24] == [-1, 1, "SimAM", [1024, 0.1]]


# ----------------------------------------------------------------------------------------- transfer
def test_align_pairs_inserted_removed_and_moved_layers():
    a = {"backbone": [[-1, 1, "Conv", [8]], [-1, 1, "C3", [8]], [-1, 1, "C3", [16]], [-1, 1, "NAMAttention", []]],
         "head": [[-1, 1, "Conv", [16]], [-1, 1, "CBAM", []], [[1, 4], 1, "Detect", ["nc", "anchors"]]]}
    b = {"backbone": [[-1, 1, "Conv", [8]], [-1, 1, "NAMAttention", []], [-1, 1, "C3", [8]], [-1, 1, "SimAM", []],
                      [-1, 1, "C3", [16]]],
         "head": [[-1, 1, "Conv", [16]], [[2, 5], 1, "Detect", ["nc", "anchors"]]]}
    # NAM moved 3 -> 1, SimAM inserted, CBAM removed; the rest in order
    assert align_layers(a, b) == {0: 0, 1: 2, 2: 4, 3: 1, 4: 5, 6: 6}


def test_a_layer_that_only_matches_by_shape_gets_nothing():
    src_yaml = {"backbone": [[-1, 1, "Conv", [8]], [-1, 1, "Conv", [8, 3]]], "head": []}
    dst_yaml = {"backbone": [[-1, 1, "Conv", [8]], [-1, 1, "Other", [8, 3]], [-1, 1, "Conv", [8, 3]]], "head": []}
    w0, w1 = torch.randn(8, 3), torch.randn(8, 8)
    src = {"model.0.w": w0, "model.1.w": w1}
    dst = {"model.0.w": torch.zeros(8, 3), "model.1.w": torch.zeros(8, 8), "model.2.w": torch.zeros(8, 8)}
    csd, remapped = transfer_state_dict(src, src_yaml, dst, dst_yaml)
    assert set(csd) == {"model.0.w", "model.2.w"} and remapped == 1  # model.1 (same shape, other layer): nothing
    assert csd["model.2.w"] is w1


def test_transfer_into_nam_and_two_insertions(fixtures_dir, yolo_log, tmp_path):
    import train
    from models.experimental import safe_classes
    from utils.checkpoint import load_checkpoint

    w = str(fixtures_dir / "ckpt_yolov5s.pt")
    ref = load_checkpoint(w, allowed=safe_classes())["model"].float().state_dict()
    hyp = {"anchor_t": 4.0}
    model, _ = train.load_pretrained(w, str(ROOT / "models/yolov5s-NAM.yaml"), 80, hyp, False, torch.device("cpu"))
    assert f"Transferred 348/354 items from {w} (6 remapped)" in yolo_log  # every yolov5s item but the anchors
    sd = model.state_dict()
    torch.testing.assert_close(sd["model.25.m.2.weight"], ref["model.24.m.2.weight"])  # Detect moved 24 -> 25

    two = tmp_path / "yolov5s-two.yaml"
    two.write_text(insert_after(insert_after(YOLOV5S, 23, "SimAM"), 4, "NAMAttention", [256]))
    model, _ = train.load_pretrained(w, str(two), 80, hyp, False, torch.device("cpu"))
    assert any(x.startswith("Transferred 348/354 items") and x.endswith("remapped)") for x in yolo_log)
    sd = model.state_dict()
    for k, v in ref.items():  # every base tensor arrived at its shifted index
        if "anchor" in k:
            continue
        i, rest = int(k.split(".")[1]), k.split(".", 2)[2]
        j = i + (i >= 5) + (i >= 24)
        torch.testing.assert_close(sd[f"model.{j}.{rest}"], v)
