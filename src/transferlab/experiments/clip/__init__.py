"""Experiment 3: CLIP-style zero-shot classification and LoRA fine-tuning on Tiny ImageNet.

The runners are ``zeroshot.run_zeroshot`` and ``lora.run_lora`` (the experiment registry names them);
the CLIP library they use lives in ``transferlab.models`` (``zero_shot``, ``prompt_classifier``,
``clip_losses``, ``linear_probe``, ``dual_encoder_lora``, ``dual_encoder_factory``).
"""

from __future__ import annotations

from pathlib import Path


def run_zeroshot(config, output_dir: str | Path = "logs", **kwargs) -> Path | None:
    from transferlab.experiments.clip.zeroshot import run_zeroshot as run

    return run(config, output_dir, **kwargs)


def run_lora(config, output_dir: str | Path = "logs", **kwargs) -> Path | None:
    from transferlab.experiments.clip.lora import run_lora as run

    return run(config, output_dir, **kwargs)
