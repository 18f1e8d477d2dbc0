"""Experiment 2: fine-tune a text encoder for sequence classification with the Hugging Face ``Trainer``.

Reads top to bottom: validate data, model and resume target (before any run directory exists),
build the model (full or LoRA), train with evaluation and checkpoints every epoch (or N steps),
reload the best checkpoint, score validation and test once, save the model for ``pipeline``.
Runs unchanged under ``torchrun`` / ``accelerate launch``: the main process alone writes outputs.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from transferlab.config import to_dict
from transferlab.data.checks import checked_notes
from transferlab.data.text import load_text_data
from transferlab.evaluation.metrics import split_accuracy
from transferlab.evaluation.results import summary_line, write_results
from transferlab.evaluation.schema import RunMetrics
from transferlab.experiments.finetune.config import FinetuneConfig
from transferlab.experiments.finetune.data import check_max_length, tokenize_splits
from transferlab.experiments.finetune.model_card import write_model_card
from transferlab.experiments.lifecycle import open_run, set_seed
from transferlab.models.device import resolve_device, resolve_precision
from transferlab.models.resolve import check_weights, from_pretrained
from transferlab.tracking.tracker import configure_wandb_env, trainer_report_to
from transferlab.training import checkpoints as ckpt
from transferlab.training.arguments import training_arguments
from transferlab.training.callbacks import (CheckpointInfoCallback, early_stopping_record, run_callbacks,
                                            use_tensorboard_dir)
from transferlab.training.lora import classifier_lora, count_parameters, save_initial_adapter, save_peft_adapter
from transferlab.training.trainer import GuardedTrainer, train

EXPERIMENT = "finetune"


def run_finetune(cfg: FinetuneConfig, output_dir: str | Path = "logs", *, resume: str | None = None,
                 progress: bool = True) -> Path | None:
    from transformers import AutoConfig, AutoTokenizer

    cfg = dataclasses.replace(cfg, training=cfg.training_in_force())  # a label budget's fixed training settings
    device = resolve_device(cfg.training.device, "training.device").type
    if cfg.training.torch_threads:
        import torch

        torch.set_num_threads(cfg.training.torch_threads)
    set_seed(cfg.seed)
    data = load_text_data(cfg.data, seed=cfg.seed)
    data.notes = checked_notes(data)  # the loader's notes and the checks across splits, printed
    tokenizer = from_pretrained(AutoTokenizer, check_weights(cfg.model))  # a folder without weights: refused here
    model_config = from_pretrained(AutoConfig, cfg.model)
    check_max_length(model_config, cfg.max_length)
    precision = resolve_precision(cfg.training.precision, device, cpu_auto="bf16", key="training.precision")
    resolved = dict(to_dict(cfg), resolved={"device": device, "precision": precision})
    info = {"model": cfg.model, "architecture": model_config.model_type, "method": cfg.method,
            "label_names": data.label_names, "adapter": ckpt.adapter_info(cfg.lora) if cfg.method == "lora" else None}
    run_dir, checkpoint = ckpt.resume_target(output_dir, EXPERIMENT, resolved, info, resume)

    with open_run(EXPERIMENT, seed=cfg.seed, output_dir=output_dir, run_name=cfg.run_name, resolved=resolved,
                  tracking=cfg.tracking, default_name=f"{cfg.model}-{cfg.method}", resume_dir=run_dir,
                  cpu=device == "cpu") as ctx:
        data.write_manifest(ctx.path)  # the K-shot draw's split_manifest.jsonl (a resume's must be the same)
        if checkpoint is not None and ctx.is_main:
            ctx.run.set_status("running", resumed_from=f"{ckpt.CHECKPOINTS}/{checkpoint.name}")
            print(f"resuming {run_dir} from {checkpoint.name}")
        model, params, initial = build_model(cfg, data.label_names, ctx.path if ctx.is_main else None)
        tokenized = tokenize_splits(data.splits, tokenizer, cfg.max_length, with_length=cfg.training.group_by_length)
        trainer = make_trainer(cfg, ctx.path, model, tokenizer, tokenized, info, device, precision, progress,
                               checkpoint)
        start = time.perf_counter()
        hints = (f"training.batch_size (now {cfg.training.batch_size}; raise training.gradient_accumulation_steps "
                 f"to keep the effective batch) or max_length (now {cfg.max_length})")
        result = train(trainer, checkpoint, hints, ctx.path)
        timings = {"train_s": round(time.perf_counter() - start, 2)}
        splits = ("validation", "test") if cfg.score_test else ("validation",)  # a search's trials: validation only
        predictions = predict_splits(trainer, tokenized, data, timings, splits)  # the best checkpoint, every process
        if ctx.num_processes > 1:
            print(f"process {ctx.process_index}: "
                  + ", ".join(f"{s} accuracy {split_accuracy(predictions[s]):.6f}" for s in splits)
                  + f", weights checksum {weights_checksum(trainer.model):.6f}", flush=True)
        if ctx.is_main:
            metrics = RunMetrics(
                experiment=EXPERIMENT, primary=EXPERIMENT,
                model=model_record(cfg, model_config, device, precision, ctx.num_processes),
                methods=write_results(ctx.path, ctx.tracker, {EXPERIMENT: predictions}, data.label_names,
                                      primary=EXPERIMENT, step=trainer.state.global_step, evaluation=cfg.evaluation,
                                      examples={s: data.splits[s]["text"] for s in predictions}),
                n_classes=len(data.label_names), n_examples={s: len(data.splits[s]) for s in data.splits},
                parameters=params, timings=timings, notes=data.notes,
                details={"training": training_record(trainer, result, timings["train_s"], checkpoint),
                         **({"fewshot": data.fewshot} if data.fewshot else {})})
            save_final_model(ctx.path, trainer.accelerator.unwrap_model(trainer.model), tokenizer, cfg, metrics,
                             initial)
            ctx.save_metrics(metrics)
            print("accuracy (95% interval): " + ", ".join(summary_line(metrics.result, s) for s in splits))
    return ctx.path if ctx.is_main else None  # the CLI prints the run directory once


def model_record(cfg: FinetuneConfig, model_config, device: str, precision: str, processes: int) -> dict:
    """metrics.json's ``model``: the checkpoint, its architecture, the method and its peft variant, the run's
    device, precision and processes."""
    return {"name": cfg.model, "architecture": model_config.model_type, "method": cfg.method,
            "peft_method": cfg.lora.variant if cfg.method == "lora" else None, "max_length": cfg.max_length,
            "device": device, "precision": precision, "processes": processes}


def build_model(cfg: FinetuneConfig, labels: list[str], run_dir: Path | None = None):
    """The classification model (a new head; adapters of ``lora.variant`` for ``method=lora``), its parameter
    counts and, for PiSSA/OLoRA (``run_dir`` given: the main process), the adapter as initialised, saved there
    to convert the trained one against at save."""
    from transformers import AutoModelForSequenceClassification

    set_seed(cfg.seed)  # the new head's initialisation
    model = from_pretrained(AutoModelForSequenceClassification, cfg.model, num_labels=len(labels),
                            id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)})
    initial = None
    if cfg.method == "lora":
        model = classifier_lora(model, cfg.lora)
        initial = save_initial_adapter(model, cfg.lora.variant, run_dir) if run_dir else None
    params = count_parameters(model)
    print(f"{cfg.method if cfg.method == 'full' else cfg.lora.variant} fine-tuning: {params['trainable']:,} "
          f"trainable of {params['total']:,} parameters "
          f"({params['trainable_percent']:.2f}%)")
    return model, params, initial


def make_trainer(cfg: FinetuneConfig, run_dir: Path, model, tokenizer, tokenized, info: dict, device: str,
                 precision: str, progress: bool, checkpoint: Path | None) -> GuardedTrainer:
    from transformers import DataCollatorWithPadding

    configure_wandb_env(cfg.tracking, run_dir)
    args = training_arguments(cfg.training, run_dir / ckpt.CHECKPOINTS, seed=cfg.seed, device=device,
                              precision=precision, report_to=trainer_report_to(cfg.tracking),
                              progress=progress, run_name=run_dir.name)
    trainer = GuardedTrainer(model=model, args=args, train_dataset=tokenized["train"],
                             eval_dataset=tokenized["validation"], processing_class=tokenizer,
                             data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=accuracy,
                             callbacks=[CheckpointInfoCallback(info), *run_callbacks(cfg.training)])
    use_tensorboard_dir(trainer, run_dir / "tensorboard",
                        purge_step=ckpt.checkpoint_step(checkpoint) + 1 if checkpoint else None)
    return trainer


def predict_splits(trainer, tokenized, data, timings: dict,
                   splits: tuple[str, ...] = ("validation", "test")) -> dict[str, tuple]:
    """``{split: (y_true, y_pred, probabilities)}`` on ``splits``, timed."""
    import torch

    out = {}
    for split in splits:
        start = time.perf_counter()
        logits = logits_of(trainer.predict(tokenized[split]))
        timings[f"predict_{split}_s"] = round(time.perf_counter() - start, 2)
        probabilities = torch.softmax(torch.from_numpy(logits).float(), -1).numpy()
        out[split] = (np.asarray(data.splits[split]["label"]), logits.argmax(-1), probabilities)
    return out


def accuracy(prediction) -> dict:
    logits = logits_of(prediction)
    return {"accuracy": float((logits.argmax(-1) == prediction.label_ids).mean())}


def logits_of(prediction) -> np.ndarray:
    out = prediction.predictions
    return np.asarray(out[0] if isinstance(out, tuple) else out)


def weights_checksum(model) -> float:
    return float(sum(p.detach().double().abs().sum().item() for p in model.parameters()))


def training_record(trainer, result, seconds: float, resumed_from) -> dict:
    state_ = trainer.state
    history = [{k: v for k, v in entry.items() if k in ("step", "epoch", "loss", "learning_rate", "eval_loss",
                                                        "eval_accuracy")}
               for entry in state_.log_history if "loss" in entry or "eval_accuracy" in entry]
    epochs = max(state_.epoch or 0, 1e-9)
    best = state_.best_model_checkpoint
    return {"global_step": state_.global_step, "epochs": round(state_.epoch or 0, 4),
            "train_loss": result.training_loss,
            "best_checkpoint": str(Path(best).relative_to(Path(trainer.args.output_dir).parent)) if best else None,
            "best_validation_accuracy": state_.best_metric,
            "resumed_from": Path(resumed_from).name if resumed_from else None,
            "early_stopping": early_stopping_record(trainer),
            "seconds_per_epoch": round(seconds / epochs, 2), "history": history}


def save_final_model(run_dir: Path, model, tokenizer, cfg: FinetuneConfig, metrics: RunMetrics,
                     initial: Path | None = None) -> None:
    """``<run>/model``: a plain transformers model (adapters merged) with tokenizer and model card; for
    ``method=lora`` also ``<run>/adapter`` (the peft adapter with the trained head; PiSSA/OLoRA converted
    against ``initial``, so it applies to the unmodified base model)."""
    if cfg.method == "lora":
        save_peft_adapter(model, run_dir / "adapter", initial)
        tokenizer.save_pretrained(run_dir / "adapter")
        model = model.merge_and_unload()
    folder = run_dir / "model"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    training = {k: v for k, v in to_dict(cfg.training).items()
                if k in ("epochs", "max_steps", "batch_size", "learning_rate", "weight_decay", "warmup",
                         "lr_scheduler", "gradient_accumulation_steps", "group_by_length")}
    training.update(seed=cfg.seed, precision=metrics.model["precision"])
    write_model_card(folder, base_model=cfg.model, method=cfg.method, data=to_dict(cfg.data), training=training,
                     peft_method=cfg.lora.variant if cfg.method == "lora" else None,
                     metrics=metrics.result, label_names=list(model.config.id2label.values()),
                     parameters=metrics.parameters, max_length=cfg.max_length)
