"""Generic training settings shared by the experiments that train with the Hugging Face ``Trainer``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from transferlab.config import check_config, setting
from transferlab.errors import TransferlabError

SCHEDULERS = Literal["linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
                     "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr", "cosine_warmup_with_min_lr",
                     "warmup_stable_decay", "greedy"]  # transformers.SchedulerType's values


@dataclass
class TrainingConfig:
    """How to train: optimisation, evaluation/checkpoint schedule, precision, device."""

    SECTION: ClassVar[str] = "training"
    epochs: float = setting(1.0, "passes over the training data (fractions allowed)")
    max_steps: int = setting(-1, "> 0: stop after this many optimizer steps (overrides epochs); -1: off")
    batch_size: int = setting(32, "training examples per device and step", at_least=1)
    eval_batch_size: int | None = setting(None, "evaluation batch size (null: 2 x batch_size)", at_least=1)
    gradient_accumulation_steps: int = setting(1, "batches summed before each optimizer step", at_least=1)
    learning_rate: float = setting(5e-5, "peak learning rate (AdamW)", above=0)
    weight_decay: float = setting(0.01, "AdamW weight decay", at_least=0)
    warmup: float = setting(0.0, "learning-rate warm-up: a fraction of the steps in [0, 1), or a whole number of "
                                 "steps")
    lr_scheduler: SCHEDULERS = setting("linear", "learning-rate schedule after warm-up (transformers' "
                                                 "SchedulerType)")
    max_grad_norm: float = setting(1.0, "gradient clipping norm", at_least=0)
    optim: Literal["adamw_torch", "adamw_torch_fused"] = setting(
        "adamw_torch", "fine-tuning's AdamW implementation (the CLIP run builds its own)")
    group_by_length: bool = setting(False, "batches of similar lengths (less padding), still shuffled")
    eval_steps: int | None = setting(None, "evaluate and checkpoint every N steps (null: every epoch)", at_least=1)
    save_total_limit: int = setting(2, "checkpoints kept (the best one is always kept in addition)", at_least=1)
    logging_steps: int = setting(10, "log the training loss every N steps", at_least=1)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = setting(
        "auto", "fine-tuning's precision; auto: bf16 where the device has it, else fp16 (GPU) or fp32")
    device: Literal["auto", "cpu", "cuda"] = setting("auto", "auto: a GPU when there is one, else the CPU")
    gradient_checkpointing: bool = setting(False, "recompute activations in the backward pass (less memory, "
                                                  "slower)")
    num_workers: int = setting(0, "data loader worker processes", at_least=0)
    torch_threads: int | None = setting(None, "CPU threads for torch (null: torch's choice)", at_least=1)
    early_stopping_patience: int | None = setting(
        None, "stop after this many evaluations without improvement (null: off)", at_least=1,
        note="(or null for no early stopping)")
    early_stopping_threshold: float = setting(0.0, "an evaluation improves only if it beats the best by more "
                                                   "than this", at_least=0)

    def __post_init__(self) -> None:
        check_config(self)

    def validate(self, prefix: str = "training") -> None:
        if self.epochs <= 0 and self.max_steps <= 0:
            raise TransferlabError(f"{prefix}.epochs must be positive (or set {prefix}.max_steps); got {self.epochs}")
        if self.warmup < 0 or (self.warmup >= 1 and self.warmup != int(self.warmup)):
            raise TransferlabError(f"{prefix}.warmup must be a fraction in [0, 1) or a whole number of steps; "
                                   f"got {self.warmup}")


PEFT_METHODS = Literal["lora", "dora", "rslora", "pissa", "olora", "ln_tuning", "ia3"]


@dataclass
class AdapterSettings:
    """Adapters (peft): the method, rank, scaling, dropout and the names of the layers that get them."""

    SECTION: ClassVar[str] = "lora"
    variant: PEFT_METHODS = setting(
        "lora", "the peft method: lora; dora (weight-decomposed LoRA); rslora (scaled by alpha / sqrt(r)); pissa "
                "or olora (LoRA initialised from the weights' principal singular vectors or their QR "
                "decomposition, saved converted to a plain LoRA adapter on the unmodified base model); ln_tuning "
                "(the LayerNorms trained; r, alpha, dropout and target_modules unused on a dual encoder); ia3 "
                "(learnt scaling vectors on target_modules, fc1/fc2/lin1/lin2 scaling their input; r, alpha and "
                "dropout unused)")
    r: int = setting(8, "LoRA rank", at_least=1)
    alpha: int = setting(16, "LoRA scaling (the update is scaled by alpha / r)")
    dropout: float = setting(0.1, "dropout on the adapters' input", at_least=0, below=1)
    target_modules: list[str] | None = setting(None, "names of the layers that get adapters (null: the "
                                                     "architecture's default)")

    def __post_init__(self) -> None:
        check_config(self)

    def validate(self, prefix: str = "lora") -> None:
        if self.target_modules is not None and not self.target_modules:
            raise TransferlabError(f"{prefix}.target_modules must name at least one layer (or be null)")


@dataclass
class LoraSettings(AdapterSettings):
    """LoRA for sequence classification. ``target_modules``/``head_modules`` default per architecture
    (see ``training.lora``)."""

    head_modules: list[str] | None = setting(None, "layers trained in full and saved with the adapter (null: the "
                                                   "architecture's classification head)")
