"""Generic Hugging Face ``Trainer`` wiring shared by every experiment that trains (fine-tuning and CLIP LoRA).

- ``config``: ``TrainingConfig`` (the YAML ``training:`` section of every Trainer experiment),
  ``AdapterSettings`` (LoRA rank, scaling, dropout, targets) and ``LoraSettings`` (+ the classification head)
- ``arguments``: the one ``TrainingArguments`` builder (with or without checkpoints)
- ``checkpoints``: checkpoint discovery, ``--resume`` target, compatibility checks
- ``callbacks``: TensorBoard once per (tag, step) in the run folder, checkpoint provenance, ``KeepBest``
  (the best state of a run without checkpoints)
- ``trainer``: ``GuardedTrainer`` (stops on a NaN loss), ``EvaluatingTrainer`` (evaluation by a function of
  the model) and ``train`` (NaN / OOM -> one-line errors)
- ``lora``: ``apply_lora`` with explicit targets, sequence-classification defaults, parameter counts
- ``distributed``: process state, broadcasts and each process's device under torchrun / accelerate launch
"""

from transferlab.training.config import AdapterSettings, LoraSettings, TrainingConfig

__all__ = ["AdapterSettings", "LoraSettings", "TrainingConfig"]
