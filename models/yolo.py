"""YOLO-specific modules: the ``Detect`` head, ``Model`` and ``parse_model``.

Usage:
    $ python models/yolo.py --cfg yolov5s.yaml            # layer table and summary line
    $ python models/yolo.py --cfg yolov5s.yaml --profile  # per-layer time and GFLOPs
    $ python models/yolo.py --test                        # build every yaml under models/
"""

from __future__ import annotations

import argparse
import math
import sys
from copy import deepcopy
from pathlib import Path
from typing import Any, Iterable

FILE = Path(__file__).resolve()
ROOT = FILE.parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # so `python models/yolo.py` finds the packages

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import yaml  # noqa: E402

import models.attention  # noqa: E402,F401  (registers the attention modules)
import models.common  # noqa: E402,F401  (registers the v6.1 layers)
from models.graph import LayerGraph  # noqa: E402
from models.rows import row_error  # noqa: E402
from models.registry import ModelConfigError, detect, register  # noqa: E402
from utils.autoanchor import check_anchor_order  # noqa: E402
from utils.flops import count_macs  # noqa: E402
from utils.general import LOGGER, check_yaml, print_args  # noqa: E402
from utils.plots import feature_visualization  # noqa: E402
from utils.recording import Recorder  # noqa: E402
from utils.torch_utils import initialize_weights, model_info, scale_img, select_device, time_sync  # noqa: E402


@register(rule=detect, kind="head")
class Detect(nn.Module):
    """Detection head: one 1×1 conv per level; decodes boxes in eval mode."""

    stride = None  # strides computed during build
    onnx_dynamic = False  # ONNX export parameter

    def __init__(self, nc: int = 80, anchors: tuple | list = (), ch: tuple | list = (), inplace: bool = True):
        super().__init__()
        self.nc = nc  # number of classes
        self.no = nc + 5  # outputs per anchor
        self.nl = len(anchors)  # number of detection levels
        self.na = len(anchors[0]) // 2  # anchors per level
        self.grid = [torch.zeros(1)] * self.nl
        self.anchor_grid = [torch.zeros(1)] * self.nl
        self.register_buffer("anchors", torch.tensor(anchors).float().view(self.nl, -1, 2))  # (nl, na, 2)
        self.m = nn.ModuleList(nn.Conv2d(x, self.no * self.na, 1) for x in ch)
        self.inplace = inplace

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        z = []  # decoded outputs
        for i in range(self.nl):
            x[i] = self.m[i](x[i])
            bs, _, ny, nx = x[i].shape
            # (bs, na*no, ny, nx) -> (bs, na, ny, nx, no)
            x[i] = x[i].view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()
            if not self.training:
                if self.onnx_dynamic or self.grid[i].shape[2:4] != x[i].shape[2:4]:
                    self.grid[i], self.anchor_grid[i] = self._make_grid(nx, ny, i)
                y = x[i].sigmoid()
                if self.inplace:
                    y[..., 0:2] = (y[..., 0:2] * 2 - 0.5 + self.grid[i]) * self.stride[i]  # xy (pixels)
                    y[..., 2:4] = (y[..., 2:4] * 2) ** 2 * self.anchor_grid[i]  # wh (pixels)
                else:  # for AWS Inferentia: no in-place slice assignment
                    xy = (y[..., 0:2] * 2 - 0.5 + self.grid[i]) * self.stride[i]
                    wh = (y[..., 2:4] * 2) ** 2 * self.anchor_grid[i]
                    y = torch.cat((xy, wh, y[..., 4:]), -1)
                z.append(y.view(bs, -1, self.no))  # (bs, na*ny*nx, no)
        return x if self.training else (torch.cat(z, 1), x)

    def _make_grid(self, nx: int = 20, ny: int = 20, i: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Cell (x, y) indices and anchor sizes in pixels, both (1, na, ny, nx, 2)."""
        d, t = self.anchors[i].device, self.anchors[i].dtype
        yv, xv = torch.meshgrid(torch.arange(ny, device=d, dtype=t), torch.arange(nx, device=d, dtype=t), indexing="ij")
        grid = torch.stack((xv, yv), 2).expand((1, self.na, ny, nx, 2))
        anchor_grid = (self.anchors[i] * self.stride[i]).view((1, self.na, 1, 1, 2)).expand((1, self.na, ny, nx, 2))
        return grid, anchor_grid


class Model(nn.Module):
    """A YOLOv5 model built from a yaml file or dict."""

    def __init__(self, cfg: str | Path | dict = "yolov5s.yaml", ch: int = 3, nc: int | None = None,
                 anchors: Any = None):
        super().__init__()
        if isinstance(cfg, dict):
            self.yaml = cfg
            src = "model dict"
        else:
            self.yaml_file = Path(cfg).name
            self.yaml = load_model_yaml(cfg)
            src = str(cfg)
        ch = self.yaml["ch"] = self.yaml.get("ch", ch)
        if nc and nc != self.yaml.get("nc"):
            LOGGER.info(f"Overriding model.yaml nc={self.yaml.get('nc')} with nc={nc}")
            self.yaml["nc"] = nc
        if anchors:
            LOGGER.info(f"Overriding model.yaml anchors with anchors={anchors}")
            self.yaml["anchors"] = round(anchors)
        self.model, self.save = parse_model(deepcopy(self.yaml), ch=[ch], file=src)
        self.names = [str(i) for i in range(self.yaml["nc"])]
        self.inplace = self.yaml.get("inplace", True)

        m = self.model[-1]  # Detect (parse_model checks it)
        s = 256  # stride probe: one training-mode pass of zeros at batch 1
        m.inplace = self.inplace
        m.stride = torch.tensor([s / x.shape[-2] for x in self._stride_probe(torch.zeros(1, ch, s, s), src)])
        m.anchors /= m.stride.view(-1, 1, 1)  # pixels -> grid units
        check_anchor_order(m)
        self.stride = m.stride
        self._initialize_biases()
        initialize_weights(self)
        self.info()
        LOGGER.info("")

    @property
    def graph(self) -> LayerGraph:
        """The resolved layer graph of ``self.yaml`` (computed on each access, never pickled): every layer's absolute
        inputs, module spec and channels; ``model.graph.sites("attention")`` lists the attention layers."""
        return LayerGraph.from_dict(self.yaml, self.yaml.get("ch", 3), getattr(self, "yaml_file", None))

    def forward(self, x: torch.Tensor, augment: bool = False, profile: bool = False,
                visualize: bool | Path = False):
        if augment:
            return self._forward_augment(x)
        return self._forward_once(x, profile, visualize)

    def _forward_augment(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        """Test-time augmentation: scales 1, 0.83, 0.67 with a left-right flip on the middle one."""
        img_size = x.shape[-2:]  # (h, w)
        s = [1, 0.83, 0.67]
        f = [None, 3, None]  # flip dims (2 up-down, 3 left-right)
        y = []
        for si, fi in zip(s, f):
            xi = scale_img(x.flip(fi) if fi else x, si, gs=int(self.stride.max()))
            yi = self._forward_once(xi)[0]
            y.append(self._descale_pred(yi, fi, si, img_size))
        return torch.cat(self._clip_augmented(y), 1), None

    def _forward_once(self, x: torch.Tensor, profile: bool = False, visualize: bool | Path = False):
        y, dt = [], []  # stored outputs, profile times
        for m in self.model:
            x = _layer_input(m, x, y)
            if profile:
                self._profile_one_layer(m, x, dt)
            x = m(x)
            y.append(x if m.i in self.save else None)
            if visualize:
                feature_visualization(x, m.type, m.i, save_dir=visualize)
        return x

    def _stride_probe(self, x: torch.Tensor, src: str) -> list[torch.Tensor]:
        """The build-time forward of ``x``. A failure is rerun layer by layer and raised as a ModelConfigError naming
        the file, the layer index and row, the module and the input shapes it got, chained from the original error."""
        try:
            return self.forward(x)
        except Exception as e:
            graph = self.graph
            rows, y, xi = [layer.row for layer in graph], [], x
            for m in self.model:
                xi = _layer_input(m, xi, y)
                got = _shapes(xi)  # before the call: Detect rewrites its input list
                try:
                    xi = m(xi)
                except Exception as err:
                    msg = f"{m.type} got input {got} in the build-time stride probe (zeros {tuple(x.shape)}) and failed"
                    raise row_error(src, m.i, rows[m.i], f"{msg}: {type(err).__name__}: {err}"
                                              f"{graph.placed_by(m.i)}") from e
                y.append(xi if m.i in self.save else None)
            raise  # not reproduced layer by layer: the original error

    def _descale_pred(self, p: torch.Tensor, flips: int | None, scale: float, img_size: tuple) -> torch.Tensor:
        """Undo TTA scaling and flips on decoded predictions (bs, N, no)."""
        if self.inplace:
            p[..., :4] /= scale
            if flips == 2:
                p[..., 1] = img_size[0] - p[..., 1]
            elif flips == 3:
                p[..., 0] = img_size[1] - p[..., 0]
        else:
            x, y, wh = p[..., 0:1] / scale, p[..., 1:2] / scale, p[..., 2:4] / scale
            if flips == 2:
                y = img_size[0] - y
            elif flips == 3:
                x = img_size[1] - x
            p = torch.cat((x, y, wh, p[..., 4:]), -1)
        return p

    def _clip_augmented(self, y: list[torch.Tensor]) -> list[torch.Tensor]:
        """Drop the largest-stride rows of the full-scale output and the smallest-stride rows of the smallest."""
        nl = self.model[-1].nl
        g = sum(4**x for x in range(nl))  # rows of all levels / rows of the largest-stride level (21 for nl=3)
        y[0] = y[0][:, : -(y[0].shape[1] // g)]  # full scale: drop its largest-stride level
        y[-1] = y[-1][:, (y[-1].shape[1] // g) * 4 ** (nl - 1):]  # smallest scale: drop its smallest-stride level
        return y

    def _profile_one_layer(self, m: nn.Module, x: Any, dt: list) -> None:
        """Log one layer's GFLOPs (thop + functional ops) and the time of 10 forwards."""
        c = isinstance(m, Detect)  # Detect modifies its input list in place: give it copies
        try:
            o = count_macs(m, (x.copy() if c else x,)) / 1e9 * 2
        except Exception:  # thop missing or failing: the time column still means something
            o = float("nan")
        t = time_sync()
        for _ in range(10):
            m(x.copy() if c else x)
        dt.append((time_sync() - t) * 100)
        if m == self.model[0]:
            LOGGER.info(f"{'time (ms)':>10s} {'GFLOPs':>10s} {'params':>10s}  module")
        LOGGER.info(f"{dt[-1]:10.2f} {o:10.2f} {m.np:10.0f}  {m.type}")
        if c:
            LOGGER.info(f"{sum(dt):10.2f} {'-':>10s} {'-':>10s}  Total")

    def _initialize_biases(self, cf: torch.Tensor | None = None) -> None:
        """Objectness and class bias priors, added on top of the default init."""
        m = self.model[-1]
        for mi, s in zip(m.m, m.stride):
            b = mi.bias.view(m.na, -1)  # conv.bias(255) -> (3, 85)
            b.data[:, 4] += math.log(8 / (640 / s) ** 2)  # 8 objects per 640 image
            b.data[:, 5:] += math.log(0.6 / (m.nc - 0.999999)) if cf is None else torch.log(cf / cf.sum())
            mi.bias = torch.nn.Parameter(b.view(-1), requires_grad=True)

    def _print_biases(self) -> None:
        m = self.model[-1]
        for mi in m.m:
            b = mi.bias.detach().view(m.na, -1).T  # (no, na)
            LOGGER.info(("%6g Conv2d.bias:" + "%10.3g" * 6) % (mi.weight.shape[1], *b[:5].mean(1).tolist(),
                                                               b[5:].mean()))

    def record(self, indices: Iterable[int] | None = None, grad: bool = False) -> Recorder:
        """A context manager that records layers' inputs and outputs (and output gradients) during a forward.

        Only the first call of each layer inside the ``with`` block is kept (the un-augmented pass of TTA);
        inputs and outputs are detached clones. See :mod:`utils.recording`.

        Args:
            indices: layer indices (yaml rows) to record; None for every layer.
            grad: also record the gradient that a later ``backward()`` sends to each output (Grad-CAM).

        Returns:
            A :class:`utils.recording.Recorder`; ``rec[i]`` is the :class:`utils.recording.Record` of layer ``i``.

        Example:
            with model.record([17, 20, 23]) as rec:
                model(im)
            rec[17].output, rec[17].inputs
        """
        idx = range(len(self.model)) if indices is None else indices
        return Recorder([(int(i), self.model[int(i)]) for i in idx], grad=grad)

    def fuse(self) -> Model:
        """Fold BatchNorms into the layers that own them (Conv+BN, NAM's BN...) and log the summary."""
        LOGGER.info("Fusing layers... ")
        for m in list(self.model.modules()):
            if callable(getattr(m, "fuse_layers", None)):
                m.fuse_layers()
        self.info()
        return self

    def info(self, verbose: bool = False, img_size: int | list = 640) -> str:
        """Log the summary line."""
        return model_info(self, verbose, img_size)

    def _apply(self, fn, *args, **kwargs):
        """``.to()``, ``.half()``... also reach Detect's stride and cached grids (plain attributes)."""
        self = super()._apply(fn, *args, **kwargs)
        m = self.model[-1]
        if isinstance(m, Detect):
            m.stride = fn(m.stride)
            m.grid = list(map(fn, m.grid))
            if isinstance(m.anchor_grid, list):
                m.anchor_grid = list(map(fn, m.anchor_grid))
        return self


def _layer_input(m: nn.Module, x: Any, y: list) -> Any:
    """The input of layer ``m``: the previous output ``x``, or the saved outputs ``y`` that its ``from`` names."""
    if m.f == -1:
        return x
    return y[m.f] if isinstance(m.f, int) else [x if j == -1 else y[j] for j in m.f]


def _shapes(x: Any) -> str:
    """``shape (1, 64, 32, 32)`` or ``shapes [(...), (...)]`` of a layer input, for error messages."""
    one = lambda t: str(tuple(t.shape)) if isinstance(t, torch.Tensor) else type(t).__name__  # noqa: E731
    return f"shapes [{', '.join(map(one, x))}]" if isinstance(x, (list, tuple)) else f"shape {one(x)}"


def load_model_yaml(path: str | Path) -> dict:
    """Read a model yaml; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model yaml not found: {path}")
    try:
        with open(path, encoding="ascii", errors="ignore") as f:
            d = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise ModelConfigError(f"{path}: not valid yaml: {e}") from None
    if not isinstance(d, dict):
        raise ModelConfigError(f"{path}: a model yaml must be a mapping with nc, depth_multiple, width_multiple, "
                               f"anchors, backbone and head")
    return d


def parse_model(d: dict, ch: list[int], file: str | None = None) -> tuple[nn.Sequential, list[int]]:
    """Build the layers of a model dict and log v6.1's layer table.

    The rows are resolved by :class:`models.graph.LayerGraph` (registry lookup, channel rule, absolute ``from``
    indices); this loop only builds each layer and logs it, knowing no particular module.

    Args:
        d: the model dict (nc, depth_multiple, width_multiple, anchors, backbone, head[, attention]).
        ch: ``[input channels]``.
        file: where the dict came from, for error messages.

    Returns:
        ``(nn.Sequential of layers, sorted save list)``.

    Raises:
        ModelConfigError: naming the file, the layer index and what is wrong.
    """
    graph = LayerGraph.from_dict(d, ch[-1], file)
    LOGGER.info(f"\n{'':>3}{'from':>18}{'n':>3}{'params':>10}  {'module':<40}{'arguments':<30}")
    layers = []
    for layer in graph:
        la = layer.built
        try:
            m_ = layer.build()
        except Exception as e:
            raise row_error(graph.file, layer.index, layer.row, f"{layer.name}(*{la.args}, **{la.kwargs}) failed: "
                            f"{type(e).__name__}: {e}{graph.placed_by(layer.index)}") from e
        cls = layer.spec.cls
        t = f"{cls.__module__}.{cls.__qualname__}".replace("__main__.", "")
        np_ = sum(x.numel() for x in m_.parameters())
        m_.i, m_.f, m_.type, m_.np = layer.index, layer.f, t, np_  # index, 'from' index, type, number of params
        shown = la.args + ([la.kwargs] if la.kwargs else [])
        LOGGER.info(f"{layer.index:>3}{str(layer.f):>18}{layer.depth:>3}{np_:10.0f}  {t:<40}{str(shown):<30}")
        layers.append(m_)
    return nn.Sequential(*layers), graph.save


def parse_opt(known: bool = False) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cfg", type=str, default="yolov5s.yaml", help="model.yaml")
    parser.add_argument("--device", default="", help="cuda device, i.e. 0 or 0,1,2,3 or cpu")
    parser.add_argument("--profile", action="store_true", help="profile model speed")
    parser.add_argument("--test", action="store_true", help="test all yolo*.yaml")
    return parser.parse_known_args()[0] if known else parser.parse_args()


def run(cfg: str = "yolov5s.yaml", device: str = "", profile: bool = False, test: bool = False) -> Model:
    """Build ``cfg`` (printing its table and summary); optionally profile it or build every yaml in models/."""
    dev = select_device(device)
    model = Model(check_yaml(cfg)).to(dev)
    model.train()
    if profile:
        img = torch.rand(8 if torch.cuda.is_available() else 1, 3, 640, 640).to(dev)
        model(img, profile=True)
    if test:
        failed = []
        for f in sorted(Path(ROOT / "models").rglob("*.yaml")):
            if "backbone" not in (yaml.safe_load(f.read_text()) or {}):
                continue  # e.g. hub/anchors.yaml
            try:
                Model(f)
            except Exception as e:
                failed.append(f)
                LOGGER.error(f"Error in {f}: {e}")
        LOGGER.info(f"--test: {len(failed)} yaml(s) failed" + (f": {[str(x) for x in failed]}" if failed else ""))
    return model


def main(opt: argparse.Namespace) -> Model:
    print_args(FILE.stem, opt)
    return run(**vars(opt))


if __name__ == "__main__":
    from models.yolo import main as _main, parse_opt as _parse_opt  # the importable module, not __main__

    _main(_parse_opt())
