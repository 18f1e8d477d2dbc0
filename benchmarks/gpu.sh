#!/usr/bin/env bash
# One prepared benchmark for a lent GPU machine (no network there; torch, transformers and peft are
# installed there). Run from the repository root; at most 7.5 minutes (timeouts 300 s + 150 s), about 4 to 6
# on an H100/H200.
#   bash benchmarks/gpu.sh [OUT_DIR]                  # both benchmarks below
#   BENCH=models bash benchmarks/gpu.sh [OUT_DIR]     # the model families' image encoding alone (about a minute)
# 1. benchmarks/gpu.py: the three experiments at the paper's sizes against the lab's way (gpu_benchmark.json).
# 2. benchmarks/gpu_models.py: CLIP, SigLIP and SigLIP 2 image encoding at ViT-B/16 sizes (random weights)
#    through transferlab's path against a bare bf16 get_image_features loop, ratio goal 1.2x (gpu_models.json).
# The model study itself needs the Hub's weights, so it is printed, not run, here (see model_study below).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-/tmp}}"
bench="${BENCH:-all}"

model_study() {  # on a GPU machine that reaches the Hugging Face Hub (weights and the lab's Tiny ImageNet)
  cat <<'CMD'
Model study (run where the Hub is reachable; zero-shot, linear probe, Tip-Adapter(-F) and LoRA at 1, 4 and 16
shots, 3 seeds, the same draws for both models, so their differences are paired). The siglip2 preset is the
paper preset with objective.loss: auto, so the CLIP arm trains exactly as --config paper (class_ce) and the
SigLIP 2 arm with its own sigmoid loss:
  transferlab lora --config siglip2 \
      --models openai/clip-vit-base-patch16,google/siglip2-base-patch16-224 \
      --shots 1,4,16 --seeds 0,1,2 --output-dir logs run_name=backbones
The study's folder: logs/study/backbones (results.csv with a model column, a curve per model).
CMD
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)"
if [ "$bench" = all ]; then
  PYTHONUNBUFFERED=1 timeout 300 python3 benchmarks/gpu.py --json "$out/gpu_benchmark.json" 2>&1 \
    | tee "$out/gpu_benchmark.log" || echo "benchmarks/gpu.py stopped early (status $?); going on"
fi
PYTHONUNBUFFERED=1 timeout 150 python3 benchmarks/gpu_models.py --json "$out/gpu_models.json" 2>&1 \
  | tee "$out/gpu_models.log"
model_study | tee "$out/model_study_command.txt"
