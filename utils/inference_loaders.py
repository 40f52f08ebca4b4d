"""Inference sources for ``detect.py``: image/video files and live streams.

v6.1 keeps these in ``utils/datasets.py``; they live here because that file holds the training dataset and is
already near the size limit, and ``utils.datasets`` re-exports both classes so ``from utils.datasets import
LoadImages`` still works. The display probe :func:`check_imshow` is here too: whether frames can be shown is a
question about the inference I/O, and OpenCV's Qt backend *aborts the process* when ``cv2.imshow`` is called
without a display, so it must be asked carefully, in one place.

Bad-input policy (friendlier than v6.1, which asserts): a missing path is a ``FileNotFoundError`` naming it; an
unreadable image among several is logged (file and reason) and skipped; a video that cannot be opened is logged
and skipped; a video that ends before the frame count in its header (truncated file, read error) is logged and
left for the next file. Nothing is downloaded: YouTube/pafy sources are refused.
"""

from __future__ import annotations

import glob
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from utils.augmentations import letterbox
from utils.general import LOGGER
from utils.labels import IMG_FORMATS, VID_FORMATS

__all__ = ["LoadImages", "LoadStreams", "check_imshow", "is_url"]

URL_PREFIXES = ("rtsp://", "rtmp://", "http://", "https://")
STREAM_FPS_FALLBACK = 30.0  # when a capture reports no usable FPS


def is_url(source: str | Path) -> bool:
    """True for ``rtsp://``, ``rtmp://``, ``http://`` and ``https://`` sources (case-insensitive)."""
    return str(source).lower().startswith(URL_PREFIXES)


def _suffix(path: str) -> str:
    return path.rsplit(".", 1)[-1].lower() if "." in os.path.basename(path) else ""


def _to_chw_rgb(im: np.ndarray, img_size: int | tuple, stride: int, auto: bool) -> np.ndarray:
    """Letterbox a BGR HWC image and return it as a contiguous RGB CHW uint8 array."""
    im = letterbox(im, img_size, stride=stride, auto=auto)[0]
    return np.ascontiguousarray(im.transpose((2, 0, 1))[::-1])


def _unreadable_reason(path: str) -> str:
    """Why OpenCV could not read the image at ``path`` (for the warning)."""
    try:
        size = os.path.getsize(path)
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    return "empty file (0 bytes)" if size == 0 else "not a decodable image"


class LoadImages:
    """Iterate over the images, then the videos, of a file, a folder (``dir/*.*``) or a glob (recursive ``**``).

    Yields ``(path, img, img0, cap, s)``: ``img`` is the letterboxed RGB CHW uint8 array, ``img0`` the original
    BGR HWC image, ``cap`` the open ``cv2.VideoCapture`` (None for images) and ``s`` the log prefix
    ``'image {k}/{nf} {path}: '`` or ``'video {k}/{nf} ({frame}/{frames}) {path}: '``. ``mode`` is ``'image'``
    or ``'video'``; ``frame`` counts the frames of the current video from 1.

    Args:
        path: file, directory or glob pattern.
        img_size: letterbox size, one int or ``(h, w)``.
        stride: model stride, for the minimal padding of ``auto``.
        auto: pad only to a multiple of ``stride`` (PyTorch backends) instead of to the full size.
        vid_stride: read every ``vid_stride``-th video frame (frames ``vid_stride - 1``, ``2 * vid_stride - 1``,
            ...); ``frames`` is then the number of frames that will be read.

    Raises:
        FileNotFoundError: ``path`` does not exist, or holds no supported image or video.
        ValueError: ``vid_stride`` < 1.
    """

    def __init__(self, path: str | Path, img_size: int | tuple = 640, stride: int = 32, auto: bool = True,
                 vid_stride: int = 1) -> None:
        if int(vid_stride) < 1:
            raise ValueError(f"--vid-stride must be 1 or more, got {vid_stride}")
        self.vid_stride = int(vid_stride)
        p = str(Path(path).resolve())  # absolute, as in v6.1's log lines
        if "*" in p:
            files = sorted(glob.glob(p, recursive=True))
        elif os.path.isdir(p):
            files = sorted(glob.glob(os.path.join(glob.escape(p), "*.*")))
        elif os.path.isfile(p):
            files = [p]
        else:
            raise FileNotFoundError(f"ERROR: {p} does not exist")
        images = [x for x in files if _suffix(x) in IMG_FORMATS]
        videos = [x for x in files if _suffix(x) in VID_FORMATS]
        self.img_size, self.stride, self.auto = img_size, stride, auto
        self.files = images + videos
        self.nf = len(self.files)
        self.video_flag = [False] * len(images) + [True] * len(videos)
        self.mode = "image"
        self.cap: cv2.VideoCapture | None = None
        self.frame, self.frames = 0, 0
        self.count = 0
        if not self.nf:
            raise FileNotFoundError(f"No images or videos found in {p}. Supported formats are:\n"
                                    f"images: {IMG_FORMATS}\nvideos: {VID_FORMATS}")

    def __iter__(self) -> "LoadImages":
        self.release()
        self.count = 0
        return self

    def __len__(self) -> int:
        return self.nf

    def __next__(self) -> tuple[str, np.ndarray, np.ndarray, cv2.VideoCapture | None, str]:
        while self.count < self.nf:
            path = self.files[self.count]
            if self.video_flag[self.count]:
                item = self._next_frame(path)
            else:
                self.count += 1
                item = self._read_image(path)
            if item is not None:
                return item
        self.release()
        raise StopIteration

    def _read_image(self, path: str) -> tuple | None:
        self.mode = "image"
        try:
            img0 = cv2.imread(path)
        except cv2.error as e:  # e.g. an image too large for OpenCV's limits
            img0, why = None, f"OpenCV error: {e}".strip()
        else:
            why = None if img0 is not None else _unreadable_reason(path)
        if img0 is None:
            LOGGER.warning(f"WARNING: skipping image {path}: {why}")
            return None
        s = f"image {self.count}/{self.nf} {path}: "
        return path, _to_chw_rgb(img0, self.img_size, self.stride, self.auto), img0, None, s

    def _next_frame(self, path: str) -> tuple | None:
        """The next frame of the video at ``self.count``; None (and ``count`` advanced) when it has none left."""
        self.mode = "video"
        if self.cap is None:
            self.new_video(path)
            if not self.cap.isOpened():
                LOGGER.warning(f"WARNING: skipping video {path}: OpenCV cannot open it (corrupt, truncated "
                               f"or unsupported codec)")
                self._end_video()
                return None
        try:
            ok = all(self.cap.grab() for _ in range(self.vid_stride))  # skip to the next frame we keep
            ok, img0 = self.cap.retrieve() if ok else (False, None)
        except cv2.error as e:
            ok, img0 = False, None
            LOGGER.warning(f"WARNING: read error in video {path} after frame {self.frame}: {e}")
        if not ok or img0 is None:
            if self.frame == 0:
                LOGGER.warning(f"WARNING: skipping video {path}: no frame could be decoded")
            elif self.frame < self.frames:
                LOGGER.warning(f"WARNING: video {path} ended after {self.frame} of the {self.frames} frames in "
                               f"its header (truncated or unreadable), moving on")
            self._end_video()
            return None
        self.frame += 1
        s = f"video {self.count + 1}/{self.nf} ({self.frame}/{self.frames}) {path}: "
        return path, _to_chw_rgb(img0, self.img_size, self.stride, self.auto), img0, self.cap, s

    def _end_video(self) -> None:
        self.release()
        self.count += 1

    def new_video(self, path: str) -> None:
        """Open ``path`` and reset the per-video frame counter."""
        self.frame = 0
        self.cap = cv2.VideoCapture(path)
        n = max(int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0) if self.cap.isOpened() else 0
        self.frames = n // self.vid_stride

    def release(self) -> None:
        """Close the current video capture, if any."""
        if self.cap is not None:
            self.cap.release()
            self.cap = None


class LoadStreams:
    """Read one or more live sources (webcam index, RTSP/RTMP/HTTP stream, or a video file) in background threads.

    Each ``next()`` returns the latest frame of every stream: ``(sources, imgs, img0s, None, '')`` with ``imgs``
    the letterboxed RGB BCHW uint8 batch and ``img0s`` the list of original BGR frames; ``mode`` is ``'stream'``.
    Iteration stops when any stream has ended. Letterbox ``auto`` is used only when every stream letterboxes to
    the same shape (one batch tensor needs one shape).

    Args:
        sources: a text file with one source per non-empty line, or a single source.
        img_size: letterbox size, one int or ``(h, w)``.
        stride: model stride.
        auto: minimal (stride-multiple) padding, when the stream shapes allow it.

    Raises:
        FileNotFoundError: a source that is a local path does not exist.
        ConnectionError: a stream cannot be opened or gives no first frame.
        ValueError: a YouTube URL (needs pafy, which this project does not use).
    """

    def __init__(self, sources: str | Path = "streams.txt", img_size: int | tuple = 640, stride: int = 32,
                 auto: bool = True) -> None:
        self.mode = "stream"
        self.img_size, self.stride = img_size, stride
        sources = str(sources)
        if os.path.isfile(sources):
            with open(sources) as f:
                sources = [x.strip() for x in f.read().strip().splitlines() if x.strip()]
        else:
            sources = [sources]
        if not sources:
            raise ValueError("LoadStreams: the stream list is empty")
        n = len(sources)
        self.sources = sources
        self.imgs: list[np.ndarray | None] = [None] * n
        self.fps: list[float] = [0.0] * n
        self.frames: list[float] = [0] * n
        self.threads: list[threading.Thread | None] = [None] * n
        self.caps: list[cv2.VideoCapture | None] = [None] * n
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.count = -1
        try:
            for i, s in enumerate(sources):
                self._open(i, s, n)
        except BaseException:
            self.close()
            raise
        LOGGER.info("")
        shapes = np.stack([letterbox(x, img_size, stride=stride, auto=auto)[0].shape for x in self.imgs])
        self.rect = np.unique(shapes, axis=0).shape[0] == 1
        self.auto = auto and self.rect
        if not self.rect:
            LOGGER.warning("WARNING: Stream shapes differ. For optimal performance supply similarly-shaped streams.")

    def _open(self, i: int, s: str, n: int) -> None:
        st = f"{i + 1}/{n}: {s}... "
        if "youtube.com/" in s.lower() or "youtu.be/" in s.lower():
            raise ValueError(f"{st}YouTube sources need pafy/youtube_dl, which this project does not use; pass a "
                             f"direct video stream URL or a local file instead")
        src: int | str = int(s) if s.isnumeric() else s
        if isinstance(src, str) and not is_url(src) and not os.path.exists(src):
            raise FileNotFoundError(f"{st}stream source not found: {src}")
        cap = cv2.VideoCapture(src)
        self.caps[i] = cap
        if not cap.isOpened():
            raise ConnectionError(f"{st}Failed to open {s}")
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps[i] = (fps % 100 if math.isfinite(fps) and fps > 0 else 0) or STREAM_FPS_FALLBACK
        self.frames[i] = max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0) or float("inf")
        ok, im = cap.read()
        if not ok or im is None:
            raise ConnectionError(f"{st}Failed to read a first frame from {s}")
        self.imgs[i] = im
        self.threads[i] = threading.Thread(target=self.update, args=(i, cap, src), daemon=True)
        LOGGER.info(f"{st} Success ({self.frames[i]} frames {w}x{h} at {self.fps[i]:.2f} FPS)")
        self.threads[i].start()

    def update(self, i: int, cap: cv2.VideoCapture, src: int | str) -> None:
        """Reader thread of stream ``i``: keep ``imgs[i]`` at the latest frame, paced at the stream's FPS.

        A local file ends the stream at its last readable frame; a live source that fails to deliver a frame is
        reported, blanked and reopened.
        """
        n, live = 1, not (isinstance(src, str) and os.path.isfile(src))
        while not self._stop.is_set() and cap.isOpened() and n < self.frames[i]:
            t0 = time.time()
            ok, im = cap.read()
            n += 1
            if ok and im is not None:
                with self._lock:
                    self.imgs[i] = im
            elif not live:
                if n <= self.frames[i]:
                    LOGGER.warning(f"WARNING: stream {i + 1} ({src}) ended after {n - 1} of {self.frames[i]} frames")
                break
            else:
                LOGGER.warning("WARNING: Video stream unresponsive, please check your IP camera connection.")
                with self._lock:
                    self.imgs[i] = np.zeros_like(self.imgs[i])
                cap.open(src)
            self._stop.wait(max(1 / self.fps[i] - (time.time() - t0), 0))  # real-time pacing, interruptible
        cap.release()

    def __iter__(self) -> "LoadStreams":
        self.count = -1
        return self

    def __next__(self) -> tuple[list[str], np.ndarray, list[np.ndarray], None, str]:
        self.count += 1
        if self._stop.is_set() or not all(t is not None and t.is_alive() for t in self.threads):
            self.close()
            raise StopIteration
        with self._lock:
            img0 = [x.copy() for x in self.imgs]
        img = np.stack([letterbox(x, self.img_size, stride=self.stride, auto=self.auto)[0] for x in img0])
        img = np.ascontiguousarray(img[..., ::-1].transpose((0, 3, 1, 2)))  # BGR->RGB, BHWC->BCHW
        return self.sources, img, img0, None, ""

    def __len__(self) -> int:
        return len(self.sources)  # the batch size

    def close(self, timeout: float = 2.0) -> None:
        """Stop the reader threads (each releases its capture); safe to call more than once."""
        self._stop.set()
        for t in self.threads:
            if t is not None and t.is_alive() and t is not threading.current_thread():
                t.join(timeout)
        for t, cap in zip(self.threads, self.caps):
            if cap is not None and (t is None or not t.is_alive()):
                cap.release()


def check_imshow(warn: bool = True) -> bool:
    """True when ``cv2.imshow`` can open a window here.

    OpenCV's Qt backend aborts the whole process when it cannot reach a display, so on Linux a missing
    ``$DISPLAY``/``$WAYLAND_DISPLAY`` answers no at once, and otherwise the window is tried in a child process.
    """
    reason = ""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        reason = "no DISPLAY or WAYLAND_DISPLAY is set"
    else:
        code = ("import cv2, numpy as np; cv2.imshow('test', np.zeros((8, 8, 3), np.uint8)); cv2.waitKey(1); "
                "cv2.destroyAllWindows(); cv2.waitKey(1)")
        try:
            r = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=20)
            reason = "" if r.returncode == 0 else f"a test window failed (exit code {r.returncode})"
        except (OSError, subprocess.TimeoutExpired) as e:
            reason = f"a test window failed ({type(e).__name__})"
    if reason and warn:
        LOGGER.warning(f"WARNING: Environment does not support cv2.imshow() image displays ({reason}); "
                       f"frames are not shown")
    return not reason

