"""Generic Hugging Face ``Trainer`` wiring shared by the training experiments.

- ``config``: ``TrainingConfig`` / ``LoraSettings`` dataclasses (the YAML ``training:`` / ``lora:`` sections)
- ``arguments``: ``TrainingArguments`` from a config, device and precision resolved
- ``checkpoints``: checkpoint discovery, ``--resume`` target, compatibility checks
- ``callbacks``: TensorBoard once per (tag, step) in the run folder, checkpoint provenance
- ``trainer``: ``GuardedTrainer`` (stops on a NaN loss) and ``train`` (NaN / OOM -> one-line errors)
- ``lora``: LoRA target modules per architecture, parameter counts
- ``distributed``: main-process checks and broadcasts under torchrun / accelerate launch
"""

from transferlab.training.config import LoraSettings, TrainingConfig

__all__ = ["LoraSettings", "TrainingConfig"]
