#!/bin/bash
# YOLOv5-attention, GPL-3.0 license
# Download COCO 2017 labels (YOLO format) and the train/val images into ../datasets (relative to the current folder)
# Example usage: bash data/scripts/get_coco.sh  (from the repository root)
# parent
# ├── yolov5-attention
# └── datasets
#     └── coco  ← downloads here

set -e
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "${PYTHON:-python}" - <<'PY'
from utils.downloads import download

download("https://github.com/ultralytics/yolov5/releases/download/v1.0/coco2017labels.zip", dir="../datasets")
urls = ["http://images.cocodataset.org/zips/train2017.zip",  # 19G, 118k images
        "http://images.cocodataset.org/zips/val2017.zip"]  # 1G, 5k images (test2017.zip, 7G, is not fetched)
download(urls, dir="../datasets/coco/images", threads=2)
PY
