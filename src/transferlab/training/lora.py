"""LoRA through peft: one ``apply_lora`` taking explicit targets (fine-tuning and the dual encoder), the
sequence-classification defaults (targets per architecture, the head trained in full), parameter counts."""

from __future__ import annotations

from typing import Sequence

from torch import nn

from transferlab.errors import TransferlabError
from transferlab.models.dual_encoder_lora import adapter_formula
from transferlab.training.config import AdapterSettings, LoraSettings

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


def apply_lora(model: nn.Module, settings: AdapterSettings, targets: Sequence[str], *,
               modules_to_save: Sequence[str] = (), task_type: str | None = None):
    """Inject LoRA adapters into the modules named by ``targets`` (short or full names); returns the peft
    model. ``modules_to_save``: modules trained in full and saved with the adapter."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(task_type=task_type, r=settings.r, lora_alpha=settings.alpha,
                        lora_dropout=settings.dropout, target_modules=list(targets),
                        modules_to_save=list(modules_to_save) or None)
    return get_peft_model(model, config)


def classifier_lora(model: nn.Module, settings: LoraSettings):
    """LoRA for a sequence-classification model: targets per architecture unless given, the new head
    trained in full."""
    from peft import TaskType

    model_type = model.config.model_type
    targets = settings.target_modules or default_targets(model_type)
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [t for t in targets if t not in names]
    if missing:
        examples = LORA_TARGETS.get(model_type) or sorted(names)[:12]
        raise TransferlabError(f"lora.target_modules {missing} not found in this {model_type} model: choose "
                               f"among its layers, e.g. {examples}")
    head = settings.head_modules or [m for m in HEAD_MODULES.get(model_type, DEFAULT_HEAD) if m in names]
    return apply_lora(model, settings, targets, modules_to_save=head, task_type=TaskType.SEQ_CLS)


def lora_formula(model: nn.Module, targets: Sequence[str], r: int) -> int:
    """LoRA's added parameters over the ``targets`` (full names): r x (in + out) per linear layer (A is
    r x in, B is out x r), r x (in x k x k + out) per convolution (``adapter_formula``)."""
    modules = dict(model.named_modules())
    return sum(adapter_formula(getattr(modules[t], "base_layer", modules[t]), r) for t in targets)


def count_parameters(model: nn.Module) -> dict[str, int | float]:
    """Trainable and total parameters (a LoRA model's total includes adapters and the head's trained copy)."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable": trainable, "total": total, "trainable_percent": round(100 * trainable / max(total, 1), 4)}


def lora_parameters(model: nn.Module) -> int:
    """Parameters of the LoRA adapters alone (A and B matrices)."""
    return sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
