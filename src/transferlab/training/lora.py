"""Adapters through peft: one ``apply_lora`` taking explicit targets (fine-tuning and the dual encoder) for
every variant (``lora.variant``: LoRA, DoRA, rsLoRA, PiSSA and OLoRA initialisations, LayerNorm tuning, IA3),
the sequence-classification defaults (targets per architecture, the head trained in full), saving (PiSSA and
OLoRA converted to a plain LoRA adapter on the unmodified base model), parameter counts, and
``AdapterTrainer``: checkpoints of the trained parameters alone, with the best state kept so far."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Sequence

from torch import nn

from transferlab.errors import TransferlabError
from transferlab.models.dual_encoder_lora import FEEDFORWARD, adapter_formula, is_adapter_parameter
from transferlab.tracking.files import atomic_write
from transferlab.training.callbacks import Best, KeepBest, trainable_state
from transferlab.training.config import AdapterSettings, LoraSettings
from transferlab.training.trainer import EvaluatingTrainer

# Variants whose initialisation changes the base weights (W - BA stays in the base layer): their adapter is
# saved converted (peft's ``path_initial_model_for_weight_conversion``) so it applies to the plain base model.
CONVERTED = ("pissa", "olora")
INITIAL_ADAPTER = "initial_adapter"  # the run folder's copy of a PiSSA/OLoRA adapter as initialised
# Each variant's name as papers and peft's documentation write it.
VARIANT_NAMES = {"lora": "LoRA", "dora": "DoRA", "rslora": "rsLoRA", "pissa": "PiSSA", "olora": "OLoRA",
                 "ln_tuning": "LN tuning", "ia3": "IA3"}
TRAINED_WEIGHTS = "model.safetensors"  # a checkpoint's trained parameters (the Trainer's file name)
KEEP_BEST = "keep_best"  # a checkpoint's KeepBest: .json (steps and value) and .safetensors (the best state)
# The layer classes each variant's peft implementation takes (LoRA's: linear, convolution, embedding).
VARIANT_LAYERS = {"pissa": (nn.Linear,), "olora": (nn.Linear,), "ia3": (nn.Linear, nn.Conv2d)}

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


def peft_config(settings: AdapterSettings, targets: Sequence[str], *, modules_to_save: Sequence[str] = (),
                task_type: str | None = None, feedforward: Sequence[str] | None = None):
    """peft's config for ``settings.variant`` over ``targets``. IA3's ``feedforward`` layers (scaled at their
    input) default to the targets named in ``FEEDFORWARD``."""
    from peft import IA3Config, LNTuningConfig, LoraConfig

    save, variant = list(modules_to_save) or None, settings.variant
    if variant == "ln_tuning":
        return LNTuningConfig(task_type=task_type, target_modules=list(targets), modules_to_save=save)
    if variant == "ia3":
        if feedforward is None:
            feedforward = [t for t in targets if t.rsplit(".", 1)[-1] in FEEDFORWARD]
        return IA3Config(task_type=task_type, target_modules=list(targets), feedforward_modules=list(feedforward),
                         modules_to_save=save)
    return LoraConfig(task_type=task_type, r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                      target_modules=list(targets), modules_to_save=save, use_dora=variant == "dora",
                      use_rslora=variant == "rslora", init_lora_weights=variant if variant in CONVERTED else True)


def matching_modules(model: nn.Module, target: str) -> list[tuple[str, nn.Module]]:
    """The modules a peft target names: the full name, or a suffix after a dot (peft's own rule)."""
    return [(n, m) for n, m in model.named_modules() if n == target or n.endswith("." + target)]


def check_variant_layers(model: nn.Module, variant: str, targets: Sequence[str]) -> None:
    """A one-line error before training when the variant's peft implementation cannot take a target."""
    kinds = VARIANT_LAYERS.get(variant)
    if kinds is None:
        return
    bad = sorted({n for t in targets for n, m in matching_modules(model, t) if not isinstance(m, kinds)})
    if bad:
        raise TransferlabError(f"lora.variant={variant} applies to {' and '.join(k.__name__ for k in kinds)} layers, "
                               f"not {bad[0]} ({type(dict(model.named_modules())[bad[0]]).__name__}): choose other "
                               f"lora.target_modules or another lora.variant")


def apply_lora(model: nn.Module, settings: AdapterSettings, targets: Sequence[str], *,
               modules_to_save: Sequence[str] = (), task_type: str | None = None,
               feedforward: Sequence[str] | None = None):
    """Inject ``settings.variant``'s adapters into the modules named by ``targets`` (short or full names);
    returns the peft model. ``modules_to_save``: modules trained in full and saved with the adapter."""
    from peft import get_peft_model

    check_variant_layers(model, settings.variant, targets)
    return get_peft_model(model, peft_config(settings, targets, modules_to_save=modules_to_save,
                                             task_type=task_type, feedforward=feedforward))


def save_initial_adapter(peft_model, variant: str, run_dir: Path) -> Path | None:
    """PiSSA/OLoRA: the adapter as initialised, before any training step (what ``save_peft_adapter`` converts
    against); ``None`` for the other variants."""
    if variant not in CONVERTED:
        return None
    folder = Path(run_dir) / INITIAL_ADAPTER
    peft_model.save_pretrained(folder)
    return folder


def save_peft_adapter(peft_model, folder: Path, initial: Path | None = None) -> None:
    """``peft_model.save_pretrained(folder)``; with ``initial`` (PiSSA/OLoRA), converted as peft documents it
    (``path_initial_model_for_weight_conversion``: the update as a rank-2r LoRA adapter on the unmodified base
    model), the modules trained in full (a classifier head) kept, which peft's conversion drops, and the
    initial copy removed."""
    if initial is None:
        peft_model.save_pretrained(folder)
        return
    from peft import get_peft_model_state_dict
    from safetensors.torch import load_file, save_file

    full = {k: v for k, v in get_peft_model_state_dict(peft_model).items() if "lora_A" not in k and "lora_B" not in k}
    peft_model.save_pretrained(folder, path_initial_model_for_weight_conversion=str(initial))
    if full:
        weights = Path(folder) / "adapter_model.safetensors"
        state = load_file(str(weights))
        state.update({k: v.detach().cpu().contiguous() for k, v in full.items() if k not in state})
        save_file(state, str(weights), metadata={"format": "pt"})
    shutil.rmtree(initial, ignore_errors=True)


def classifier_lora(model: nn.Module, settings: LoraSettings):
    """Adapters for a sequence-classification model: targets per architecture and variant unless given, the
    new head trained in full."""
    from peft import TaskType

    model_type = model.config.model_type
    targets, feedforward = classifier_targets(model, settings)
    missing = [t for t in targets if not matching_modules(model, t)]
    if missing:
        names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
        examples = LORA_TARGETS.get(model_type) or sorted(names)[:12]
        raise TransferlabError(f"lora.target_modules {missing} not found in this {model_type} model: choose "
                               f"among its layers, e.g. {examples}")
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    head = settings.head_modules or [m for m in HEAD_MODULES.get(model_type, DEFAULT_HEAD) if m in names]
    return apply_lora(model, settings, targets, modules_to_save=head, task_type=TaskType.SEQ_CLS,
                      feedforward=feedforward)


def classifier_targets(model: nn.Module, settings: LoraSettings) -> tuple[list[str], list[str] | None]:
    """``(targets, IA3's feed-forward layers or None)``: ``lora.target_modules`` if given; else LN tuning's
    LayerNorms, IA3's peft defaults for the architecture (keys, values and the feed-forward output where peft
    has them), or the architecture's LoRA targets."""
    if settings.target_modules:
        return list(settings.target_modules), None
    model_type = model.config.model_type
    if settings.variant == "ln_tuning":
        return sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.LayerNorm)}), None
    if settings.variant == "ia3":
        from peft.utils.constants import (TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING as feedforward,
                                          TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING as ia3)

        if model_type in ia3:
            return list(ia3[model_type]), list(feedforward.get(model_type, []))
    return default_targets(model_type), None


def lora_formula(model: nn.Module, targets: Sequence[str], r: int, variant: str = "lora") -> int:
    """The adapters' added parameters over the ``targets`` (full names): LoRA's r x (in + out) per linear layer
    (A is r x in, B is out x r), r x (in x k x k + out) per convolution, and the other variants' counts
    (``adapter_formula``)."""
    modules = dict(model.named_modules())
    return sum(adapter_formula(getattr(modules[t], "base_layer", modules[t]), r, variant, t) for t in targets)


def count_parameters(model: nn.Module) -> dict[str, int | float]:
    """Trainable and total parameters (a LoRA model's total includes adapters and the head's trained copy)."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable": trainable, "total": total, "trainable_percent": round(100 * trainable / max(total, 1), 4)}


def lora_parameters(model: nn.Module) -> int:
    """Parameters of the adapters alone (LoRA's A and B matrices, DoRA's magnitudes, IA3's vectors, LN tuning's
    trained norms)."""
    return sum(p.numel() for n, p in model.named_parameters() if is_adapter_parameter(n))


class AdapterTrainer(EvaluatingTrainer):
    """An ``EvaluatingTrainer`` whose checkpoints hold the trained parameters alone (adapters and any layer
    trained in full; the frozen base model is rebuilt from its checkpoint) and the ``KeepBest`` callback's state,
    beside the Trainer's optimizer, schedule, step and random state, so a resumed run continues exactly. A
    checkpoint counts once its ``transferlab.json`` is written, after all of these (``list_checkpoints``)."""

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        if not self.args.should_save:
            return
        folder = Path(output_dir or self.args.output_dir)
        folder.mkdir(parents=True, exist_ok=True)
        save_tensors(folder / TRAINED_WEIGHTS, trainable_state(self.model))

    def _save_checkpoint(self, model, trial) -> None:
        super()._save_checkpoint(model, trial)
        keep = self.keep_best()
        if keep is not None and self.args.should_save:
            folder = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
            save_keep_best(keep, folder)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        from safetensors.torch import load_file

        model = model if model is not None else self.model
        folder = Path(resume_from_checkpoint)
        state = load_file(str(folder / TRAINED_WEIGHTS))
        wanted = {n for n, p in model.named_parameters() if p.requires_grad}
        if set(state) != wanted:
            odd = sorted(set(state) ^ wanted)
            raise TransferlabError(f"--resume: checkpoint {folder} holds other trained parameters than this run's "
                                   f"({len(odd)} differ, e.g. {odd[0]}): resume with the run's settings, or start "
                                   f"a new run")
        model.load_state_dict(state, strict=False)
        keep = self.keep_best()
        if keep is not None:
            load_keep_best(keep, folder)

    def keep_best(self) -> KeepBest | None:
        return next((c for c in self.callback_handler.callbacks if isinstance(c, KeepBest)), None)


def save_tensors(path: Path, tensors: dict) -> None:
    """A safetensors file written whole or not at all (``atomic_write``)."""
    from safetensors.torch import save

    atomic_write(path, save({k: v.contiguous() for k, v in tensors.items()}, metadata={"format": "pt"}))


def save_keep_best(keep: KeepBest, folder: Path) -> None:
    """``keep``'s best step, value and state and its last evaluated step, into a checkpoint ``folder``."""
    best = keep.best
    if best is not None:
        save_tensors(folder / f"{KEEP_BEST}.safetensors", best.state)
    record = {"last_step": keep.last_step, "best_step": best.step if best else None,
              "best_value": best.value if best else None}
    atomic_write(folder / f"{KEEP_BEST}.json", json.dumps(record) + "\n")


def load_keep_best(keep: KeepBest, folder: Path) -> None:
    """``keep`` as ``save_keep_best`` left it in ``folder`` (nothing evaluated yet: as new)."""
    from safetensors.torch import load_file

    path = folder / f"{KEEP_BEST}.json"
    record = json.loads(path.read_text()) if path.is_file() else {}
    keep.last_step = record.get("last_step")
    keep.best = None
    if record.get("best_step") is not None:
        state = load_file(str(folder / f"{KEEP_BEST}.safetensors"))
        keep.best = Best(record["best_step"], record["best_value"], state)
