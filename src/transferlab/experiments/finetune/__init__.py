"""Experiment 2: fine-tune a text encoder for sequence classification with the Hugging Face ``Trainer``."""

from transferlab.experiments.finetune.config import FinetuneConfig
from transferlab.experiments.finetune.runner import run_finetune

__all__ = ["FinetuneConfig", "run_finetune"]
