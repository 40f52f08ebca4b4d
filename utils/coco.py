"""COCO-format json: predictions from val.py, ground truth built from a YOLO-format dataset, pycocotools eval."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from utils.boxes import xyxy2xywh
from utils.general import LOGGER


def coco80_to_coco91_class() -> list[int]:
    """COCO's 80 training class indices -> the 91-id category ids of the COCO annotation files."""
    return [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31, 32,
            33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59,
            60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90]


def image_id(path: str | Path) -> int | str:
    """COCO image id of a file: the stem as an int when numeric, else the stem."""
    stem = Path(path).stem
    return int(stem) if stem.isnumeric() else stem


def append_predictions(predn: torch.Tensor, jdict: list, path: str | Path, class_map: list[int]) -> None:
    """Append one image's (n, 6) xyxy/conf/cls predictions (original pixels) as COCO result dicts."""
    box = xyxy2xywh(predn[:, :4].clone())  # centre xywh
    box[:, :2] -= box[:, 2:] / 2  # top-left corner
    for p, b in zip(predn.tolist(), box.tolist()):
        jdict.append({"image_id": image_id(path), "category_id": class_map[int(p[5])],
                      "bbox": [round(x, 3) for x in b], "score": round(p[4], 5)})


def dataset_to_coco(img_files: list[str], labels: list[np.ndarray], shapes: np.ndarray, names: list[str],
                    class_map: list[int]) -> dict[str, Any]:
    """Ground truth in COCO format from YOLO labels (normalised cls, x, y, w, h) and original (w, h) sizes."""
    images, annotations = [], []
    for f, lb, (w, h) in zip(img_files, labels, shapes):
        iid = image_id(f)
        images.append({"id": iid, "file_name": Path(f).name, "width": int(w), "height": int(h)})
        for c, x, y, bw, bh in lb.tolist():
            box = [(x - bw / 2) * w, (y - bh / 2) * h, bw * w, bh * h]
            annotations.append({"id": len(annotations) + 1, "image_id": iid, "category_id": class_map[int(c)],
                                "bbox": [round(v, 3) for v in box], "area": box[2] * box[3], "iscrowd": 0})
    categories = [{"id": class_map[i], "name": n} for i, n in enumerate(names)]
    return {"images": images, "annotations": annotations, "categories": categories}


def coco_evaluate(anno_json: str | Path, pred_json: str | Path) -> tuple[float, float] | None:
    """Run pycocotools' bbox evaluation; returns (mAP@.5:.95, mAP@.5), or None (logged) when it cannot run."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        anno = COCO(str(anno_json))
        pred = anno.loadRes(str(pred_json))
        ev = COCOeval(anno, pred, "bbox")
        ev.params.imgIds = anno.getImgIds()  # every image of the dataset, with or without predictions
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        return float(ev.stats[0]), float(ev.stats[1])
    except Exception as e:
        LOGGER.warning(f"pycocotools unable to run: {e}")
        return None
