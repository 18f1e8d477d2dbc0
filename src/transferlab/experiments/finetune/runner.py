"""Experiment 2: fine-tune a text encoder for sequence classification with the Hugging Face ``Trainer``.

Reads top to bottom: validate data, model and resume target (before any run directory exists),
build the model (full or LoRA), train with evaluation and checkpoints every epoch (or N steps),
reload the best checkpoint, score validation and test once, save the model for ``pipeline``.
Runs unchanged under ``torchrun`` / ``accelerate launch``: the main process alone writes outputs.
"""

from __future__ import annotations

import contextlib
import signal
import time
from pathlib import Path

import numpy as np

from transferlab.config import to_dict
from transferlab.data.text import load_text_data
from transferlab.errors import TransferlabError
from transferlab.evaluation.results import write_results
from transferlab.experiments.finetune.config import FinetuneConfig
from transferlab.experiments.finetune.data import check_max_length, tokenize_splits
from transferlab.experiments.finetune.model_card import write_model_card
from transferlab.models.resolve import from_pretrained
from transferlab.runs import Run, set_seed
from transferlab.tracking.tracker import Tracker, configure_wandb_env, trainer_report_to
from transferlab.training import checkpoints as ckpt
from transferlab.training.arguments import resolve_device, resolve_precision, training_arguments
from transferlab.training.callbacks import CheckpointInfoCallback, use_tensorboard_dir
from transferlab.training.distributed import broadcast, state
from transferlab.training.lora import apply_lora, count_parameters
from transferlab.training.trainer import GuardedTrainer, train

__all__ = ["FinetuneConfig", "run_finetune"]
EXPERIMENT = "finetune"


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the run is marked failed, its checkpoints stay for ``--resume``."""


def run_finetune(cfg: FinetuneConfig, output_dir: str | Path = "logs", resume: str | None = None,
                 progress: bool = True) -> Path | None:
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

    device = resolve_device(cfg.training.device)
    proc = state(cpu=device == "cpu")
    if cfg.training.torch_threads:
        torch.set_num_threads(cfg.training.torch_threads)
    set_seed(cfg.seed)
    data = load_text_data(cfg.data)
    for note in data.notes:
        print(f"note: {note}")
    tokenizer = from_pretrained(AutoTokenizer, cfg.model)
    model_config = from_pretrained(AutoConfig, cfg.model)
    check_max_length(model_config, cfg.max_length)
    precision = resolve_precision(cfg.training.precision, device)
    resolved = to_dict(cfg)
    resolved["resolved"] = {"device": device, "precision": precision, "processes": proc.num_processes}
    info = {"model": cfg.model, "architecture": model_config.model_type, "method": cfg.method,
            "label_names": data.label_names}
    checkpoint = None
    if resume:
        run_dir = ckpt.find_resume_run(output_dir, EXPERIMENT, resolved, resume)
        checkpoint = ckpt.latest_checkpoint(run_dir)
        ckpt.check_compatible(checkpoint, info)
        for diff in ckpt.config_differences(ckpt.comparable(ckpt.read_run_config(run_dir)), ckpt.comparable(resolved)):
            print(f"note: resuming with a changed setting, {diff}")

    run = open_run(proc, cfg, output_dir, resolved, run_dir if resume else None, checkpoint)
    if proc.is_main_process:
        print(f"run directory: {run.path}")
    writer = run.guard() if proc.is_main_process else contextlib.nullcontext()
    with writer, sigterm_as_interrupt():
        set_seed(cfg.seed)  # the new head's initialisation
        labels = data.label_names
        model = from_pretrained(AutoModelForSequenceClassification, cfg.model, num_labels=len(labels),
                                id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)})
        if cfg.method == "lora":
            model = apply_lora(model, cfg.lora)
        params = count_parameters(model)
        print(f"{cfg.method} fine-tuning: {params['trainable']:,} trainable of {params['total']:,} parameters "
              f"({params['trainable_percent']:.2f}%)")

        tokenized = tokenize_splits(data.splits, tokenizer, cfg.max_length, with_length=cfg.training.group_by_length)
        configure_wandb_env(cfg.tracking, run.path)
        args = training_arguments(cfg.training, run.path / ckpt.CHECKPOINTS, seed=cfg.seed, device=device,
                                  precision=precision, report_to=trainer_report_to(cfg.tracking),
                                  progress=progress, run_name=run.path.name)
        trainer = GuardedTrainer(model=model, args=args, train_dataset=tokenized["train"],
                                 eval_dataset=tokenized["validation"], processing_class=tokenizer,
                                 data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=accuracy,
                                 callbacks=[CheckpointInfoCallback(info)])
        use_tensorboard_dir(trainer, run.path / "tensorboard",
                            purge_step=ckpt.checkpoint_step(checkpoint) + 1 if checkpoint else None)

        start = time.perf_counter()
        hints = (f"training.batch_size (now {cfg.training.batch_size}; raise training.gradient_accumulation_steps "
                 f"to keep the effective batch) or max_length (now {cfg.max_length})")
        result = train(trainer, checkpoint, hints, run.path)
        train_seconds = time.perf_counter() - start

        # The best checkpoint (by validation accuracy) is loaded; every process predicts, one writes.
        outputs, timing = {}, {"train": {"seconds": round(train_seconds, 2), "examples": len(tokenized["train"])}}
        for split in ("validation", "test"):
            start = time.perf_counter()
            outputs[split] = trainer.predict(tokenized[split])
            timing[split] = {"seconds": round(time.perf_counter() - start, 2), "examples": len(tokenized[split])}
        predictions = {split: (np.asarray(data.splits[split]["label"]), logits_of(out).argmax(-1))
                       for split, out in outputs.items()}
        final_model = trainer.accelerator.unwrap_model(trainer.model)
        if proc.num_processes > 1:
            print(f"process {proc.process_index}: validation accuracy {accuracy_of(predictions['validation']):.6f}, "
                  f"test accuracy {accuracy_of(predictions['test']):.6f}, "
                  f"weights checksum {weights_checksum(final_model):.6f}")
        if proc.is_main_process:
            with Tracker(run.path, cfg.tracking, resolved) as tracker:
                metrics = write_results(run, tracker, predictions, labels, step=trainer.state.global_step)
            metrics.update(
                training=training_record(trainer, result, train_seconds, len(tokenized["train"]), checkpoint),
                timing=timing,
                notes=data.notes,
                model={"base": cfg.model, "architecture": model_config.model_type, "method": cfg.method,
                       "parameters": params, "max_length": cfg.max_length, "device": device,
                       "precision": precision, "processes": proc.num_processes})
            save_final_model(run.path, final_model, tokenizer, cfg, metrics, params)
            run.save_metrics(metrics)
            print(f"validation accuracy {metrics['validation']['accuracy']:.4f}, "
                  f"test accuracy {metrics['test']['accuracy']:.4f}")
    proc.wait_for_everyone()
    return run.path if proc.is_main_process else None  # the CLI prints the run directory once


def open_run(proc, cfg: FinetuneConfig, output_dir, resolved: dict, resume_dir: Path | None, checkpoint) -> Run:
    """The main process creates (or reopens) the run directory; the others learn its path."""
    message = None
    if proc.is_main_process:
        try:
            if resume_dir is not None:
                run = Run(resume_dir, EXPERIMENT)
                run.set_status("running", resumed_from=str(checkpoint))
                print(f"resuming {resume_dir} from {checkpoint.name}")
            else:
                run = Run.create(output_dir, EXPERIMENT, cfg.run_name, resolved,
                                 default_name=f"{cfg.model}-{cfg.method}")
            message = ("ok", str(run.path))
        except TransferlabError as exc:
            message = ("error", str(exc))
    status, value = broadcast(message)
    if status == "error":
        raise TransferlabError(value)
    return Run(Path(value), EXPERIMENT)


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Inside: SIGTERM raises ``Terminated`` (a KeyboardInterrupt), so the run records it and stops cleanly."""
    def handler(signum, frame):
        raise Terminated("terminated by SIGTERM")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def accuracy(prediction) -> dict:
    logits = logits_of(prediction)
    return {"accuracy": float((logits.argmax(-1) == prediction.label_ids).mean())}


def logits_of(prediction) -> np.ndarray:
    out = prediction.predictions
    return np.asarray(out[0] if isinstance(out, tuple) else out)


def accuracy_of(pair) -> float:
    return float((pair[0] == pair[1]).mean())


def weights_checksum(model) -> float:
    return float(sum(p.detach().double().abs().sum().item() for p in model.parameters()))


def training_record(trainer, result, seconds: float, n_train: int, resumed_from) -> dict:
    state_ = trainer.state
    history = [{k: v for k, v in entry.items() if k in ("step", "epoch", "loss", "learning_rate", "eval_loss",
                                                        "eval_accuracy")}
               for entry in state_.log_history if "loss" in entry or "eval_accuracy" in entry]
    epochs = max(state_.epoch or 0, 1e-9)
    return {"global_step": state_.global_step, "epochs": round(state_.epoch or 0, 4),
            "train_loss": result.training_loss, "best_checkpoint": state_.best_model_checkpoint,
            "best_validation_accuracy": state_.best_metric, "resumed_from": str(resumed_from) if resumed_from else None,
            "seconds": round(seconds, 2), "seconds_per_epoch": round(seconds / epochs, 2),
            "train_examples": n_train, "history": history}


def save_final_model(run_dir: Path, model, tokenizer, cfg: FinetuneConfig, metrics: dict, params: dict) -> None:
    """``<run>/model``: a plain transformers model (LoRA merged) with tokenizer and model card; for LoRA also
    ``<run>/adapter`` (the peft adapter with the trained head)."""
    if cfg.method == "lora":
        model.save_pretrained(run_dir / "adapter")
        tokenizer.save_pretrained(run_dir / "adapter")
        model = model.merge_and_unload()
    folder = run_dir / "model"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    training = {k: v for k, v in to_dict(cfg.training).items()
                if k in ("epochs", "max_steps", "batch_size", "learning_rate", "weight_decay", "warmup",
                         "lr_scheduler", "gradient_accumulation_steps", "group_by_length")}
    training.update(seed=cfg.seed, precision=metrics["model"]["precision"])
    write_model_card(folder, base_model=cfg.model, method=cfg.method, data=to_dict(cfg.data), training=training,
                     metrics=metrics, label_names=list(model.config.id2label.values()), parameters=params,
                     max_length=cfg.max_length)
