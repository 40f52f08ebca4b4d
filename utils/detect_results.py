"""What ``detect.py`` writes per image: label files, crops, annotated images and videos, the window view.

:class:`Results` is filled by ``detect.detect_all`` one image at a time and closed at the end of a run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import cv2
import torch

from utils.boxes import scale_coords, xyxy2xywh
from utils.general import LOGGER, OutputNames
from utils.plots import Annotator, colors, save_one_box

STREAM_FPS = 30  # frame rate of videos saved from live streams


def class_name(names: Sequence[str], c: int) -> str:
    """Name of class ``c``, or ``class{c}`` when the names do not cover it."""
    return str(names[c]) if 0 <= c < len(names) else f"class{c}"


def _open_writer(save_path: str, vid_cap: cv2.VideoCapture | None, im0, vid_stride: int = 1) -> cv2.VideoWriter:
    """An ``mp4v`` writer at the source's fps (divided by ``vid_stride``, so the video keeps its duration) and
    size (streams: 30 fps, frame size); the path gets ``.mp4``."""
    h, w = im0.shape[:2]
    fps = STREAM_FPS
    if vid_cap is not None:
        f = vid_cap.get(cv2.CAP_PROP_FPS)
        fps = f / vid_stride if f and f > 0 and f == f else STREAM_FPS  # 0 or NaN -> fallback
        w = int(vid_cap.get(cv2.CAP_PROP_FRAME_WIDTH)) or w
        h = int(vid_cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) or h
    save_path = str(Path(save_path).with_suffix(".mp4"))
    writer = cv2.VideoWriter(save_path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        LOGGER.warning(f"WARNING: cannot open a video writer for {save_path}; frames are not saved")
    return writer


@dataclass
class Results:
    """Everything a run writes per image: label files, crops, the annotated image or video, the window view,
    and the attention figures (through ``viz``). :meth:`close` releases the videos and windows.

    Attributes mirror ``detect.run``'s flags; ``bs`` is the number of parallel sources (streams), one video each.
    """

    save_dir: Path
    names: list[str]
    bs: int = 1
    save_img: bool = True
    save_txt: bool = False
    save_conf: bool = False
    save_crop: bool = False
    view_img: bool = False
    line_thickness: int = 3
    hide_labels: bool = False
    hide_conf: bool = False
    viz: Any = None  # a models.attention_vis.AttentionVisualizer, or None
    vid_stride: int = 1  # videos read every vid_stride-th frame: saved at fps / vid_stride
    shown: bool = False  # a window was opened

    def __post_init__(self) -> None:
        self.out_name = OutputNames()  # a.jpg and a.png (or x/a.jpg and y/a.jpg) never share output files
        self.vid_path: list[str | None] = [None] * self.bs
        self.vid_writer: list[cv2.VideoWriter | None] = [None] * self.bs

    def image(self, i: int, det: torch.Tensor, im: torch.Tensor, p: Path, im0, line: str, frame: int, mode: str,
              vid_cap: cv2.VideoCapture | None, dt: float) -> bool:
        """Handle detections ``det`` (n, 6) of batch element ``i`` (letterboxed batch ``im``) on the original
        ``im0`` from source ``p``: log the line, write every output. Returns True when 'q' was pressed."""
        stem = self.out_name(p)
        suffix = "" if mode == "image" else f"_{frame}"
        if self.viz is not None:  # before the boxes are drawn on im0
            self.viz.save(i, stem + suffix, im0, im)
        line += "%gx%g " % im.shape[2:]
        annotator = Annotator(im0, line_width=self.line_thickness, example=str(self.names))
        if len(det):
            det[:, :4] = scale_coords(im.shape[2:], det[:, :4], im0.shape).round()
            for c in det[:, -1].unique():
                n = int((det[:, -1] == c).sum())
                line += f"{n} {class_name(self.names, int(c))}{'s' * (n > 1)}, "
            self._boxes(det, im0, annotator, stem, str(self.save_dir / "labels" / stem) + suffix)
        LOGGER.info(f"{line}Done. ({dt:.3f}s)")
        im0 = annotator.result()
        quit_ = self._show(p, im0) if self.view_img else False
        if self.save_img:
            self._save(i, str(self.save_dir / (stem + p.suffix)), im0, mode, vid_cap)
        return quit_

    def _boxes(self, det: torch.Tensor, im0, annotator: Annotator, stem: str, txt_path: str) -> None:
        """Label rows, drawn boxes and crops of the scaled detections, lowest confidence first."""
        gn = torch.tensor(im0.shape)[[1, 0, 1, 0]]  # whwh normalisation gain
        imc = im0.copy() if self.save_crop else im0
        for *xyxy, conf, cls in reversed(det):
            c = int(cls)
            if self.save_txt:
                xywh = (xyxy2xywh(torch.tensor(xyxy).view(1, 4)) / gn).view(-1).tolist()
                row = (cls, *xywh, conf) if self.save_conf else (cls, *xywh)
                with open(f"{txt_path}.txt", "a") as f:
                    f.write(("%g " * len(row)).rstrip() % tuple(float(v) for v in row) + "\n")
            if self.save_img or self.save_crop or self.view_img:
                name = class_name(self.names, c)
                label = "" if self.hide_labels else (name if self.hide_conf else f"{name} {conf:.2f}")
                annotator.box_label(xyxy, label, color=colors(c, True))
            if self.save_crop:
                save_one_box(xyxy, imc, file=self.save_dir / "crops" / class_name(self.names, c) / f"{stem}.jpg",
                             BGR=True)

    def _show(self, p: Path, im0) -> bool:
        """Show ``im0`` in a window; True when 'q' was pressed. A failing display switches viewing off."""
        try:
            cv2.imshow(str(p), im0)
            self.shown = True
            return cv2.waitKey(1) == ord("q")  # 'q' in a window stops the run
        except cv2.error as e:
            LOGGER.warning(f"WARNING: cv2.imshow() failed ({e}); frames are no longer shown")
            self.view_img = False
            return False

    def _save(self, i: int, save_path: str, im0, mode: str, vid_cap: cv2.VideoCapture | None) -> None:
        """Write the annotated image, or append it to source ``i``'s video (a new writer per new video)."""
        if mode == "image":
            if not cv2.imwrite(save_path, im0):
                LOGGER.warning(f"WARNING: could not write {save_path}")
            return
        if self.vid_path[i] != save_path:  # a new video
            self.vid_path[i] = save_path
            if self.vid_writer[i] is not None:
                self.vid_writer[i].release()
            self.vid_writer[i] = _open_writer(save_path, vid_cap, im0, self.vid_stride)
        self.vid_writer[i].write(im0)

    def close(self) -> None:
        """Release the video writers (a run that stops mid-video still leaves playable files) and windows."""
        for w in self.vid_writer:
            if w is not None:
                w.release()
        if self.shown:
            cv2.destroyAllWindows()
        if self.viz is not None:
            LOGGER.info(f"{len(self.viz.saved)} attention figure(s) saved to {self.viz.save_dir}")


