#!/bin/bash
# YOLOv5-attention, GPL-3.0 license
# Download COCO128 (the first 128 images of COCO train2017) into ../datasets (relative to the current folder)
# Example usage: bash data/scripts/get_coco128.sh  (from the repository root)
# parent
# ├── yolov5-attention
# └── datasets
#     └── coco128  ← downloads here

set -e
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "${PYTHON:-python}" - <<'PY'
from utils.downloads import download

download("https://github.com/ultralytics/yolov5/releases/download/v1.0/coco128.zip", dir="../datasets")
PY
