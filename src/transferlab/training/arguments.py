"""``TrainingArguments`` from a :class:`TrainingConfig`: schedule, precision and device resolved once."""

from __future__ import annotations

from pathlib import Path

import torch

from transferlab.errors import TransferlabError
from transferlab.models.text_encoder import bf16_supported
from transferlab.training.config import TrainingConfig


def resolve_device(name: str) -> str:
    if name == "cuda" and not torch.cuda.is_available():
        raise TransferlabError("training.device=cuda but no CUDA GPU is visible: use training.device=auto or cpu")
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def resolve_precision(precision: str, device: str) -> str:
    """``auto``: bf16 on a GPU that has it, else fp16 on a GPU, else fp32 (on CPUs bf16 must be asked for)."""
    if precision == "auto":
        if device == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "fp32"
    if precision == "bf16" and not bf16_supported(torch.device(device)):
        raise TransferlabError(f"training.precision=bf16 is not supported on this {device}: "
                               f"use training.precision=auto or fp32")
    if precision == "fp16" and device != "cuda":
        raise TransferlabError("training.precision=fp16 needs a CUDA GPU: use training.precision=auto, fp32 or bf16")
    return precision


def training_arguments(cfg: TrainingConfig, output_dir: str | Path, *, seed: int, device: str, precision: str,
                       report_to: list[str], metric: str = "accuracy", progress: bool = True,
                       run_name: str | None = None, label_names: tuple[str, ...] = ("labels",)):
    """Arguments for a run that evaluates and checkpoints on the same schedule and keeps the best model."""
    from transformers import TrainingArguments

    strategy = "steps" if cfg.eval_steps else "epoch"
    return TrainingArguments(
        output_dir=str(output_dir),
        run_name=run_name,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size or 2 * cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        warmup_steps=int(cfg.warmup) if cfg.warmup >= 1 else cfg.warmup,
        lr_scheduler_type=cfg.lr_scheduler,
        max_grad_norm=cfg.max_grad_norm,
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        eval_strategy=strategy,
        save_strategy=strategy,
        eval_steps=cfg.eval_steps,
        save_steps=cfg.eval_steps or 500,
        save_total_limit=cfg.save_total_limit,
        load_best_model_at_end=True,
        metric_for_best_model=metric,
        greater_is_better=True,
        logging_strategy="steps",
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        logging_nan_inf_filter=False,  # a NaN loss must surface (the guard stops the run)
        report_to=report_to,
        seed=seed,
        data_seed=seed,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=device == "cpu",
        activation_checkpointing=cfg.gradient_checkpointing,
        dataloader_num_workers=cfg.num_workers,
        disable_tqdm=not progress,
        label_names=list(label_names),  # peft-wrapped models hide the forward signature the Trainer inspects
    )
