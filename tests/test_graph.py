"""The layer graph (models/graph.py): channels, edits with their index mappings, the ``attention:`` key, exact transfer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from models.experimental import safe_classes
from models.graph import LayerGraph, compose, expand_attention
from models.registry import ModelConfigError
from models.transfer import align_layers, exact_pairs, transfer_state_dict
from models.yaml_edit import expand, insert_after, layer_rows, move, remove
from models.yolo import Model
from utils.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
YOLOV5S = (MODELS / "yolov5s.yaml").read_text()
SE_AFTER = "\nattention: [[SEAttention, [], {after: [17, 20, 23]}]]\n"
V61_KEYS = {"nc", "depth_multiple", "width_multiple", "anchors", "backbone", "head"}


def _dict(text: str) -> dict:
    return yaml.safe_load(text)


def _probe_channels(model: Model) -> dict[int, int]:
    """Output channels of every layer but Detect, measured by a forward pass."""
    out: dict[int, int] = {}
    x, y = torch.zeros(1, 3, 128, 128), []
    model.eval()
    with torch.no_grad():
        for m in model.model[:-1]:
            x = x if m.f == -1 else (y[m.f] if isinstance(m.f, int) else [x if j == -1 else y[j] for j in m.f])
            x = m(x)
            y.append(x)
            out[m.i] = x.shape[1]
    return out


@pytest.mark.parametrize("name", ["yolov5s.yaml", "yolov5n-CoTA.yaml", "hub/yolov5s6.yaml", "hub/yolov3-spp.yaml"])
def test_graph_channels_froms_and_save_match_the_built_model(name):
    model = Model(MODELS / name)
    graph = model.graph
    assert len(graph) == len(model.model) and graph.save == model.save
    assert {i: graph[i].c_out for i in range(len(graph) - 1)} == _probe_channels(model)
    for layer, m in zip(graph, model.model):
        assert layer.f == m.f and layer.spec.cls is type(m if layer.built.n == 1 else m[0])
        assert all(0 <= j < layer.index or (layer.index == 0 and j == -1) for j in layer.froms)
        assert list(layer.c_in) == [graph[j].c_out if j >= 0 else 3 for j in layer.froms]


def test_yolov5s_known_layers():
    g = LayerGraph.from_dict(_dict(YOLOV5S))
    assert g[24].froms == (17, 20, 23) and g[24].c_in == (128, 256, 512) and g[24].kind == "head"
    assert g[12].froms == (11, 6) and g[12].c_out == 512  # Concat of P5-up (256) and P4 (256)
    assert g[8].depth == 1 and g[2].depth == 1 and g.sites("attention") == []
    assert [x.index for x in LayerGraph.from_dict(_dict((MODELS / "yolov5s-NAM.yaml").read_text())).sites()] == [24]


def test_insert_remove_move_mappings_match_the_text_edits():
    g = LayerGraph.from_dict(_dict(YOLOV5S))
    g2, m = g.insert(18, "SimAM")
    assert m == {i: i + (i >= 18) for i in range(25)}
    assert layer_rows(insert_after(YOLOV5S, 17, "SimAM")) == [x.row for x in g2]
    assert g2[25].froms == (18, 21, 24) and g2[19].froms == (18,)  # the new layer wraps 17: both readers read it
    g3, m3 = g2.remove(18)
    assert [x.row for x in g3] == [x.row for x in g] and compose(m, m3) == {i: i for i in range(25)}
    g4, m4 = g2.move(18, 24)
    assert m4[18] == 24 and m4[24] == 23 and m4[17] == 17
    assert [x.row for x in g4] == layer_rows(move(insert_after(YOLOV5S, 17, "SimAM"), 18, 24))
    with pytest.raises(ModelConfigError, match="out of range"):
        g.insert(25, "SimAM")
    with pytest.raises(ModelConfigError, match="has 2 inputs"):
        g.remove(12)  # a Concat that layer 13 reads
    assert [x.row for x in g.remove(9)[0]] == layer_rows(remove(YOLOV5S, 9))


def test_attention_key_builds_the_same_model_as_yaml_edit():
    plain = YOLOV5S
    for a in (23, 20, 17):
        plain = insert_after(plain, a, "SEAttention", [])
    torch.manual_seed(0)
    m_key = Model(_dict(YOLOV5S + SE_AFTER))
    torch.manual_seed(0)
    m_edit = Model(_dict(plain))
    assert sum(p.numel() for p in m_key.parameters()) == sum(p.numel() for p in m_edit.parameters()) == 7279349
    assert list(m_key.state_dict()) == list(m_edit.state_dict())
    assert [x.index for x in m_key.graph.sites()] == [18, 22, 26] and m_key.model[-1].f == [18, 22, 26]
    assert "attention" in m_key.yaml  # the model keeps the yaml it was given; the graph expands it


def test_several_modules_after_one_layer_follow_entry_order_and_errors_name_the_entry():
    d = _dict(YOLOV5S)
    d["attention"] = [["SimAM", []], ["SEAttention", [], {"after": 23}]]
    with pytest.raises(ModelConfigError, match="attention entry 0"):
        LayerGraph.from_dict(d, file="x.yaml")
    d["attention"][0] = ["SimAM", [], {"after": [23]}]
    rows = expand_attention(d)["head"]
    assert [r[2] for r in rows[-3:]] == ["SimAM", "SEAttention", "Detect"] and rows[-1][0] == [17, 20, 25]
    d["attention"] = [["SimAM", [], {"after": [24]}]]
    with pytest.raises(ModelConfigError, match="x.yaml: attention entry 0: after 24 is out of range"):
        LayerGraph.from_dict(d, file="x.yaml")
    d["attention"] = [["SEAttention", [64], {"after": [23]}]]  # nominal 64 × 0.5 != 512 real channels
    with pytest.raises(ModelConfigError, match=r"attention entry 0 \(SEAttention after layer 23\)"):
        Model(d)
    d["attention"] = [["NoSuchAttention", [], {"after": [23]}]]
    with pytest.raises(ModelConfigError, match="unknown module 'NoSuchAttention'"):
        Model(d)


def _accepted_by_stock_v61_rules(d: dict) -> None:
    """The row rules stock YOLOv5 v6.1 parse_model relies on (it evaluates names and indexes a plain list)."""
    assert set(d) <= V61_KEYS | {"ch"}, set(d) - V61_KEYS
    rows = d["backbone"] + d["head"]
    for i, (f, n, m, args) in enumerate(rows):
        assert isinstance(n, int) and n >= 1 and isinstance(m, str) and isinstance(args, list)
        for x in f if isinstance(f, list) else [f]:
            assert isinstance(x, int) and (x == -1 or (x < 0 and i + x >= 0) or 0 <= x < i), (i, f)
    assert rows[-1][2] == "Detect" and all(r[2] != "Detect" for r in rows[:-1])


def test_expand_cli_writes_plain_v61_rows(tmp_path):
    src = tmp_path / "se.yaml"
    src.write_text(YOLOV5S + SE_AFTER)
    out = tmp_path / "plain.yaml"
    r = subprocess.run([sys.executable, "models/yaml_edit.py", "expand", str(src), str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    d = yaml.safe_load(out.read_text())
    _accepted_by_stock_v61_rules(d)
    assert d["backbone"] + d["head"] == layer_rows(out.read_text())
    assert [r[2] for r in d["head"]].count("SEAttention") == 3 and d["head"][-1][0] == [18, 22, 26]
    text = out.read_text()
    assert "# YOLOv5 v6.0 head" in text and not any(x.startswith("attention") for x in text.splitlines())
    assert expand(YOLOV5S) == YOLOV5S  # nothing to expand: unchanged
    with pytest.raises(ModelConfigError, match="expand"):  # an edit would shift the key's indices
        insert_after(YOLOV5S + SE_AFTER, 3, "SimAM")


def test_transfer_from_v61_yolov5s_into_the_attention_yaml_is_exact(fixtures_dir):
    ckpt = load_checkpoint(fixtures_dir / "ckpt_yolov5s.pt", allowed=safe_classes())
    src = ckpt["model"].float()
    src_sd = src.state_dict()
    model = Model(_dict(YOLOV5S + SE_AFTER), nc=3)  # a 3-class dataset: Detect's convs change shape
    pairs = exact_pairs(src.yaml, model.yaml)
    assert pairs == {i: i + (i > 17) + (i > 20) + (i > 23) for i in range(25)} == align_layers(src.yaml, model.yaml)
    csd, remapped = transfer_state_dict(src_sd, src.yaml, model.state_dict(), model.yaml, exclude=["anchor"])
    skipped = {k for k in src_sd if f"model.{pairs[int(k.split('.')[1])]}.{k.split('.', 2)[2]}" not in csd}
    assert skipped == {"model.24.anchors", *(f"model.24.m.{j}.{w}" for j in range(3) for w in ("weight", "bias"))}
    assert remapped == sum(int(k.split(".")[1]) > 17 for k in src_sd) - len(skipped)
    model.load_state_dict(csd, strict=False)
    new_sd = model.state_dict()
    for k, v in src_sd.items():
        if k not in skipped:
            i, rest = k.split(".")[1], k.split(".", 2)[2]
            assert torch.equal(new_sd[f"model.{pairs[int(i)]}.{rest}"], v), k


def test_exact_pairs_for_yaml_edit_insertions_and_none_for_hand_edits():
    src = _dict(YOLOV5S)
    edited = _dict(insert_after(insert_after(YOLOV5S, 23, "SimAM"), 9, "CBAM", []))
    assert exact_pairs(src, edited) == {i: i + (i > 9) + (i > 23) for i in range(25)}
    hand = _dict(YOLOV5S)
    hand["head"][0][3] = [256, 1, 1]  # a changed layer: not an insertion
    assert exact_pairs(src, hand) is None
    assert align_layers(src, hand) == {i: i for i in range(25) if i != 10}


def test_transfer_between_attention_yamls_pairs_placements_by_origin():
    base = _dict(YOLOV5S)
    src = {**base, "attention": [["SEAttention", [], {"after": 3}]]}
    dst = {**base, "attention": [["CBAM", [], {"after": 3}], ["SEAttention", [], {"after": [3, 10]}]]}
    pairs = align_layers(src, dst)
    # src: SE at 4; dst: CBAM 4, SE 5 (after 3, behind CBAM), SE 13 (after plain 10 = dst 12)
    assert pairs[4] == 5 and pairs[3] == 3 and pairs[5] == 6 and pairs[11] == 12 and pairs[25] == 27
    assert 4 not in pairs.values() and 13 not in pairs.values()  # the new CBAM and the SE after 10 get nothing
    assert exact_pairs({**base, "attention": [["SEAttention", [], {"after": 3}]]}, base) == \
        {i: i - (i > 4) for i in range(26) if i != 4}  # the placed SE has no partner in the plain model


def test_error_in_a_placed_module_names_the_attention_entry():
    d = _dict(YOLOV5S)
    d["attention"] = [["SimAM", [], {"after": 9}], ["SEAttention", ["a", "b", "c", "d"], {"after": 17}]]
    with pytest.raises(ModelConfigError, match=r"placed by attention entry 1: SEAttention after layer 17"):
        Model(d)
    d["attention"] = [["Conv", [64], {"after": 17}]]
    with pytest.raises(ModelConfigError, match="attention entry 0: Conv is not an attention module"):
        Model(d)


def test_expand_keeps_comments_around_a_block_between_sections(tmp_path):
    text = YOLOV5S.replace("# YOLOv5 v6.0 head", "attention:\n  - [SimAM, [], {after: [9]}]\n# YOLOv5 v6.0 head")
    out = expand(text)
    assert "# YOLOv5 v6.0 head" in out and "\nattention:" not in out
    assert layer_rows(out)[10] == [-1, 1, "SimAM", []]


def test_yaml_edit_cli_reports_errors_without_a_traceback(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text(YOLOV5S + SE_AFTER)
    r = subprocess.run([sys.executable, "models/yaml_edit.py", "remove", "--cfg", str(f), "--at", "5"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr and "expand" in r.stderr + r.stdout


def test_a_registered_detect_subclass_is_a_head():
    from models.registry import detect, register, unregister
    from models.yolo import Detect

    @register(rule=detect)
    class MyDetect(Detect):
        pass

    try:
        d = _dict(YOLOV5S)
        d["head"][-1][2] = "MyDetect"
        assert type(Model(d).model[-1]).__name__ == "MyDetect"
    finally:
        unregister("MyDetect")


def test_attention_layers_fall_back_to_classes_when_the_yaml_does_not_resolve(yolo_log):
    from models.attention_vis import attention_layers

    m = Model(MODELS / "yolov5s-NAM.yaml")
    m.yaml["head"][-2][3] = [999]  # no longer resolves
    assert [i for i, _ in attention_layers(m)] == [24]
    assert any("found by class" in x for x in yolo_log)


def test_v61_weights_reach_c3_rows_with_attention_inside(fixtures_dir):
    src = load_checkpoint(fixtures_dir / "ckpt_yolov5s.pt", allowed=safe_classes())["model"].float()
    for cfg in ("yolov5s-C3SE.yaml", "yolov5s-C3attention.yaml"):  # alias rows, and C3 rows with an option mapping
        model = Model(MODELS / cfg)
        csd, _ = transfer_state_dict(src.state_dict(), src.yaml, model.state_dict(), model.yaml, exclude=["anchor"])
        assert set(src.state_dict()) - set(csd) == {"model.24.anchors"}, cfg  # every C3 tensor under its own key
        assert any(".att." in k for k in model.state_dict()) and not any(".att." in k for k in csd)
