"""v6.1's ``LoadWebcam`` of ``utils.datasets``: frames of one local camera or capture pipeline, letterboxed."""

from __future__ import annotations

import cv2
import numpy as np

from utils.general import LOGGER
from utils.inference_loaders import _to_chw_rgb


class LoadWebcam:
    """Iterate over the frames of a camera: yields ``('webcam.jpg', img, img0, None, 'webcam <k>: ')``.

    ``img0`` is the frame flipped left-right (a mirror view, as v6.1 shows a webcam) in BGR HWC, ``img`` its
    letterboxed RGB CHW uint8 copy. Iteration stops when the 'q' key is pressed in an OpenCV window or when the
    camera returns no frame (v6.1 raised an assertion error there; this logs ``Camera Error <pipe>`` and stops).

    Args:
        pipe: camera index as a string or int ('0' = first local camera), or a capture URL / GStreamer pipeline.
        img_size: letterbox size.
        stride: model stride (the letterbox pads to a multiple of it).
    """

    def __init__(self, pipe: str | int = "0", img_size: int = 640, stride: int = 32) -> None:
        self.img_size, self.stride = img_size, stride
        self.pipe = int(pipe) if str(pipe).isnumeric() else pipe
        self.cap = cv2.VideoCapture(self.pipe)
        self.cap.set(cv2.CAP_PROP_BUFFERSIZE, 3)  # keep at most 3 frames buffered: show recent ones
        self.count = -1

    def __iter__(self) -> "LoadWebcam":
        self.count = -1
        return self

    def _quit_key(self) -> bool:
        """Whether ``q`` was pressed in an OpenCV window (False without a display)."""
        try:
            return cv2.waitKey(1) == ord("q")
        except cv2.error:  # OpenCV built without GUI support: no key to read
            return False

    def __next__(self) -> tuple[str, np.ndarray, np.ndarray, None, str]:
        self.count += 1
        if self._quit_key():
            self.release()
            try:
                cv2.destroyAllWindows()
            except cv2.error:
                pass
            raise StopIteration
        ok, img0 = self.cap.read()
        if not ok or img0 is None:
            LOGGER.warning(f"WARNING: Camera Error {self.pipe}: no frame could be read, stopping")
            self.release()
            raise StopIteration
        img0 = cv2.flip(img0, 1)  # mirror
        return "webcam.jpg", _to_chw_rgb(img0, self.img_size, self.stride, True), img0, None, f"webcam {self.count}: "

    def __len__(self) -> int:
        return 0  # a live source has no length

    def release(self) -> None:
        """Close the capture."""
        self.cap.release()
