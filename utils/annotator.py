"""Drawing boxes and labels on images: the class colour palette, local font lookup and ``Annotator``.

``utils.plots`` re-exports everything here, so ``from utils.plots import Annotator, colors`` works as in v6.1.
Fonts are never downloaded: a requested font is used only when it is found on disk, else an installed
TrueType font (DejaVu Sans, which matplotlib ships), else PIL's built-in default font.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

Color = tuple[int, int, int]

# Directories searched (recursively) for a font file by name.
FONT_DIRS: tuple[Path, ...] = tuple(Path(os.path.expanduser(d)) for d in (
    "~/.fonts", "~/.local/share/fonts", "/usr/share/fonts", "/usr/local/share/fonts",
    "/Library/Fonts", "/System/Library/Fonts", "C:/Windows/Fonts"))
# Fallbacks, tried in order: Latin text first, then fonts with CJK coverage for non-ASCII labels.
LATIN_FONTS = ("DejaVuSans.ttf", "LiberationSans-Regular.ttf", "FreeSans.ttf", "Arial.ttf")
CJK_FONTS = ("Arial.Unicode.ttf", "Arial Unicode.ttf", "NotoSansCJK-Regular.ttc", "NotoSansCJKsc-Regular.otf",
             "wqy-zenhei.ttc", "wqy-microhei.ttc", "DroidSansFallbackFull.ttf", "DroidSansFallback.ttf")


class Colors:
    """The 20-colour class palette; ``colors(i)`` is an RGB tuple, ``colors(i, bgr=True)`` the reversed one."""

    HEX = ("FF3838", "FF9D97", "FF701F", "FFB21D", "CFD231", "48F90A", "92CC17", "3DDB86", "1A9334", "00D4BB",
           "2C99A8", "00C2FF", "344593", "6473FF", "0018EC", "8438FF", "520085", "CB38FF", "FF95C8", "FF37C7")

    def __init__(self) -> None:
        self.palette: list[Color] = [self.hex2rgb(f"#{h}") for h in self.HEX]
        self.n = len(self.palette)

    def __call__(self, i: int | float, bgr: bool = False) -> Color:
        """Colour for class ``i`` (index taken modulo 20)."""
        c = self.palette[int(i) % self.n]
        return (c[2], c[1], c[0]) if bgr else c

    @staticmethod
    def hex2rgb(h: str) -> Color:
        """``'#RRGGBB'`` -> ``(R, G, B)``."""
        h = h.lstrip("#")
        return tuple(int(h[i:i + 2], 16) for i in (0, 2, 4))  # type: ignore[return-value]


colors = Colors()  # shared instance: ``colors(cls, bgr=True)``


def is_ascii(s: object = "") -> bool:
    """True when ``str(s)`` has only ASCII characters."""
    return all(ord(c) < 128 for c in str(s))


def is_chinese(s: object = "") -> bool:
    """True when ``str(s)`` contains a CJK unified ideograph."""
    return any("\u4e00" <= c <= "\u9fff" for c in str(s))


def _matplotlib_font_dir() -> Path | None:
    """matplotlib's bundled TTF folder, located without importing matplotlib's font manager."""
    try:
        import matplotlib

        return Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    except Exception:  # matplotlib missing or broken: just one fewer place to look
        return None


@functools.lru_cache(maxsize=64)
def find_font(name: str) -> Path | None:
    """Path of an installed font file called ``name`` (or ``name`` itself when it is a file), else None."""
    p = Path(name)
    if p.is_file():
        return p
    target = p.name.lower()
    dirs = list(FONT_DIRS)
    mpl = _matplotlib_font_dir()
    if mpl is not None:
        dirs.insert(0, mpl)
    for d in dirs:
        if not d.is_dir():
            continue
        direct = d / p.name
        if direct.is_file():
            return direct
        for root, _, files in os.walk(d):
            for f in files:
                if f.lower() == target:
                    return Path(root) / f
    return None


def load_font(font: str = "Arial.ttf", size: int = 10, text: str = "") -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """A PIL font of ``size`` for drawing ``text``, found locally; never downloads.

    Order: ``font`` if found on disk; for non-ASCII ``text`` a font with CJK coverage; DejaVu Sans and other
    common TrueType fonts; finally PIL's built-in default font.
    """
    candidates = [font] + (list(CJK_FONTS) if not is_ascii(text) else []) + list(LATIN_FONTS)
    for name in candidates:
        path = find_font(name)
        if path is not None:
            try:
                return ImageFont.truetype(str(path), size)
            except OSError:  # unreadable or not a font: try the next one
                continue
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1: scalable built-in font
    except TypeError:
        return ImageFont.load_default()


def _text_size(font: ImageFont.ImageFont | ImageFont.FreeTypeFont, text: str) -> tuple[int, int]:
    """(width, height) of ``text`` in ``font`` (height from the top of the glyph box to the baseline area)."""
    x0, y0, x1, y1 = font.getbbox(text)
    return int(x1), int(y1)


class Annotator:
    """Draw boxes, labels and text on an image in OpenCV (default) or PIL mode.

    Args:
        im: HWC uint8 numpy image (any channel order; colours are used as given) or a PIL image.
        line_width: box line width; default ``max(round((H + W + C) / 2 * 0.003), 2)``.
        font_size: PIL font size; default ``max(round((W + H) / 2 * 0.035), 12)``.
        font: font file name or path wanted in PIL mode (used only if installed).
        pil: force PIL mode; also chosen when ``example`` (e.g. the class names) is non-ASCII.
        example: sample text deciding the mode and the font coverage.
    """

    def __init__(self, im: np.ndarray | Image.Image, line_width: int | None = None, font_size: int | None = None,
                 font: str = "Arial.ttf", pil: bool = False, example: str = "abc") -> None:
        if isinstance(im, Image.Image):
            shape = (im.height, im.width, len(im.getbands()))
        else:
            assert im.data.contiguous, "Image not contiguous. Apply np.ascontiguousarray(im) to Annotator() input."
            shape = im.shape if im.ndim == 3 else (*im.shape, 1)
        self.pil = pil or not is_ascii(example) or is_chinese(example)
        if self.pil:
            self.im = im if isinstance(im, Image.Image) else Image.fromarray(im)
            self.draw = ImageDraw.Draw(self.im)
            self.font = load_font("Arial.Unicode.ttf" if is_chinese(example) else font,
                                  font_size or max(round(sum(self.im.size) / 2 * 0.035), 12), example)
        else:
            self.im = im if isinstance(im, np.ndarray) else np.ascontiguousarray(np.asarray(im))
        self.lw = line_width or max(round(sum(shape) / 2 * 0.003), 2)

    def box_label(self, box: Sequence[float], label: str = "", color: Color = (128, 128, 128),
                  txt_color: Color = (255, 255, 255)) -> None:
        """Draw an xyxy ``box`` with a filled ``label`` tab above its top-left corner (below it if no room)."""
        if self.pil:
            self._box_label_pil(box, label, color, txt_color)
            return
        p1, p2 = (int(box[0]), int(box[1])), (int(box[2]), int(box[3]))
        cv2.rectangle(self.im, p1, p2, color, thickness=self.lw, lineType=cv2.LINE_AA)
        if label:
            tf = max(self.lw - 1, 1)  # font thickness
            w, h = cv2.getTextSize(label, 0, fontScale=self.lw / 3, thickness=tf)[0]
            outside = p1[1] - h - 3 >= 0  # label tab fits above the box
            q2 = (p1[0] + w, p1[1] - h - 3) if outside else (p1[0] + w, p1[1] + h + 3)
            cv2.rectangle(self.im, p1, q2, color, -1, cv2.LINE_AA)  # filled tab
            org = (p1[0], p1[1] - 2) if outside else (p1[0], p1[1] + h + 2)
            cv2.putText(self.im, label, org, 0, self.lw / 3, txt_color, thickness=tf, lineType=cv2.LINE_AA)

    def _box_label_pil(self, box: Sequence[float], label: str, color: Color, txt_color: Color) -> None:
        x1, y1, x2, y2 = (float(v) for v in box[:4])
        self.draw.rectangle((x1, y1, x2, y2), width=self.lw, outline=color)
        if label:
            w, h = _text_size(self.font, label)
            outside = y1 - h >= 0
            top = y1 - h if outside else y1
            self.draw.rectangle((x1, top, x1 + w + 1, top + h + 1), fill=color)
            self.draw.text((x1, top), label, fill=txt_color, font=self.font)

    def rectangle(self, xy: Sequence[float], fill: Color | None = None, outline: Color | None = None,
                  width: int = 1) -> None:
        """Draw an xyxy rectangle (``fill`` and/or ``outline``)."""
        if self.pil:
            self.draw.rectangle(tuple(float(v) for v in xy[:4]), fill=fill, outline=outline, width=width)
            return
        p1, p2 = (int(xy[0]), int(xy[1])), (int(xy[2]), int(xy[3]))
        if fill is not None:
            cv2.rectangle(self.im, p1, p2, fill, -1)
        if outline is not None:
            cv2.rectangle(self.im, p1, p2, outline, width)

    def text(self, xy: Sequence[float], text: str, txt_color: Color = (255, 255, 255)) -> None:
        """Write ``text`` with its top-left corner at ``xy``."""
        if self.pil:
            self.draw.text((float(xy[0]), float(xy[1])), text, fill=txt_color, font=self.font)
            return
        tf = max(self.lw - 1, 1)
        _, h = cv2.getTextSize(text, 0, fontScale=self.lw / 3, thickness=tf)[0]
        cv2.putText(self.im, text, (int(xy[0]), int(xy[1]) + h), 0, self.lw / 3, txt_color, thickness=tf,
                    lineType=cv2.LINE_AA)

    def result(self) -> np.ndarray:
        """The annotated image as a numpy array (same channel order as given)."""
        return np.asarray(self.im)
