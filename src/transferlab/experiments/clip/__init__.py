"""Experiment 3: CLIP-style zero-shot classification and LoRA fine-tuning on Tiny ImageNet."""

from __future__ import annotations

from pathlib import Path


def run_zeroshot(config, output_dir: str | Path) -> Path:
    from transferlab.experiments.clip.zeroshot import run_zeroshot as run

    return run(config, output_dir)


def run_lora(config, output_dir: str | Path) -> Path:
    from transferlab.experiments.clip.lora import run_lora as run

    return run(config, output_dir)
