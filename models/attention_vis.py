"""Attention heatmaps and class activation maps of a YOLOv5 model, from Python or ``detect.py``.

For every attention layer (``model.graph.sites("attention")``; for other modules, a module registered with kind
``"attention"``) one spatial heatmap overlaid on the image and one per-channel bar chart are saved; for one
layer named by its yaml index an EigenCAM (or Grad-CAM, or Grad-CAM++) overlay. The layers are recorded with
``utils.recording.Recorder`` around the forward pass (:meth:`AttentionVisualizer.watch`); the maps are computed
by ``utils.attention_maps`` and ``utils.cam`` and drawn by ``utils.attention_plots``. This module sits in
``models/`` because it needs the registry and ``attempt_load``.

Usage:
    from models.attention_vis import visualize
    files = visualize('runs/train/exp/weights/best.pt', 'data/images/bus.jpg', 'runs/attention', cam_layer=23)

    $ python detect.py --weights best.pt --source img.jpg --attention-maps --cam-layer 23   # -> <exp>/attention/

Files: ``<stem>_layer<i>_<Module>.png`` (spatial overlay), ``<stem>_layer<i>_<Module>_channels.png`` (bar chart)
and ``<stem>_layer<i>_<Module>_EigenCAM.png`` (or ``_GradCAM.png``, ``_GradCAMpp.png``); video frames get
``<stem>_<frame>``.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn as nn

from models.experimental import attempt_load
from models.registry import ModelConfigError, classes
from utils.attention_maps import LayerMaps, module_name, record_maps, unletterbox
from utils.attention_plots import save_layer_figures, save_spatial_figure
from utils.boxes import scale_coords, xywh2xyxy
from utils.cam import eigen_cam, grad_cam, grad_cam_pp
from utils.general import LOGGER, InputError, check_img_size
from utils.inference_loaders import LoadImages
from utils.recording import Recorder
from utils.torch_utils import select_device

CAM_METHODS = {"eigen": "EigenCAM", "grad": "GradCAM", "gradpp": "GradCAM++"}  # cam_method -> figure title
CAM_FILE_TAGS = {"eigen": "EigenCAM", "grad": "GradCAM", "gradpp": "GradCAMpp"}  # cam_method -> file name tag


def _is_attention(m: nn.Module, kinds: tuple[type, ...]) -> bool:
    if isinstance(m, nn.Sequential) and len(m):  # a yaml row with n > 1
        return all(isinstance(c, kinds) for c in m)
    return isinstance(m, kinds)


def attention_layers(model: nn.Module) -> list[tuple[int, nn.Module]]:
    """``(index, module)`` of every attention layer (registered kind ``"attention"``), in index order.

    A YOLOv5 ``Model`` (also inside a ``DetectMultiBackend`` or an ``Ensemble``) answers from its layer graph,
    ``model.graph.sites("attention")``. Any other module is searched by class: among its layers (``.model``
    when that is an ``nn.Sequential``, else the module itself when it is one, else its children), each module
    whose class is registered as attention, or ``nn.Sequential`` of such modules (a yaml row with ``n > 1``).
    """
    try:
        model = yolo_model(model)
    except TypeError:
        pass  # not a YOLOv5 model: the generic search below
    seq = getattr(model, "model", None)
    try:
        graph = getattr(model, "graph", None)
    except ModelConfigError as e:  # a checkpoint's yaml this build cannot resolve: search by class instead
        LOGGER.warning(f"WARNING: the model's yaml does not resolve ({e}); attention layers are found by class")
        graph = None
    if graph is not None and callable(getattr(graph, "sites", None)) and isinstance(seq, nn.Sequential):
        return [(s.index, seq[s.index]) for s in graph.sites("attention")]
    kinds = tuple(classes("attention"))
    seq = seq if isinstance(seq, nn.Sequential) else model
    layers = enumerate(seq) if isinstance(seq, nn.Sequential) else enumerate(seq.children())
    return [(i, m) for i, m in layers if _is_attention(m, kinds)]


def yolo_model(model: Any) -> nn.Module:
    """The PyTorch YOLOv5 ``Model`` inside a ``DetectMultiBackend`` (.pt), an ``Ensemble`` (its first member,
    with a warning) or the model itself.

    Raises:
        TypeError: nothing with a ``.model`` layer sequence (e.g. a TorchScript or ONNX backend).
    """
    if getattr(model, "pt", False) and isinstance(getattr(model, "model", None), nn.Module):
        model = model.model  # DetectMultiBackend
    if isinstance(model, nn.ModuleList) and len(model) and not hasattr(model, "model"):
        LOGGER.warning(f"WARNING: an ensemble of {len(model)} models: attention maps show the first one only")
        model = model[0]
    if not isinstance(getattr(model, "model", None), nn.Sequential):
        raise TypeError(f"{type(model).__name__} is not a PyTorch YOLOv5 model: attention maps need the layers "
                        f"(.pt weights)")
    return model


class AttentionVisualizer:
    """Turns a forward pass of a model into attention heatmaps (and a CAM) per image.

    Run the forward inside :meth:`watch`, then call :meth:`save` per image of the batch::

        with viz.watch():
            pred = model(im)
        for b, im0 in enumerate(originals):
            viz.save(b, stem, im0, im)

    Layers are recorded only inside :meth:`watch` (each watch starts afresh), so no hooks outlive a forward.

    Args:
        model: a YOLOv5 ``Model``, an ``Ensemble`` or a ``.pt`` ``DetectMultiBackend``.
        save_dir: folder for the figures (created on first save).
        layers: layer indices to draw heatmaps for; None for every attention layer, ``[]`` for none.
        cam_layer: yaml index of the layer for the class activation map; None for no CAM.
        cam_method: ``"eigen"`` (EigenCAM, no gradients), ``"grad"`` (Grad-CAM) or ``"gradpp"`` (Grad-CAM++),
            the latter two of the most confident prediction's score ``objectness × class probability``.

    Raises:
        InputError: a layer index outside the model (the Detect head included) or an unknown ``cam_method``.
    """

    def __init__(self, model: Any, save_dir: str | Path, layers: Sequence[int] | None = None,
                 cam_layer: int | None = None, cam_method: str = "eigen") -> None:
        self.model = yolo_model(model)
        n = len(self.model.model)
        self.layers = [i for i, _ in attention_layers(self.model)] if layers is None else [int(i) for i in layers]
        if layers is None and not self.layers:
            LOGGER.warning("WARNING: this model has no attention layers: no attention heatmaps are drawn")
        for i in self.layers + ([] if cam_layer is None else [cam_layer]):
            if not 0 <= int(i) < n - 1:
                raise InputError(f"layer {i} does not exist or is the Detect head: choose 0..{n - 2}")
        if cam_method not in CAM_METHODS:
            raise InputError(f"cam_method must be one of {list(CAM_METHODS)}, got {cam_method!r}")
        self.cam_layer = None if cam_layer is None else int(cam_layer)
        self.cam_method, self.save_dir = cam_method, Path(save_dir)
        self.watched = sorted(set(self.layers) | ({self.cam_layer} if self.cam_layer is not None else set()))
        self.saved: list[Path] = []
        self._rec: Recorder | None = None  # the last watched forward
        self._maps: list[LayerMaps] | None = None  # its maps, computed on the first save() (a batch saves B times)

    @classmethod
    def from_backend(cls, backend: Any, save_dir: str | Path, **kwargs: Any) -> AttentionVisualizer | None:
        """A visualizer for a ``DetectMultiBackend``; None, with a warning, for a backend other than PyTorch."""
        if not getattr(backend, "pt", False):
            LOGGER.warning(f"WARNING: attention maps and CAMs need PyTorch .pt weights; "
                           f"{getattr(backend, 'format', type(backend).__name__)} models have no layers to hook. "
                           f"Detection goes on without them")
            return None
        return cls(backend, save_dir, **kwargs)

    @contextmanager
    def watch(self) -> Iterator[Recorder]:
        """Record the watched layers during the forward pass run inside the block (the first pass, under TTA).

        Yields:
            The :class:`utils.recording.Recorder` (hooks removed on exit, also on an exception).
        """
        self._rec, self._maps = Recorder([(i, self.model.model[i]) for i in self.watched]), None
        with self._rec:
            yield self._rec

    def _records(self) -> Recorder:
        if self._rec is None:
            raise RuntimeError("AttentionVisualizer: run the forward pass inside watch() before save() or cam()")
        return self._rec

    def save(self, b: int, stem: str, im0: np.ndarray, im: torch.Tensor) -> list[Path]:
        """Write the figures of batch element ``b`` of the last watched forward pass.

        Args:
            b: index in the batch.
            stem: file name prefix (image stem, ``<stem>_<frame>`` for video).
            im0: the original BGR image (h0, w0, 3), not yet annotated.
            im: the letterboxed input batch (B, 3, h, w) that went through the model (Grad-CAM runs it again).

        Returns:
            The files written.

        Raises:
            RuntimeError: no forward pass was watched.
        """
        rec = self._records()
        if self._maps is None:
            self._maps = record_maps(r for r in rec if r.index in self.layers)
        files: list[Path] = []
        for lm in self._maps:
            files += save_layer_figures(lm, b, im0, im.shape[2:], self.save_dir, stem)
        if self.cam_layer is not None:
            cam, what, box = self.cam(b, im)
            boxes = [] if box is None else scale_coords(im.shape[2:], box.view(1, 4).clone(), im0.shape).tolist()
            name = module_name(self.model.model[self.cam_layer])
            method = CAM_METHODS[self.cam_method]
            file = self.save_dir / f"{stem}_layer{self.cam_layer}_{name}_{CAM_FILE_TAGS[self.cam_method]}.png"
            self.save_dir.mkdir(parents=True, exist_ok=True)
            files.append(save_spatial_figure(im0, unletterbox(cam, im.shape[2:], im0.shape[:2]),
                                             f"layer {self.cam_layer} {name}: {method} {what}", file, method,
                                             boxes=boxes))
        self.saved += files
        return files

    def cam(self, b: int, im: torch.Tensor) -> tuple[torch.Tensor, str, torch.Tensor | None]:
        """The CAM (H, W) in [0, 1] of batch element ``b`` at the CAM layer, a note for the figure title and, for
        Grad-CAM (++), the xyxy box (letterboxed-input pixels) of the prediction it explains.

        EigenCAM reads the last watched forward; Grad-CAM and Grad-CAM++ run ``im[b]`` again with gradients.
        """
        if self.cam_method == "eigen":
            a = self._records()[self.cam_layer].output
            self._check_map(a)
            return eigen_cam(a[b:b + 1]), "(first principal component)", None
        a, g, score, cls, box = self._activation_and_grad(im[b:b + 1])
        names = getattr(self.model, "names", None)
        if isinstance(names, dict):
            names = [names.get(j, j) for j in range(cls + 1)]
        label = str(names[cls]) if isinstance(names, (list, tuple)) and cls < len(names) else str(cls)
        cam = (grad_cam_pp if self.cam_method == "gradpp" else grad_cam)(a, g)
        return cam, f"(top prediction: class {label}, score {score:.3f})", box

    def _check_map(self, a: Any) -> None:
        if not (isinstance(a, torch.Tensor) and a.dim() == 4):
            raise InputError(f"layer {self.cam_layer} ({module_name(self.model.model[self.cam_layer])}) does not "
                             f"output a feature map; choose another --cam-layer")

    def _activation_and_grad(self, im1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float, int, torch.Tensor]:
        """Run ``im1`` (1, 3, h, w) recording the CAM layer's output with its gradient; back-propagate the highest
        ``objectness × class probability`` among the predictions. In-place flags and ``requires_grad`` of
        the parameters are switched off for the pass and restored, so no parameter gets a ``.grad``.

        Returns:
            activation (1, C, H, W), its gradient, the score, the class and the xyxy box of that prediction.
        """
        i = self.cam_layer
        flags = [(m, m.inplace) for m in self.model.modules() if isinstance(getattr(m, "inplace", None), bool)]
        params = [(p, p.requires_grad) for p in self.model.parameters()]
        try:
            for m, _ in flags:
                m.inplace = False  # in-place ops after the CAM layer would break back-propagation
            for p, _ in params:
                p.requires_grad_(False)
            with torch.enable_grad():
                with Recorder([(i, self.model.model[i])], grad=True) as rec:
                    pred = self.model(im1)[0][0]  # (N, 5 + nc) decoded
                self._check_map(rec[i].output)
                conf = pred[:, 4:5] * pred[:, 5:]  # (N, nc)
                k = int(conf.argmax())  # flat index: prediction k // nc, class k % nc
                score = conf.view(-1)[k]
                if score.requires_grad:  # False only when the score does not depend on the layer
                    score.backward()
        finally:
            for m, v in flags:
                m.inplace = v
            for p, v in params:
                p.requires_grad_(v)
        r = rec[i]
        g = r.grad if r.grad is not None else torch.zeros_like(r.output)
        n, cls = divmod(k, conf.shape[1])
        return r.output, g, float(score.detach()), cls, xywh2xyxy(pred[n:n + 1, :4].detach().float())[0]


def visualize(weights_or_model: str | Path | nn.Module, source: str | Path, save_dir: str | Path,
              layers: Sequence[int] | None = None, cam_layer: int | None = None, cam_method: str = "eigen",
              imgsz: int = 640, device: str = "cpu") -> list[Path]:
    """Save attention heatmaps (and a CAM) for the images in ``source``, preprocessed as ``detect.py`` does.

    Args:
        weights_or_model: a ``.pt`` checkpoint (loaded with ``attempt_load``) or a YOLOv5 ``Model``; a model in
            training mode is switched to eval for the call and back afterwards.
        source: an image, a folder, a glob or a video.
        save_dir: output folder (created).
        layers: layer indices for heatmaps; None for every attention layer, ``[]`` for none.
        cam_layer: yaml index of the layer for the class activation map; None for none.
        cam_method: ``"eigen"``, ``"grad"`` or ``"gradpp"``.
        imgsz: inference size (rounded up to a multiple of the stride); the image is letterboxed to it.
        device: ``'cpu'``, ``'0'``... (weights path only; a model stays where it is).

    Returns:
        The files written.
    """
    if isinstance(weights_or_model, nn.Module):
        model = yolo_model(weights_or_model)
    else:
        model = yolo_model(attempt_load(str(weights_or_model), map_location=select_device(device)))
    p = next(model.parameters())
    stride = max(int(model.stride.max()), 32)
    imgsz = check_img_size(imgsz, s=stride)
    was_training = model.training
    model.eval()
    viz = AttentionVisualizer(model, save_dir, layers=layers, cam_layer=cam_layer, cam_method=cam_method)
    loader = None
    try:
        loader = LoadImages(str(source), img_size=imgsz, stride=stride, auto=True)
        for path, im, im0, _, _ in loader:
            x = (torch.from_numpy(im).to(p.device, p.dtype) / 255)[None]  # (1, 3, h, w) in 0..1
            with torch.no_grad(), viz.watch():
                model(x)
            viz.save(0, Path(path).stem + ("" if loader.mode == "image" else f"_{loader.frame}"), im0, x)
    finally:
        if loader is not None:
            loader.release()
        model.train(was_training)
    LOGGER.info(f"{len(viz.saved)} attention figure(s) saved to {save_dir}")
    return viz.saved
