"""Drawing and plot helpers: palette, Annotator, batch mosaics, label/results plots, crops."""

from __future__ import annotations

import shutil
import socket
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import utils.annotator as annotator_mod
from utils.plots import (Annotator, Colors, colors, output_to_target, plot_images, plot_labels, plot_results,
                         save_one_box)

REFERENCE_CSV = Path(__file__).resolve().parents[2] / "shared" / "reference" / "v61_results_bccd_e30.csv"


def test_colors_palette():
    assert colors(0) == (255, 56, 56)
    assert colors(0, bgr=True) == (56, 56, 255)
    assert colors(5) == (72, 249, 10) and colors(19) == (255, 55, 199)
    assert colors(20) == colors(0) and colors(41) == colors(1) and colors(3.0) == colors(3)
    assert len(Colors().palette) == 20
    assert all(colors(i, bgr=True) == colors(i)[::-1] for i in range(20))


@pytest.mark.parametrize("shape, lw", [((640, 640, 3), 2), ((1080, 1920, 3), 5), ((3000, 4000, 3), 11),
                                       ((100, 120, 3), 2), ((2000, 2000, 3), 6)])
def test_annotator_line_width(shape, lw):
    assert Annotator(np.zeros(shape, np.uint8)).lw == lw
    assert max(round(sum(shape) / 2 * 0.003), 2) == lw
    assert Annotator(np.zeros(shape, np.uint8), line_width=7).lw == 7


def test_box_label_opencv():
    im = np.zeros((200, 200, 3), np.uint8)
    a = Annotator(im, line_width=2)
    assert not a.pil
    color = (0, 255, 0)
    a.box_label((50, 80, 150, 160), "cat", color=color)
    out = a.result()
    assert out is im  # drawn in place
    assert tuple(out[120, 50]) == color and tuple(out[120, 150]) == color  # left / right edges
    assert tuple(out[160, 100]) == color  # bottom edge
    assert not out[100:140, 60:140].any()  # inside untouched
    w, h = cv2.getTextSize("cat", 0, fontScale=2 / 3, thickness=1)[0]
    tab = out[80 - h - 3:80, 50:50 + w]  # label tab above the top-left corner
    is_color = (tab == color).all(-1).mean()
    assert 0.4 < is_color < 1.0  # mostly the box colour, the rest is the white text
    assert (tab.min(-1) > 100).any()  # some light text pixels

    im2 = np.zeros((200, 200, 3), np.uint8)
    Annotator(im2, line_width=2).box_label((50, 2, 150, 100), "cat", color=color)  # no room above: tab below
    assert (im2[3:3 + h, 52:50 + w] == color).all(-1).mean() > 0.4


def _no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


def test_pil_mode_non_ascii_without_network_or_arial(monkeypatch):
    _no_network(monkeypatch)
    real_find = annotator_mod.find_font
    monkeypatch.setattr(annotator_mod, "find_font", lambda name: None if "arial" in name.lower() else real_find(name))
    im = np.zeros((240, 320, 3), np.uint8)
    a = Annotator(im, example="猫 chat Straße")
    assert a.pil
    assert "arial" not in str(getattr(a.font, "path", "")).lower()
    a.box_label((40, 80, 200, 200), "猫 0.9", color=(255, 0, 0))
    a.text((5, 5), "ß")
    out = a.result()
    assert out.shape == im.shape and out.dtype == np.uint8
    assert tuple(out[150, 40]) == (255, 0, 0)
    assert (out[:80, 40:120] == (255, 0, 0)).all(-1).any()  # label tab above the box


def test_pil_default_font_when_nothing_installed(monkeypatch):
    _no_network(monkeypatch)
    monkeypatch.setattr(annotator_mod, "find_font", lambda name: None)
    a = Annotator(np.zeros((100, 100, 3), np.uint8), pil=True)
    a.box_label((10, 30, 90, 90), "abc", color=(0, 0, 255))
    assert (a.result() == (0, 0, 255)).all(-1).any()


def test_installed_truetype_font_found():
    font = annotator_mod.load_font("Arial.ttf", 20)
    assert font.size == 20  # a scalable font: DejaVu Sans (matplotlib / system) or PIL's default


def test_plot_images_grid(tmp_path):
    imgs = torch.rand(3, 3, 64, 80)
    targets = torch.tensor([[0, 0, 0.5, 0.5, 0.4, 0.4], [1, 1, 0.3, 0.3, 0.2, 0.2], [2, 5, 0.6, 0.6, 0.3, 0.5]])
    f = tmp_path / "train_batch0.jpg"
    plot_images(imgs, targets, ["a/0001.jpg", "b/0002.jpg", "c/0003.jpg"], f, names=[str(i) for i in range(6)])
    im = cv2.imread(str(f))
    assert im is not None and im.shape == (128, 160, 3)  # ceil(sqrt(3)) = 2 tiles per side
    assert im[100:, 100:].min() > 200  # the 4th tile stays white

    f2 = tmp_path / "small.jpg"
    plot_images(imgs.numpy() * 255, output_to_target([torch.tensor([[5.0, 5, 40, 40, 0.9, 1]])]), None, f2,
                max_size=100)
    assert cv2.imread(str(f2)).shape == (80, 100, 3)  # scale 100/2/80: tiles 40 x 50


def test_output_to_target_columns():
    out = [torch.tensor([[10.0, 20, 50, 60, 0.9, 3], [0, 0, 10, 10, 0.5, 1]]), torch.zeros(0, 6),
           torch.tensor([[4.0, 4, 8, 12, 0.25, 0]])]
    t = output_to_target(out)
    assert t.shape == (3, 7)
    np.testing.assert_allclose(t[0], [0, 3, 30, 40, 40, 40, 0.9], rtol=1e-6)
    np.testing.assert_allclose(t[2], [2, 0, 6, 8, 4, 8, 0.25], rtol=1e-6)
    assert output_to_target([torch.zeros(0, 6)]).shape == (0, 7)


def test_plot_labels_files(tmp_path, yolo_log):
    rng = np.random.default_rng(0)
    labels = np.c_[rng.integers(0, 3, 60), rng.uniform(0.2, 0.8, (60, 2)), rng.uniform(0.05, 0.3, (60, 2))]
    plot_labels(labels, names=["a", "b", "c"], save_dir=tmp_path)
    for name in ("labels.jpg", "labels_correlogram.jpg"):
        assert cv2.imread(str(tmp_path / name)) is not None
    assert f"Plotting labels to {tmp_path / 'labels.jpg'}... " in yolo_log


def test_plot_results_reference_csv(tmp_path):
    if not REFERENCE_CSV.is_file():
        pytest.skip(f"reference results.csv not found at {REFERENCE_CSV} (../shared is absent)")
    shutil.copy(REFERENCE_CSV, tmp_path / "results.csv")
    plot_results(file=tmp_path / "results.csv")
    im = cv2.imread(str(tmp_path / "results.png"))
    assert im is not None and im.shape == (1200, 2400, 3)  # 12 x 6 inches at dpi 200


def test_save_one_box(tmp_path):
    im = np.zeros((100, 200, 3), np.uint8)
    im[..., 0] = 255  # blue in BGR
    crop = save_one_box(torch.tensor([50, 20, 90, 60]), im, file=tmp_path / "crops" / "a.jpg", BGR=True)
    assert crop.shape == (51, 51, 3)  # 40 * 1.02 + 10 = 50.8 -> 51 pixels
    assert (tmp_path / "crops" / "a.jpg").is_file()
    rgb = save_one_box([0, 0, 10, 10], im, square=True, save=False)
    assert rgb.shape == (15, 15, 3) and rgb[0, 0, 2] == 255  # clipped at the corner, returned RGB


def test_attention_layer_figures(tmp_path):
    from utils.attention_maps import LayerMaps
    from utils.attention_plots import save_layer_figures

    im0 = np.full((40, 64, 3), 128, np.uint8)
    spatial = torch.rand(2, 4, 4)  # (B, H, W) over a 64x64 letterboxed input
    lm = LayerMaps(7, "SimAM", spatial=spatial, channel=torch.rand(2, 8))
    files = save_layer_figures(lm, 1, im0, (64, 64), tmp_path / "att", "img")
    assert [f.name for f in files] == ["img_layer7_SimAM.png", "img_layer7_SimAM_channels.png"]
    assert all(cv2.imread(str(f)) is not None for f in files)
    lm = LayerMaps(3, "NAMAttention", channel=torch.rand(8))  # no spatial map; image-independent channels
    assert [f.name for f in save_layer_figures(lm, 0, im0, (64, 64), tmp_path / "att", "img")] == \
        ["img_layer3_NAMAttention_channels.png"]


def test_plot_val_study_draws_every_table(tmp_path):
    from utils.plots import plot_val_study

    rng = np.random.default_rng(0)
    for name in ("study_coco_yolov5n", "study_coco_yolov5s"):  # val.py --task study rows: 11 sizes × 10 columns
        rows = np.c_[rng.random((11, 4)) * 0.5, np.zeros((11, 3)), rng.random((11, 3)) * 20]
        np.savetxt(tmp_path / f"{name}.txt", rows, fmt="%10.4g")
    out = plot_val_study(file=tmp_path / "study_coco_yolov5n.txt", x=list(range(256, 1537, 128)))
    assert out == tmp_path / "study.png" and out.stat().st_size > 20_000
