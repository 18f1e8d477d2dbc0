"""Generic training settings shared by the experiments that train with the Hugging Face ``Trainer``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from transferlab.errors import TransferlabError


@dataclass
class TrainingConfig:
    """How to train: optimisation, evaluation/checkpoint schedule, precision, device."""

    epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs
    batch_size: int = 32  # per device
    eval_batch_size: int | None = None  # default: 2 x batch_size
    gradient_accumulation_steps: int = 1
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup: float = 0.0  # fraction of steps in [0, 1), or a whole number of steps
    lr_scheduler: Literal["linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
                          "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr", "cosine_warmup_with_min_lr",
                          "warmup_stable_decay", "greedy"] = "linear"  # transformers.SchedulerType's values
    max_grad_norm: float = 1.0
    optim: Literal["adamw_torch", "adamw_torch_fused"] = "adamw_torch"  # fine-tuning's AdamW (the CLIP run builds its own)
    group_by_length: bool = False  # batches of similar lengths (less padding), still shuffled
    eval_steps: int | None = None  # evaluate and checkpoint every N steps; default: every epoch
    save_total_limit: int = 2  # checkpoints kept (the best one is always kept in addition)
    logging_steps: int = 10
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # fine-tuning: bf16 where the device has it, else fp16 (GPU) or fp32
    device: Literal["auto", "cpu", "cuda"] = "auto"
    gradient_checkpointing: bool = False
    num_workers: int = 0  # data loader workers
    torch_threads: int | None = None  # CPU threads for torch; default: torch's choice
    early_stopping_patience: int | None = None  # stop after this many evaluations without improvement (null: off)
    early_stopping_threshold: float = 0.0  # an evaluation improves only if it beats the best by more than this

    def validate(self, prefix: str = "training") -> None:
        positive = {"batch_size": self.batch_size, "gradient_accumulation_steps": self.gradient_accumulation_steps,
                    "save_total_limit": self.save_total_limit, "logging_steps": self.logging_steps}
        if self.eval_batch_size is not None:
            positive["eval_batch_size"] = self.eval_batch_size
        if self.eval_steps is not None:
            positive["eval_steps"] = self.eval_steps
        for key, value in positive.items():
            if value < 1:
                raise TransferlabError(f"{prefix}.{key} must be at least 1; got {value}")
        if self.epochs <= 0 and self.max_steps <= 0:
            raise TransferlabError(f"{prefix}.epochs must be positive (or set {prefix}.max_steps); got {self.epochs}")
        if self.learning_rate <= 0:
            raise TransferlabError(f"{prefix}.learning_rate must be positive; got {self.learning_rate}")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            raise TransferlabError(f"{prefix}.early_stopping_patience must be at least 1 (or null for no early "
                                   f"stopping); got {self.early_stopping_patience}")
        if self.early_stopping_threshold < 0:
            raise TransferlabError(f"{prefix}.early_stopping_threshold must be at least 0; got "
                                   f"{self.early_stopping_threshold}")
        if self.warmup < 0 or (self.warmup >= 1 and self.warmup != int(self.warmup)):
            raise TransferlabError(f"{prefix}.warmup must be a fraction in [0, 1) or a whole number of steps; "
                                   f"got {self.warmup}")


@dataclass
class AdapterSettings:
    """LoRA adapters (peft): rank, scaling, dropout and the names of the layers that get them."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.1
    target_modules: list[str] | None = None

    def validate(self, prefix: str = "lora") -> None:
        if self.r < 1:
            raise TransferlabError(f"{prefix}.r must be at least 1; got {self.r}")
        if not 0 <= self.dropout < 1:
            raise TransferlabError(f"{prefix}.dropout must be in [0, 1); got {self.dropout}")
        if self.target_modules is not None and not self.target_modules:
            raise TransferlabError(f"{prefix}.target_modules must name at least one layer (or be null)")


@dataclass
class LoraSettings(AdapterSettings):
    """LoRA for sequence classification. ``target_modules``/``head_modules`` default per architecture
    (see ``training.lora``)."""

    head_modules: list[str] | None = None  # trained in full and saved with the adapter
