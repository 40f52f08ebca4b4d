"""Bad values in a model yaml give a ModelConfigError naming the file, the layer and what is wrong.

Covers the model-wide keys (nc, anchors, multiples, ch, sections), per-row values the channel rules cannot use,
failures of the build-time stride probe (located layer by layer, with the input shapes), and yaml_edit on a text
whose ``head:`` section comes before ``backbone:``.
"""

from __future__ import annotations

import re

import pytest
import yaml

from models.registry import ModelConfigError
from models.yaml_edit import insert_after, layer_rows, move, remove
from models.yolo import Model
from tests.conftest import ROOT

pytestmark = pytest.mark.bad_input

YOLOV5N = yaml.safe_load((ROOT / "models" / "yolov5n.yaml").read_text())
YOLOV5S = (ROOT / "models" / "yolov5s.yaml").read_text()


def _write(tmp_path, edit, name="bad.yaml"):
    """yolov5n.yaml with ``edit(d)`` applied, written to ``tmp_path / name``."""
    d = yaml.safe_load(yaml.safe_dump(YOLOV5N))
    edit(d)
    f = tmp_path / name
    f.write_text(yaml.safe_dump(d, sort_keys=False))
    return f


def _raises(f, pattern: str) -> ModelConfigError:
    with pytest.raises(ModelConfigError) as e:
        Model(f)
    msg = str(e.value)
    assert msg.startswith(f"{f}: "), msg
    assert re.search(pattern, msg), msg
    return e.value


# ----------------------------------------------------------------------------------------- model-wide keys
@pytest.mark.parametrize("nc", [0, -1, "eighty", "80", 2.5, True, None])
def test_nc_must_be_a_positive_integer(tmp_path, nc):
    f = _write(tmp_path, lambda d: d.update(nc=nc))
    _raises(f, r"nc must be a positive integer, got " + repr(nc).replace(".", r"\."))


def test_nc_argument_is_checked_too(tmp_path):
    f = _write(tmp_path, lambda d: None)
    with pytest.raises(ModelConfigError, match=r"nc must be a positive integer, got '3'"):
        Model(f, nc="3")


@pytest.mark.parametrize("key,value", [("width_multiple", 0), ("width_multiple", -0.25), ("width_multiple", "0.25"),
                                       ("depth_multiple", 0), ("depth_multiple", "x"),
                                       ("depth_multiple", float("nan"))])
def test_multiples_must_be_positive_numbers(tmp_path, key, value):
    f = _write(tmp_path, lambda d: d.update({key: value}))
    _raises(f, rf"{key} must be a positive number, got ")


@pytest.mark.parametrize("anchors", [[], [[], [], []], [[10, 13, 16], [30, 61, 62], [116, 90, 156]], 0, -3, "abc",
                                     [10, 13, 16, 30], [["a", "b"], ["c", "d"], ["e", "f"]],
                                     [[10, 13], [30, 61], [0, 9]]])
def test_anchors_must_be_levels_of_pairs_or_a_positive_int(tmp_path, anchors):
    f = _write(tmp_path, lambda d: d.update(anchors=anchors))
    _raises(f, r"anchors must be a positive int \(anchors per level\) or a non-empty list of levels")


def test_anchor_levels_must_have_the_same_length(tmp_path):
    f = _write(tmp_path, lambda d: d.update(anchors=[[10, 13, 16, 30], [30, 61, 62, 45], [116, 90]]))
    _raises(f, r"every anchor level must have the same number of values, got \[4, 4, 2\]")


def test_input_channels_must_be_positive(tmp_path):
    f = _write(tmp_path, lambda d: d.update(ch=0))
    _raises(f, r"ch \(input channels\) must be a positive integer, got 0")


@pytest.mark.parametrize("key,value", [("backbone", {"a": 1}), ("head", "abc")])
def test_sections_must_be_lists(tmp_path, key, value):
    f = _write(tmp_path, lambda d: d.update({key: value}))
    _raises(f, rf"'{key}' must be a list of layer rows, got {type(value).__name__}")


def test_last_layer_must_be_detect(tmp_path):
    f = _write(tmp_path, lambda d: d["head"].pop())
    _raises(f, r"layer 23 \[-1, 3, 'C3', \[1024, False\]\]: the last layer must be Detect, got C3")


def test_detect_must_be_the_only_head(tmp_path):
    f = _write(tmp_path, lambda d: d["head"].append([[17, 20, 23], 1, "Detect", ["nc", "anchors"]]))
    _raises(f, r"layer 24 .*Detect must be the last layer, and only one Detect is allowed")


# ----------------------------------------------------------------------------------------- rows
@pytest.mark.parametrize("args,pattern", [([0, "anchors"], r"nc must be a positive integer, got 0"),
                                          (["eighty", "anchors"], r"nc must be a positive integer, got 'eighty'"),
                                          (["nc", "foo"], r"anchors must be a positive int")])
def test_detect_row_arguments_are_checked(tmp_path, args, pattern):
    f = _write(tmp_path, lambda d: d["head"][-1].__setitem__(3, args))
    _raises(f, r"layer 24 \[\[17, 20, 23\], 1, 'Detect', .*\]: " + pattern)


def test_detect_from_must_match_anchor_levels(tmp_path):  # already a located error; kept as a regression test
    f = _write(tmp_path, lambda d: d["head"][-1].__setitem__(0, [17, 20]))
    _raises(f, r"layer 24 .*Detect has 3 anchor levels but 2 inputs in 'from'")


def test_empty_from_list(tmp_path):
    f = _write(tmp_path, lambda d: d["head"].__setitem__(2, [[], 1, "Concat", [1]]))
    _raises(f, r"layer 12 \[\[\], 1, 'Concat', \[1\]\]: 'from' is an empty list")


def test_bool_number(tmp_path):
    f = _write(tmp_path, lambda d: d["backbone"].__setitem__(2, [-1, True, "C3", [128]]))
    _raises(f, r"layer 2 .*'number' must be a positive int, got True")


@pytest.mark.parametrize("row", [[-1, 1, "Conv", [0, 3, 2]], [-1, 1, "Conv", [-128, 3, 2]], [-1, 1, "Expand", [8]],
                                 [-1, 1, "Contract", [0]]])
def test_layers_must_have_output_channels(tmp_path, row):
    f = _write(tmp_path, lambda d: d["backbone"].__setitem__(1, row))
    _raises(f, r"layer 1 .*: gives -?\d+ output channels; channel counts must be positive")


@pytest.mark.parametrize("row", [[-1, 1, "Contract", ["a"]], [-1, 1, "Expand", [0]], [-1, 1, "Expand", ["a"]]])
def test_channel_rule_failures_are_located(tmp_path, row):
    f = _write(tmp_path, lambda d: d["backbone"].insert(1, row))
    e = _raises(f, r"layer 1 .*: cannot use the arguments .*: (ZeroDivisionError|TypeError)")
    assert e.__cause__ is not None


# ----------------------------------------------------------------------------------------- stride probe
def _probe_error(tmp_path, edit, pattern: str) -> ModelConfigError:
    e = _raises(_write(tmp_path, edit), pattern + r" .*in the build-time stride probe")
    assert isinstance(e.__cause__, Exception) and not isinstance(e.__cause__, ModelConfigError)
    return e


def test_probe_concat_of_mismatched_sizes_after_upsample_3(tmp_path):
    e = _probe_error(tmp_path, lambda d: d["head"].__setitem__(1, [-1, 1, "nn.Upsample", [None, 3, "nearest"]]),
                     r"layer 12 \[\[-1, 6\], 1, 'Concat', \[1\]\]: models.common.Concat got input shapes "
                     r"\[\(1, 128, 24, 24\), \(1, 128, 16, 16\)\]")
    assert "Sizes of tensors must match" in str(e)


def test_probe_concat_of_mismatched_sizes_after_an_extra_stride(tmp_path):
    _probe_error(tmp_path, lambda d: d["backbone"].__setitem__(8, [-1, 1, "Conv", [1024, 3, 2]]),
                 r"layer 12 .*models.common.Concat got input shapes \[\(1, 128, 8, 8\), \(1, 128, 16, 16\)\]")


@pytest.mark.parametrize("index,row,pattern", [
    (1, [-1, 1, "Conv", [128, [3], 2]], r"layer 1 \[-1, 1, 'Conv', \[128, \[3\], 2\]\]: models.common.Conv got input "
                                        r"shape \(1, 16, 128, 128\)"),
    (1, [-1, 1, "Conv", [128, 3, 0]], r"layer 1 .*Conv got input shape \(1, 16, 128, 128\)"),
    (24, [-1, 1, "SimAM", ["x"]], r"layer 24 \[-1, 1, 'SimAM', \['x'\]\]: models.attention.simam.SimAM got input "
                                  r"shape \(1, 256, 8, 8\)"),
    (11, [-1, 1, "nn.Upsample", [None, 2, "nearst"]], r"layer 11 .*Upsample got input shape \(1, 128, 8, 8\)"),
    (12, [[-1, 6], 1, "Concat", [5]], r"layer 12 .*Concat got input shapes"),
    (12, [-1, 1, "Concat", [1]], r"layer 12 \[-1, 1, 'Concat', \[1\]\]: .*Concat got input shape \(1, 128, 16, 16\)"),
])
def test_probe_arguments_unusable_at_forward_time(tmp_path, index, row, pattern):
    def edit(d):
        if index == 24:  # a new layer before Detect
            d["head"].insert(14, row)
            d["head"][-1][0] = [17, 20, 24]
        else:
            (d["backbone"] + d["head"])[index][:] = row

    _probe_error(tmp_path, edit, pattern)


def test_probe_runs_once_when_the_model_is_fine():
    m = Model(yaml.safe_load(yaml.safe_dump(YOLOV5N)))
    assert int(m.model[0].bn.num_batches_tracked) == 1 and m.stride.tolist() == [8.0, 16.0, 32.0]


# ----------------------------------------------------------------------------------------- yaml_edit layouts
def _head_first(text: str) -> str:
    """The same yaml with the ``head:`` block (and its comment line) moved before the ``backbone:`` block."""
    top, rest = text.split("# YOLOv5 v6.0 backbone\n")
    backbone, head = rest.split("# YOLOv5 v6.0 head\n")
    return f"{top}# YOLOv5 v6.0 head\n{head.rstrip()}\n\n# YOLOv5 v6.0 backbone\n{backbone.rstrip()}\n"


def _layers(text: str) -> list[tuple]:
    """(type, from, parameter count) of every layer of the model the text builds, narrowed for speed."""
    d = yaml.safe_load(text)
    d["width_multiple"] = 0.125
    return [(m.type, m.f, m.np) for m in Model(d).model]


@pytest.fixture(scope="module")
def edits() -> dict[str, str]:
    """The same edits applied to yolov5s.yaml as written and with its head section first."""
    two = lambda t: insert_after(insert_after(t, 23, "SimAM"), 4, "SimAM")  # noqa: E731
    nam = lambda t: insert_after(t, 23, "NAMAttention", [1024])  # noqa: E731
    out = {}
    for layout, text in (("normal", YOLOV5S), ("head_first", _head_first(YOLOV5S))):
        out[f"{layout}/two"] = two(text)
        out[f"{layout}/remove"] = remove(two(text), 5)
        out[f"{layout}/move"] = move(nam(text), 24, 18)
        out[f"{layout}/first_head_row"] = insert_after(text, 9, "SimAM")  # joins the backbone, as its last row
    return out


def test_head_first_layout_parses_in_model_order():
    assert yaml.safe_load(_head_first(YOLOV5S)) == yaml.safe_load(YOLOV5S)
    assert layer_rows(_head_first(YOLOV5S)) == layer_rows(YOLOV5S)


@pytest.mark.parametrize("edit", ["two", "remove", "move", "first_head_row"])
def test_head_first_layout_edits_build_the_same_network(edits, edit):
    normal, head_first = edits[f"normal/{edit}"], edits[f"head_first/{edit}"]
    assert head_first == _head_first(normal)  # the same text, sections swapped
    assert layer_rows(head_first) == layer_rows(normal)
    assert _layers(head_first) == _layers(normal)


def test_head_first_insertions_after_23_then_4_land_at_25_and_5(edits):
    rows = layer_rows(edits["head_first/two"])
    assert rows[5] == [-1, 1, "SimAM", []] and rows[25] == [-1, 1, "SimAM", []]
    assert rows[-1] == [[18, 21, 25], 1, "Detect", ["nc", "anchors"]] and rows[17][0] == [-1, 5]


def test_unhandled_layout_is_an_error_not_a_wrong_file():
    dup = YOLOV5S + "\nhead:\n  [[-1, 1, Conv, [8, 1, 1]],\n   [[17, 20, 23], 1, Detect, [nc, anchors]]]\n"  # last wins
    quoted = _head_first(YOLOV5S).replace("\nhead:", '\n"head":')  # a key the line scanner does not see
    assert yaml.safe_load(quoted) == yaml.safe_load(YOLOV5S)
    for text in (dup, quoted):
        with pytest.raises(ModelConfigError, match=r"x.yaml: cannot edit this layout: the layer rows found"):
            insert_after(text, 4, "SimAM", file="x.yaml")
        with pytest.raises(ModelConfigError, match=r"cannot edit this layout"):
            remove(text, 5)
