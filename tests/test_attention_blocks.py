"""Attention inside C3 blocks (models/blocks.py): the yaml option, the fork aliases, channels, keys, export, errors."""

from __future__ import annotations

import copy
import io
import warnings

import pytest
import torch
import torch.nn as nn
import yaml

from models import registry
from models.blocks import ALIASES, AttentionBottleneck, FixedAttentionC3, add_attention
from models.common import C3, Bottleneck
from models.graph import LayerGraph
from models.registry import ModelConfigError
from models.yolo import Model
from tests.conftest import ROOT

BASE = yaml.safe_load((ROOT / "models" / "yolov5n.yaml").read_text())
WIDTHS = {"yolov5n": (0.33, 0.25), "yolov5s": (0.33, 0.50)}  # (depth_multiple, width_multiple)
HEAD_C3 = {17: 7, 20: 10, 23: 13}  # layer index -> position in the head list of the P3, P4, P5 C3 rows


def model_dict(size: str = "yolov5n", rows: dict[int, tuple[str, list]] | None = None) -> dict:
    """yolov5n.yaml at ``size``'s multiples, with layer ``i`` of ``rows`` made ``[-1, n, module, args]``."""
    d = copy.deepcopy(BASE)
    d["depth_multiple"], d["width_multiple"] = WIDTHS[size]
    for i, (module, args) in (rows or {}).items():
        section, k = ("backbone", i) if i < len(d["backbone"]) else ("head", i - len(d["backbone"]))
        d[section][k][2:] = [module, args]
    return d


def head_rows(module: str, option: dict | None = None) -> dict[int, tuple[str, list]]:
    """The P3-P5 head C3 rows (layers 17, 20, 23) with ``module`` and their own arguments (+ ``option``)."""
    d, n_back = BASE, len(BASE["backbone"])
    return {i: (module, d["head"][i - n_back][3] + ([option] if option else [])) for i in HEAD_C3}


def needs(name: str) -> None:
    if name not in {s.name for s in registry.specs("attention")}:
        pytest.skip(f"attention module {name} is not registered yet (models/attention/ has no such class)")


def att_inputs(model: nn.Module, x: torch.Tensor) -> dict[int, int]:
    """``{id(att module): input channels}`` of every ``att`` submodule during one forward."""
    seen: dict[int, int] = {}
    hooks = [m.att.register_forward_hook(lambda mod, inp, out: seen.__setitem__(id(mod), inp[0].shape[1]))
             for m in model.modules() if isinstance(getattr(m, "att", None), nn.Module)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return seen


# ----------------------------------------------------------------------------------------- the option
OPTION_ROWS = {6: ("C3", [512, {"attention": "SEAttention"}]),  # backbone, depth 9 -> 3 bottlenecks
               17: ("C3", [256, False, {"attention": "SEAttention", "where": "bottleneck", "args": [8]}]),
               20: ("C3", [512, False, {"attention": "CBAM", "where": "output"}]),
               23: ("C3", [1024, False, {"attention": "CoTAttention", "where": "replace"}])}


@pytest.mark.parametrize("size", list(WIDTHS))
def test_option_channels_at_every_width(size):
    graph = LayerGraph.from_dict(model_dict(size, OPTION_ROWS))
    gw = WIDTHS[size][1]
    layers = {i: graph[i].build() for i in OPTION_ROWS}
    for i, c3 in layers.items():
        assert type(c3) is C3 and c3.cv3.conv.out_channels == graph[i].c_out
        assert att_inputs(c3.eval(), torch.zeros(1, graph[i].c_in[0], 8, 8))  # runs at the real input channels
    c_ = {i: layers[i].cv1.conv.out_channels for i in (6, 17, 23)}
    assert c_ == {6: int(512 * gw) // 2, 17: int(256 * gw) // 2, 23: int(1024 * gw) // 2}
    assert len(layers[6].m) == 3 and all(isinstance(b, AttentionBottleneck) for b in layers[6].m)
    assert [b.att.c1 for b in layers[6].m] == [c_[6]] * 3  # each bottleneck: the C3's hidden channels
    assert layers[17].m[0].att.c1 == c_[17] and layers[17].m[0].att.reduction == 8
    assert layers[20].att.c1 == int(512 * gw) and not hasattr(layers[20].m[0], "att")  # output: the C3's c2
    assert layers[23].m[0].cv2 is None and layers[23].m[0].att.dim == c_[23]  # in place of the 3x3 conv


def test_option_state_dict_keys_and_forward():
    m = Model(model_dict("yolov5n", OPTION_ROWS))
    plain = Model(model_dict("yolov5n"))
    keys, plain_keys = set(m.state_dict()), set(plain.state_dict())
    assert {"model.6.m.2.att.fc1.weight", "model.17.m.0.att.fc2.bias", "model.20.att.spatial_conv.weight",
            "model.23.m.0.att.key_embed.0.weight"} <= keys
    assert plain_keys - keys == {k for k in plain_keys if k.startswith("model.23.m.0.cv2.")}  # only replace drops
    assert all(".att." in k for k in keys - plain_keys)
    out = m(torch.rand(2, 3, 64, 64))
    loss = sum(t.pow(2).mean() for t in out)
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)


def test_plain_c3_is_v61():
    m = Model(ROOT / "models" / "yolov5n.yaml")
    c3s = [x for x in m.model if isinstance(x, C3)]
    assert len(c3s) == 8 and all(type(x) is C3 and f"{type(x).__module__}.{type(x).__qualname__}" == "models.common.C3"
                                 for x in c3s)
    assert all(type(b) is Bottleneck for x in c3s for b in x.m) and not any(hasattr(x, "att") for x in c3s)
    assert sum(p.numel() for p in m.parameters()) == 1872157
    assert list(c3s[-1].state_dict()) == [f"{a}.{b}" for a in ("cv1", "cv2", "cv3", "m.0.cv1", "m.0.cv2")
                                          for b in ("conv.weight", "bn.weight", "bn.bias", "bn.running_mean",
                                                    "bn.running_var", "bn.num_batches_tracked")]
    la = registry.conv_repeat(registry.LayerContext([512], [1024, False], 3, 0.25, 255, "C3", 23))
    assert la.args == [512, 256, 3, False] and la.kwargs == {} and la.n == 1


def test_option_from_python_and_keyword_args():
    torch.manual_seed(0)
    c3 = C3(32, 32, 2, attention="SimAM", attention_args=[{"e_lambda": 0.1}])
    assert [b.att.e_lambda for b in c3.m] == [0.1, 0.1]
    torch.manual_seed(0)
    plain = C3(32, 32, 2)
    assert plain.state_dict().keys() <= c3.state_dict().keys()  # same convs, same initial values
    torch.testing.assert_close(c3.m[1].cv2.conv.weight, plain.m[1].cv2.conv.weight)
    with pytest.raises(ValueError, match="did you mean SEAttention"):
        add_attention(C3(32, 32), "SEAtention")
    with pytest.raises(ValueError, match="not an attention module"):
        add_attention(C3(32, 32), "Conv")


def test_checkpoint_roundtrip_and_fuse(tmp_path):
    from models.experimental import attempt_load

    m = Model(model_dict("yolov5n", {**head_rows("C3SE"), 8: ("CBAMC3", [1024])})).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        ref = m(x)[0]
    torch.save({"model": copy.deepcopy(m), "ema": None, "epoch": -1}, tmp_path / "c3se.pt")
    loaded = attempt_load(tmp_path / "c3se.pt", map_location="cpu", fuse=True)  # the allowlist only, then fused
    assert type(loaded.model[17]).__name__ == "C3SE" and not hasattr(loaded.model[17].m[0].cv1, "bn")
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)[0], ref, atol=1e-3, rtol=1e-4)


# ----------------------------------------------------------------------------------------- the aliases
@pytest.mark.parametrize("size", list(WIDTHS))
@pytest.mark.parametrize("alias", list(ALIASES))
def test_alias_builds_at_p3_p5(alias, size):
    module, where = ALIASES[alias]
    needs(module)
    assert registry.resolve(alias).kind == "layer" and registry.resolve(alias).rule is registry.conv_repeat
    graph = LayerGraph.from_dict(model_dict(size, head_rows(alias)))  # the whole yaml resolves
    for i in HEAD_C3:
        c3 = graph[i].build()
        assert type(c3).__name__ == alias and isinstance(c3, C3) and c3.cv3.conv.out_channels == graph[i].c_out
        att = c3.att if where == "output" else c3.m[0].att
        assert type(att) is registry.resolve(module).cls
        want = c3.cv3.conv.out_channels if where == "output" else c3.cv1.conv.out_channels
        n_att = 1 if where == "output" else len(c3.m)
        assert list(att_inputs(c3.eval(), torch.zeros(1, graph[i].c_in[0], 8, 8)).values()) == [want] * n_att


def test_alias_yaml_args_as_forks_write_them(tmp_path):
    d = model_dict("yolov5n", {8: ("CBAMC3", [1024]), 23: ("C3SE", [1024, False, {"args": [4]}])})
    f = tmp_path / "forks.yaml"
    f.write_text(yaml.safe_dump(d, sort_keys=False))
    m = Model(f)
    assert type(m.model[8]).__name__ == "CBAMC3" and m.model[8].m[0].add  # shortcut defaults to True
    assert not m.model[23].m[0].add and m.model[23].m[0].att.reduction == 4


def _onnx_parity(m: nn.Module, x: torch.Tensor) -> None:
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not importable: ONNX parity not checked")
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (x,), buf, opset_version=12, input_names=["images"], output_names=["output"],
                          dynamo=False)
    out = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"]).run(None, {"images": x.numpy()})[0]
    with torch.no_grad():
        ref = m(x)[0]  # Detect's decoded output
    torch.testing.assert_close(torch.from_numpy(out), ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("group", [("CBAMC3", "C3CA", "C3SE"), ("C3ECA", "C3GC", "CoT3"), ("BoT3", "C3SimAM", "C3NAM")],
                         ids="-".join)
def test_aliases_train_step_and_onnx_parity(group):
    """yolov5n with the group's aliases at P3, P4, P5: a finite 64 px forward/backward, then ONNX (opset 12) parity."""
    present = [a for a in group if ALIASES[a][0] in {s.name for s in registry.specs("attention")}]
    if not present:
        pytest.skip(f"none of {group} has its attention module registered yet")
    rows = {i: (present[k % len(present)], BASE["head"][pos][3]) for k, (i, pos) in enumerate(HEAD_C3.items())}
    torch.manual_seed(0)
    m = Model(model_dict("yolov5n", rows))
    assert [type(m.model[i]).__name__ for i in HEAD_C3] == [r[0] for r in rows.values()]
    out = m(torch.rand(2, 3, 64, 64))  # also leaves non-trivial running statistics
    loss = sum(t.pow(2).mean() for t in out)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)
    _onnx_parity(m.eval(), torch.rand(1, 3, 64, 64))


# ----------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("module,args,match", [
    ("C3", [256, False, {"attention": "SEAtention"}], "unknown attention module 'SEAtention'.*did you mean SEAttention"),
    ("C3", [256, False, {"attention": "Conv"}], "'Conv' is a layer module, not an attention module"),
    ("C3", [256, False, {"attention": "Detect"}], "not an attention module"),
    ("C3", [256, False, {}], "no 'attention:' key"),
    ("C3", [256, False, {"attention": "SE", "wher": "output"}], r"unknown key\(s\) \['wher'\]"),
    ("C3", [256, False, {"attention": "SE", "where": "inside"}], "where: 'inside' is not one of"),
    ("C3", [256, False, {"attention": "SE", "args": 8}], "must be a list"),
    ("C3Ghost", [256, False, {"attention": "SE"}], "C3Ghost takes no trailing mapping"),
    ("C3SE", [256, False, {"attention": "CBAM"}], "C3SE is C3 with SEAttention at 'bottleneck'"),
])
def test_errors_name_file_layer_and_fix(tmp_path, module, args, match):
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(model_dict("yolov5n", {17: (module, args)}), sort_keys=False))
    with pytest.raises(ModelConfigError, match=match) as e:
        Model(f)
    assert str(e.value).startswith(f"{f}: layer 17 ")


def test_alias_with_unregistered_module_is_a_clear_error():
    try:
        registry.register("C3Missing", rule=registry.conv_repeat)(type("C3Missing", (FixedAttentionC3,), {
            "fixed_attention": ("NoSuchAttention", "bottleneck")}))
        with pytest.raises(ModelConfigError, match="C3Missing is C3 with the attention module NoSuchAttention, which "
                                                   "is not registered"):
            Model(model_dict("yolov5n", {17: ("C3Missing", [256, False])}))
    finally:
        registry.unregister("C3Missing")

