#!/usr/bin/env bash
# The CUDA check, in one command (see benchmarks/gpu_check.py for the steps):
#   bash benchmarks/gpu_check.sh [--out DIR] [--data bccd.yaml]   # on a machine with a CUDA device, < 8 minutes
#   bash benchmarks/gpu_check.sh --dry-run [--out DIR]             # every step on the CPU, tiny: checks the script
# Results: DIR/summary.md, DIR/summary.json, DIR/logs/*.log, DIR/train/*/results.csv (default DIR runs/gpu_check).
# On the GPU machine a missing openvino or tensorrt is pip-installed first (logs/pip_*.log); if that fails, the
# OpenVINO or TensorRT steps are reported as skipped with the reason. A dry run installs nothing.
# Exit status 0 when every step passed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONUNBUFFERED=1
exec "$PY" benchmarks/gpu_check.py "$@"
