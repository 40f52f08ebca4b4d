#!/bin/bash
# YOLOv5-attention, GPL-3.0 license
# Download the official YOLOv5 v6.1 release weights into the current folder (offline: fails at once naming the URL)
# Example usage: bash data/scripts/download_weights.sh
# parent
# └── yolov5-attention
#     ├── yolov5n.pt  ← downloads here
#     ├── yolov5s.pt
#     └── ...

set -e
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "${PYTHON:-python}" - <<'PY'
from utils.downloads import attempt_download

for p in ("", "6"):  # P5 models, then P6 models
    for x in "nsmlx":
        attempt_download(f"yolov5{x}{p}.pt")
PY
