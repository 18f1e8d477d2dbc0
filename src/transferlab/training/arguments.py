"""``TrainingArguments`` from a :class:`TrainingConfig`: the one builder every Trainer experiment uses.

Device and precision come resolved (``transferlab.models.device``). By default a run evaluates and
checkpoints on the same schedule and loads the best checkpoint at the end (fine-tuning);
``checkpoints=False`` writes no checkpoint and keeps the last weights, for a run that keeps its best
state itself (the CLIP LoRA run: ``training.callbacks.KeepBest``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from transferlab.training.config import TrainingConfig


def training_arguments(cfg: TrainingConfig, output_dir: str | Path, *, seed: int, device: str | torch.device,
                       precision: str, report_to: list[str], metric: str = "accuracy", progress: bool = True,
                       run_name: str | None = None, label_names: tuple[str, ...] = ("labels",),
                       checkpoints: bool = True, remove_unused_columns: bool = True):
    """``checkpoints``: save on the evaluation schedule and load the best at the end; else save nothing.
    ``remove_unused_columns=False`` for models whose ``forward`` takes inputs the Trainer cannot inspect."""
    from transformers import TrainingArguments

    strategy = "steps" if cfg.eval_steps else "epoch"
    on_cpu = torch.device(device).type == "cpu"
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
        optim=cfg.optim,
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        eval_strategy=strategy,
        save_strategy=strategy if checkpoints else "no",
        eval_steps=cfg.eval_steps,
        save_steps=cfg.eval_steps or 500,
        save_total_limit=cfg.save_total_limit,
        load_best_model_at_end=checkpoints,
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
        use_cpu=on_cpu,
        activation_checkpointing=cfg.gradient_checkpointing,
        dataloader_num_workers=cfg.num_workers,
        dataloader_pin_memory=not on_cpu,
        remove_unused_columns=remove_unused_columns,
        disable_tqdm=not progress,
        label_names=list(label_names),  # peft-wrapped models hide the forward signature the Trainer inspects
        restore_callback_states_from_checkpoint=True,  # a resume continues early stopping's patience count
    )
