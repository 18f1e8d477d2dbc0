#!/usr/bin/env bash
# One prepared benchmark for a lent GPU machine (no network there; torch, transformers and peft are
# installed there). Run from the repository root; finishes in well under 8 minutes on an H100/H200.
#   bash benchmarks/gpu.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-/tmp}}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)"
PYTHONUNBUFFERED=1 timeout 470 python3 benchmarks/gpu.py --json "$out/gpu_benchmark.json" 2>&1 | tee "$out/gpu_benchmark.log"
