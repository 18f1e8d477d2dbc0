"""LoRA through peft: target modules per architecture, the classification head trained in full."""

from __future__ import annotations

from torch import nn

from transferlab.errors import TransferlabError
from transferlab.training.config import LoraSettings

# Attention projections that get adapters (query and value, as in the LoRA paper), by ``config.model_type``.
LORA_TARGETS = {
    "distilbert": ["q_lin", "v_lin"],
    "bert": ["query", "value"],
    "roberta": ["query", "value"],
    "xlm-roberta": ["query", "value"],
    "camembert": ["query", "value"],
    "electra": ["query", "value"],
    "albert": ["query", "value"],
    "mpnet": ["q", "v"],
    "deberta-v2": ["query_proj", "value_proj"],
}
# The freshly initialised classification head, trained in full and saved with the adapter.
HEAD_MODULES = {
    "distilbert": ["pre_classifier", "classifier"],
}
DEFAULT_HEAD = ["classifier", "score"]


def default_targets(model_type: str) -> list[str]:
    if model_type in LORA_TARGETS:
        return list(LORA_TARGETS[model_type])
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as peft_defaults

    if model_type in peft_defaults:
        return list(peft_defaults[model_type])
    raise TransferlabError(f"no default LoRA target modules for model type {model_type!r}: set "
                           f"lora.target_modules=[...] (names of the attention projection layers)")


def apply_lora(model: nn.Module, settings: LoraSettings):
    """Wrap a sequence-classification model with LoRA adapters; returns the peft model."""
    from peft import LoraConfig, TaskType, get_peft_model

    model_type = model.config.model_type
    targets = settings.target_modules or default_targets(model_type)
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [t for t in targets if t not in names]
    if missing:
        examples = LORA_TARGETS.get(model_type) or sorted(names)[:12]
        raise TransferlabError(f"lora.target_modules {missing} not found in this {model_type} model: choose "
                               f"among its layers, e.g. {examples}")
    head = settings.head_modules or [m for m in HEAD_MODULES.get(model_type, DEFAULT_HEAD) if m in names]
    config = LoraConfig(task_type=TaskType.SEQ_CLS, r=settings.r, lora_alpha=settings.alpha,
                        lora_dropout=settings.dropout, target_modules=targets, modules_to_save=head)
    return get_peft_model(model, config)


def count_parameters(model: nn.Module) -> dict[str, int | float]:
    """Trainable and total parameters (a LoRA model's total includes adapters and the head's trained copy)."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable": trainable, "total": total, "trainable_percent": round(100 * trainable / max(total, 1), 4)}
