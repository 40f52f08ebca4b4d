"""Annotation converters (utils/converters.py) and autosplit: small fixtures made here, expected label lines worked
out by hand from each dataset's formula and number format."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from utils.converters import (XVIEW_CLASSES, argoverse_json_to_labels, coco_json_to_labels, sku_csv_to_labels,
                              visdrone_to_yolo, voc_xml_to_yolo, xview_geojson_to_labels)
from utils.dataset_downloads import autosplit

VOC_NAMES = ['aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair', 'cow', 'diningtable',
             'dog', 'horse', 'motorbike', 'person', 'pottedplant', 'sheep', 'sofa', 'train', 'tvmonitor']


def voc_xml(w: int, h: int, objects: list[tuple]) -> str:
    """A VOC annotation; objects are (name, difficult or None, xmin, ymin, xmax, ymax)."""
    objs = "".join(
        f"<object><name>{n}</name>" + (f"<difficult>{d}</difficult>" if d is not None else "") +
        f"<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
        for n, d, x1, y1, x2, y2 in objects)
    return f"<annotation><size><width>{w}</width><height>{h}</height><depth>3</depth></size>{objs}</annotation>"


def test_voc_drops_difficult_and_unknown_and_uses_str(tmp_path):
    xml = voc_xml(500, 375, [("dog", 0, 48, 240, 195, 371), ("person", 1, 8, 12, 352, 498),
                             ("unicorn", 0, 1, 1, 10, 10), ("cat", None, 10, 5, 30, 40)])
    # dog = 11: ((48+195)/2 - 1)/500 = 120.5/500, (305.5 - 1)/375, 147/500, 131/375
    # cat = 7: (20 - 1)/500, (22.5 - 1)/375, 20/500, 35/375
    expected = ["11 0.241 0.812 0.294 0.34933333333333333", "7 0.038 0.05733333333333333 0.04 0.09333333333333334"]
    assert voc_xml_to_yolo(xml, VOC_NAMES) == expected
    (tmp_path / "a.xml").write_text(xml)
    assert voc_xml_to_yolo(tmp_path / "a.xml", VOC_NAMES) == expected


def test_visdrone_skips_score_zero_and_shifts_class():
    text = "10,20,30,10,1,4,0,0\n0,0,5,5,0,0,0,0\n50,25,7,3,1,10,0,1\n"
    # W, H = 100, 50: car (4 -> 3) at ((10+15)/100, (20+5)/50, 30/100, 10/50); motor (10 -> 9): (53.5/100, 26.5/50)
    assert visdrone_to_yolo(text, (100, 50)) == ["3 0.250000 0.500000 0.300000 0.200000",
                                                 "9 0.535000 0.530000 0.070000 0.060000"]
    assert visdrone_to_yolo("1,1,2,2,0,1,0,0", (10, 10)) == []


def test_xview_maps_type_ids_clips_and_skips(tmp_path, yolo_log):
    Image.new("RGB", (200, 100)).save(tmp_path / "1.tif")
    feats = [("1.tif", 73, "10,20,50,60"), ("1.tif", 18, "180,90,220,120"), ("1.tif", 75, "1,1,5,5"),
             ("2.tif", 73, "1,1,5,5"), ("1.tif", 73, "")]
    data = {"features": [{"properties": {"image_id": i, "type_id": t, "bounds_imcoords": b}} for i, t, b in feats]}
    labels = xview_geojson_to_labels(data, tmp_path)
    # Building (73 -> 48): ((10+50)/2/200, (20+60)/2/100, 40/200, 40/100); 18 -> 5 clipped to x2=200, y2=100
    assert labels == {"1": ["48 0.150000 0.400000 0.200000 0.400000", "5 0.950000 0.950000 0.100000 0.100000"]}
    warnings = [x for x in yolo_log if "skipping one label" in x]
    assert len(warnings) == 1 and "1.tif" in warnings[0] and "75" in warnings[0]  # missing 2.tif: silent
    assert len(XVIEW_CLASSES) == 60 and XVIEW_CLASSES[11] == 0 and XVIEW_CLASSES[94] == 59 and 75 not in XVIEW_CLASSES


def test_sku_csv(tmp_path):
    rows = "b.jpg,25,50,75,150,object,100,200\na.jpg,10,20,30,60,object,100,200\na.jpg,0,0,100,200,object,100,200\n"
    (tmp_path / "annotations_val.csv").write_text(rows)
    images, labels = sku_csv_to_labels(tmp_path / "annotations_val.csv")
    assert images == ["./images/a.jpg", "./images/b.jpg"]  # unique, sorted
    # (x1/W, y1/H, x2/W, y2/H) -> xywh: a: (0.1, 0.1, 0.3, 0.3) and (0, 0, 1, 1); b: (0.25, 0.25, 0.75, 0.75)
    assert labels == {"b": ["0 0.50000 0.50000 0.50000 0.50000"],
                      "a": ["0 0.20000 0.20000 0.20000 0.20000", "0 0.50000 0.50000 1.00000 1.00000"]}


def test_argoverse_fixed_size_and_str():
    data = {"images": [{"name": "f0.jpg", "sid": 0}, {"name": "f1.jpg", "sid": 1}],
            "annotations": [{"image_id": 1, "category_id": 2, "bbox": [960, 600, 192, 120]},
                            {"image_id": 0, "category_id": 0, "bbox": [0, 0, 96, 60]},
                            {"image_id": 1, "category_id": 7, "bbox": [100, 200, 30, 40]}],
            "seq_dirs": ["train/seqA/ring_front_center", "train/seqB/ring_front_center"]}
    # 1920x1200: (960+96)/1920 = 0.55, (600+60)/1200 = 0.55; (100+15)/1920, (200+20)/1200, 30/1920, 40/1200
    assert argoverse_json_to_labels(data) == {
        "train/seqB/ring_front_center/f1.txt": ["2 0.55 0.55 0.1 0.1",
                                                "7 0.059895833333333336 0.18333333333333332 0.015625 "
                                                "0.03333333333333333"],
        "train/seqA/ring_front_center/f0.txt": ["0 0.025 0.025 0.05 0.05"]}


def objects365_json() -> dict:
    return {"categories": [{"id": 1, "name": "Person"}, {"id": 3, "name": "Car"}],
            "images": [{"id": 10, "file_name": "images/v1/patch0/obj_1.jpg", "width": 200, "height": 100},
                       {"id": 11, "file_name": "obj_2.jpg", "width": 100, "height": 100}],
            "annotations": [{"id": 1, "image_id": 10, "category_id": 3, "bbox": [10, 10, 20, 30], "iscrowd": 0,
                             "area": 600},
                            {"id": 2, "image_id": 10, "category_id": 1, "bbox": [190, 90, 20, 20], "iscrowd": 1,
                             "area": 400},
                            {"id": 3, "image_id": 11, "category_id": 1, "bbox": [0, 0, 50, 50], "iscrowd": 0,
                             "area": 2500}]}


def test_coco_json_grouped_by_class_and_clipped(tmp_path):
    coco_mod = pytest.importorskip("pycocotools.coco", reason="pycocotools is not installed")
    (tmp_path / "a.json").write_text(json.dumps(objects365_json()))
    labels = coco_json_to_labels(coco_mod.COCO(str(tmp_path / "a.json")))
    # Person = 0 (crowd kept), clipped to 200x100: xyxy (190, 90, 200, 100); Car = 1: xyxy (10, 10, 30, 40)
    assert labels == {"obj_1": ["0 0.97500 0.95000 0.05000 0.10000", "1 0.10000 0.25000 0.10000 0.30000"],
                      "obj_2": ["0 0.25000 0.25000 0.50000 0.50000"]}


def test_autosplit_seed0_line_format(tmp_path):
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    names = [f"{i}.jpg" for i in range(9)] + ["sub/9.png"]
    for n in names:
        (images / n).touch()
    (images / "notes.txt").touch()  # not an image
    (tmp_path / "autosplit_test.txt").write_text("stale\n")
    autosplit(images, weights=(0.5, 0.3, 0.2))
    # random.seed(0); random.choices([0, 1, 2], weights=(0.5, 0.3, 0.2), k=10) == [2, 1, 0, 0, 1, 0, 1, 0, 0, 1]
    # over the sorted files 0.jpg ... 8.jpg, sub/9.png
    read = {s: (tmp_path / f"autosplit_{s}.txt").read_text().splitlines() for s in ("train", "val", "test")}
    assert read == {"train": ["./images/2.jpg", "./images/3.jpg", "./images/5.jpg", "./images/7.jpg",
                              "./images/8.jpg"],
                    "val": ["./images/1.jpg", "./images/4.jpg", "./images/6.jpg", "./images/sub/9.png"],
                    "test": ["./images/0.jpg"]}
    (tmp_path / "labels").mkdir()
    for i in (1, 2):
        (tmp_path / "labels" / f"{i}.txt").touch()
    autosplit(images, weights=(0.5, 0.3, 0.2), annotated_only=True)
    assert (tmp_path / "autosplit_train.txt").read_text() == "./images/2.jpg\n"
    assert (tmp_path / "autosplit_val.txt").read_text() == "./images/1.jpg\n"
    assert not (tmp_path / "autosplit_test.txt").exists()  # no image in that split: no file
