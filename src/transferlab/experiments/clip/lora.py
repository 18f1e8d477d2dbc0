"""Experiment 3b: LoRA fine-tuning of a dual encoder against its class prompts, beside the zero-shot
baseline, a linear probe and (K-shot runs) Tip-Adapter(-F), from ``baselines``.

Reads top to bottom: data, model, prompts and LoRA targets (every input error before a run directory
exists); each image encoded once with the base model (the baselines' features and, while the image
tower stays frozen, the training inputs); the baselines (main process); adapters added (peft, on the
checkpoint's own model for a Hugging Face one) and trained with the Trainer as one data-parallel job
under ``torchrun`` (the model family's loss from ``models.clip_losses`` unless ``objective.loss`` names
one; every evaluation scores validation against class embeddings recomputed with the current weights;
``KeepBest`` keeps the best state); the best state scored on validation and test once; the adapter
saved with its model card. The library pieces live in ``transferlab.models``.

Checkpoints (``<run>/checkpoints/checkpoint-<step>``, on ``training.eval_steps`` or each epoch, and at the last
step): the trained parameters, optimizer, schedule, step, random state and the best state so far
(``training.lora.AdapterTrainer``); ``--resume`` continues from the newest complete one to the figures an
uninterrupted run gives.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from transformers import TrainerCallback

from transferlab.config import to_dict
from transferlab.evaluation.metrics import split_accuracy
from transferlab.evaluation.results import summary_line, write_results
from transferlab.evaluation.schema import RunMetrics
from transferlab.experiments.clip.adapter_card import write_adapter_card
from transferlab.experiments.clip.baselines import baselines, evaluated_splits, timed
from transferlab.experiments.clip.config import ClipConfig
from transferlab.experiments.clip.inputs import SPLITS, Inputs, image_paths, model_record, open_clip_run, prepare
from transferlab.experiments.clip.trunks import image_inputs, training_source
from transferlab.experiments.lifecycle import RunContext, set_seed
from transferlab.models.device import resolve_precision
from transferlab.models.dual_encoder import DualEncoder
from transferlab.models.dual_encoder_lora import (NORMS, formula_by_tower, lora_by_tower, lora_targets,
                                                  plain_convolutions, projection_parameters, trunk_start, unfreeze)
from transferlab.models.prompt_classifier import EmbeddingDataset, PromptClassifier, param_groups, split_predictions
from transferlab.tracking.tracker import configure_wandb_env, trainer_report_to
from transferlab.training import checkpoints as ckpt
from transferlab.training.arguments import training_arguments
from transferlab.training.callbacks import (CheckpointInfoCallback, KeepBest, early_stopping_record, run_callbacks,
                                            use_tensorboard_dir)
from transferlab.training.lora import (VARIANT_NAMES, AdapterTrainer, apply_lora, check_variant_layers,
                                       count_parameters, lora_parameters, save_initial_adapter, save_peft_adapter)
from transferlab.training.trainer import train

EXPERIMENT = "lora"


def run_lora(config: ClipConfig, output_dir: str | Path = "logs", *, resume: str | None = None,
             progress: bool = True) -> Path | None:
    inputs = prepare(config, EXPERIMENT)
    targets = adapter_targets(inputs.model, config)
    plain_convolutions(inputs.model, targets)  # before the run exists: an unsupported target is an input error
    check_variant_layers(inputs.model, config.lora.variant, targets)
    start = trunk_start(inputs.model, targets)
    source = training_source(config, start)
    projection = projection_parameters(inputs.model) if config.lora.train_projection else []
    precision = resolve_precision(config.training.precision, inputs.device,  # auto: the model's faster one
                                  cpu_auto=inputs.model.preferred_cpu_precision, key="training.precision")
    method, info = config.lora.method, checkpoint_info(config, inputs)
    run_dir, checkpoint = ckpt.resume_target(output_dir, EXPERIMENT, to_dict(config), info, resume)
    with open_clip_run(EXPERIMENT, config, inputs, output_dir, resume_dir=run_dir, training_precision=precision,
                       training_steps=training_steps(config, inputs)) as ctx:
        if checkpoint is not None and ctx.is_main:
            ctx.run.set_status("running", resumed_from=f"{ckpt.CHECKPOINTS}/{checkpoint.name}")
            print(f"resuming {run_dir} from {checkpoint.name}")
        timings: dict[str, float] = {}
        encoded, trunks = timed(timings, "encode_images_s", image_inputs, inputs, config, splits_to_encode(config),
                                source, start, use_cache=ctx.is_main, progress=progress)  # disk cache: one writer
        methods, searches = baselines(inputs, encoded, trunks, start, config, timings) if ctx.is_main else ({}, {})
        peft_model, parameters, initial = add_adapters(inputs.model, config, targets, projection,
                                                       ctx.path if ctx.is_main else None)
        classifier = PromptClassifier(inputs.model, inputs.prompt_sets, config.objective.loss,
                                      start if source == "trunk" else None,
                                      text_start(inputs.model, targets, config)).to(inputs.device)
        cached = {"embeddings": encoded, "trunk": trunks}.get(source)
        trainer, keep = timed(timings, "train_s", train_adapters, classifier, cached, inputs, config, ctx.path,
                              precision, progress, info, checkpoint)
        methods[method] = timed(timings, "score_s", lambda: {s: score(classifier, s, cached, inputs, config)
                                                             for s in evaluated_splits(config)})
        report_process(ctx, methods[method], keep)
        if ctx.is_main:
            details = {**searches, "best_step": keep.best.step, "loss": classifier.loss,
                       "best_validation_accuracy": keep.best.value, "global_step": trainer.state.global_step,
                       "early_stopping": early_stopping_record(trainer), "lora_targets": len(targets),
                       "image_features_cached": cached is not None,
                       "training_source": source, "trunk_start_block": start if source == "trunk" else None,
                       "train_views": list(config.objective.train_views) if source == "trunk" else [],
                       "training_rows": len(cached["train"][1]) if cached else len(inputs.data.train),
                       "lora_by_tower": parameters.pop("lora_by_tower"),
                       "lora_formula_by_tower": parameters.pop("lora_formula_by_tower"),
                       "resumed_from": checkpoint.name if checkpoint else None,
                       "skipped_unreadable_images": inputs.data.skipped, **shots_record(config, inputs)}
            metrics = lora_metrics(ctx, config, inputs, methods, trainer.state.global_step, parameters, timings,
                                   details)
            save_adapter(ctx.path, peft_model, inputs.model, projection, config, metrics, initial)
            ctx.save_metrics(metrics)
            print_summary(metrics)
    return ctx.path if ctx.is_main else None


def splits_to_encode(config: ClipConfig) -> list[str]:
    needs_train = config.probe.enabled or config.objective.cache_image_features
    return (["train"] if needs_train else []) + list(evaluated_splits(config))


def training_steps(config: ClipConfig, inputs: Inputs) -> int | None:
    """``objective.steps_per_shot`` x the images per class (``data.shots``, or the training split's per
    class); ``None``: the training settings decide."""
    if config.objective.steps_per_shot is None:
        return None
    shots = config.data.shots or max(1, len(inputs.data.train) // len(inputs.data.class_names))
    return config.objective.steps_per_shot * shots


def shots_record(config: ClipConfig, inputs: Inputs) -> dict:
    """What a label-budget study reads: the images per class trained on and chosen on, and the draw."""
    d = config.data
    return {"shots": d.shots, "nested_shots": d.nested_shots if d.shots else None,
            "validation_per_class": len(inputs.data.validation) // len(inputs.data.class_names),
            "selection": "validation split" + (f" (min(K, {d.shots_validation}) per class, drawn apart from the "
                                               f"K-shot train draw)" if d.shots else ""),
            "step_selection": "best on validation" if config.objective.select_step else "the last step (fixed)",
            "images_encoded": dict(inputs.images_encoded)}


def adapter_targets(model: DualEncoder, config: ClipConfig) -> list[str]:
    """Full names of the layers that get adapters: ``lora.target_modules`` in the chosen towers and blocks, or
    for LayerNorm tuning every LayerNorm there."""
    lora = config.lora
    if lora.variant == "ln_tuning":
        return lora_targets(model, None, lora.towers, lora.layers_by_tower(), kinds=NORMS)
    return lora_targets(model, lora.target_modules, lora.towers, lora.layers_by_tower())


def add_adapters(model: DualEncoder, config: ClipConfig, targets: list[str], projection: list[str],
                 run_dir: Path | None):
    """The peft model (adapters injected into ``model`` in place), the parameter counts and, for PiSSA/OLoRA
    (``run_dir`` given: the main process), the initial adapter saved there. peft wraps the model's
    ``adapter_base`` (a Hugging Face checkpoint's own model), so the saved adapter names its layers as the
    plain base model does."""
    set_seed(config.seed)  # the adapters' initialisation, whatever ran before
    base, prefix = model.adapter_base()
    peft_model = apply_lora(base, config.lora, [t[len(prefix):] for t in targets])
    initial = save_initial_adapter(peft_model, config.lora.variant, run_dir) if run_dir else None
    unfreeze(model, projection)
    counts = count_parameters(model)
    by_tower, formula = lora_by_tower(model), formula_by_tower(model, targets, config.lora.r, config.lora.variant)
    parameters = {"total": counts["total"], "trainable": counts["trainable"], "lora": lora_parameters(model),
                  "lora_formula": sum(formula.values()), "lora_by_tower": by_tower, "lora_formula_by_tower": formula}
    name = VARIANT_NAMES[config.lora.variant]
    for tower in formula:
        print(f"{name} parameters, {tower} tower: {by_tower.get(tower, 0):,} (formula: {formula[tower]:,})")
    print(f"{name} parameters: {parameters['lora']:,} over {len(targets)} layers (formula: "
          f"{parameters['lora_formula']:,}); trainable in all: {parameters['trainable']:,}")
    return peft_model, parameters, initial


def text_start(model: DualEncoder, targets: list[str], config: ClipConfig) -> int | None:
    """The first adapted text block when the frozen ones below it may run once (``objective.cache_text_trunk``)."""
    start = trunk_start(model, targets, "text") if config.objective.cache_text_trunk else None
    return start or None


def score(classifier: PromptClassifier, split: str, cached: dict | None, inputs: Inputs,
          config: ClipConfig) -> tuple:
    """``(y_true, y_pred, scores)`` of a split with the current weights."""
    return split_predictions(classifier, cached[split] if cached else None, getattr(inputs.data, split),
                             config.model.batch_size, config.data.num_workers, inputs.precision, inputs.cast)


def checkpoint_info(config: ClipConfig, inputs: Inputs) -> dict:
    """What a checkpoint records of the run, so a ``--resume`` of another model, method, adapter or class list
    is refused (``training.checkpoints.check_compatible``)."""
    return {"model": config.model.name, "architecture": getattr(inputs.model, "family", None) or "standin",
            "method": config.lora.method, "label_names": list(inputs.data.class_names),
            "adapter": ckpt.adapter_info(config.lora)}


def train_adapters(classifier: PromptClassifier, cached: dict | None, inputs: Inputs, config: ClipConfig,
                   run_dir: Path, precision: str, progress: bool, info: dict,
                   checkpoint: Path | None = None) -> tuple[AdapterTrainer, KeepBest]:
    """Train with the Trainer (from ``checkpoint`` when resuming), evaluating on validation on the schedule and
    checkpointing into ``run_dir/checkpoints``; the classifier ends in its best state."""
    from transferlab.data.images import with_pixels

    epoch_callbacks = []
    if cached:
        key = "image_embeds" if classifier.image_start is None else "image_hidden"
        train_set, eval_set = (EmbeddingDataset(*cached[s], key=key) for s in ("train", "validation"))
    else:
        preprocess = pixel_preprocess(inputs, config)
        viewed = isinstance(preprocess, ViewedPreprocess)
        train_set = with_pixels(inputs.data.train, preprocess, rows=viewed)
        eval_set = inputs.data.validation
        epoch_callbacks = [ViewEpoch(preprocess)] if viewed else []
    t = recipe_training(config, inputs)
    configure_wandb_env(config.tracking, run_dir)
    args = training_arguments(t, run_dir / ckpt.CHECKPOINTS, seed=config.seed, device=inputs.device,
                              precision=precision, report_to=trainer_report_to(config.tracking), progress=progress,
                              run_name=run_dir.name, checkpoints=False, remove_unused_columns=False)
    args = dataclasses.replace(args, save_strategy="steps" if config.training.eval_steps else "epoch",
                               save_steps=config.training.eval_steps or 500)  # a fixed recipe's too (not t's)
    projection = set(projection_parameters(inputs.model) if config.lora.train_projection else [])
    full = [p for n, p in inputs.model.named_parameters() if n in projection]  # trained in full beside the adapters
    optimizer = torch.optim.AdamW(param_groups(classifier, t.learning_rate, config.objective.projection_learning_rate,
                                               t.weight_decay, full), lr=t.learning_rate)
    keep = KeepBest("eval_accuracy")
    trainer = AdapterTrainer(
        model=classifier, args=args, train_dataset=train_set, eval_dataset=eval_set, optimizers=(optimizer, None),
        callbacks=[keep, CheckpointInfoCallback(info), *epoch_callbacks, *run_callbacks(t)],
        evaluator=lambda model: {"accuracy": split_accuracy(score(model, "validation", cached, inputs, config))})
    use_tensorboard_dir(trainer, run_dir / "tensorboard",
                        purge_step=ckpt.checkpoint_step(checkpoint) + 1 if checkpoint else None)
    train(trainer, checkpoint, "training.batch_size", run_dir)
    if keep.last_step != trainer.state.global_step:
        trainer.evaluate()  # a max_steps run that stopped between evaluations
    keep.restore(classifier)
    return trainer, keep


class ViewedPreprocess:
    """The model's preprocessing after a random view (``objective.pixel_view``) of each training image, drawn
    anew each epoch from ``(seed, epoch, row)``: the same view of an image in an epoch whatever was drawn before
    it, in any data-loader worker, so a resumed run trains on the views the uninterrupted run saw. ``epoch`` is
    set as each epoch begins (``ViewEpoch``)."""

    def __init__(self, preprocess, view: str, seed: int):
        from transferlab.models.trunk_cache import VIEWS

        self.preprocess, self.view, self.seed, self.epoch = preprocess, VIEWS[view], seed, 0

    def __call__(self, images: list, rows: Sequence[int]) -> torch.Tensor:
        return self.preprocess([self.view([image], np.random.default_rng([self.seed, self.epoch, int(row)]))[0]
                                for image, row in zip(images, rows)])


class ViewEpoch(TrainerCallback):
    """Tells a ``ViewedPreprocess`` the epoch that begins (the Trainer's, also for the epoch a resume enters)."""

    def __init__(self, viewed: ViewedPreprocess):
        self.viewed = viewed

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.viewed.epoch = int(state.epoch + 1e-9)


def pixel_preprocess(inputs: Inputs, config: ClipConfig):
    """The model's preprocessing, after ``objective.pixel_view`` if set."""
    view = config.objective.pixel_view
    if not view:
        return inputs.model.preprocess
    seed = config.seed if config.objective.view_seed is None else config.objective.view_seed
    return ViewedPreprocess(inputs.model.preprocess, view, seed)


def recipe_training(config: ClipConfig, inputs: Inputs):
    """``training`` with the recipe's step count (``objective.steps_per_shot``) and, for a fixed recipe
    (``objective.select_step: false``), one evaluation, after the last step (that state is kept)."""
    t, steps = config.training, training_steps(config, inputs)
    if steps is not None:
        t = dataclasses.replace(t, max_steps=steps)
    if not config.objective.select_step:
        t = dataclasses.replace(t, eval_steps=10**9)  # the Trainer never reaches it: the final evaluation alone
    return t


def report_process(ctx: RunContext, lora: dict, keep: KeepBest) -> None:
    """Under a multi-process launch, each process states what it computed (they must agree)."""
    if ctx.num_processes > 1:
        checksum = sum(float(t.double().abs().sum()) for t in keep.best.state.values())
        print(f"process {ctx.process_index}: "
              + ", ".join(f"{s} accuracy {split_accuracy(lora[s]):.6f}" for s in lora)
              + f", best step {keep.best.step}, "
              f"trained weights checksum {checksum:.6f}", flush=True)


def save_adapter(run_dir: Path, peft_model, model: DualEncoder, projection: list[str], config: ClipConfig,
                 metrics: RunMetrics, initial: Path | None = None) -> None:
    """``adapter/`` (peft ``save_pretrained``, a PiSSA/OLoRA adapter converted against its ``initial`` state so
    it applies to the unmodified base model, with its model card, plus the stand-in's fully trained map as
    ``extra_trainable.safetensors``) and, with ``lora.save_merged``, ``merged_model/``."""
    save_peft_adapter(peft_model, run_dir / "adapter", initial)
    write_adapter_card(run_dir / "adapter", getattr(model, "family", None), model.base_model_name(), config, metrics)
    if projection:
        from safetensors.torch import save_file

        params = dict(model.named_parameters())
        save_file({n: params[n].detach().cpu().contiguous() for n in projection},
                  str(run_dir / "adapter" / "extra_trainable.safetensors"))
    if config.lora.save_merged:
        peft_model.merge_and_unload()
        model.save_pretrained(run_dir / "merged_model")


def lora_metrics(ctx: RunContext, config: ClipConfig, inputs: Inputs, methods: dict, step: int, parameters: dict,
                 timings: dict, details: dict) -> RunMetrics:
    data = inputs.data
    return RunMetrics(
        experiment=EXPERIMENT,
        model={**model_record(config, inputs, processes=ctx.num_processes), "peft_method": config.lora.variant},
        primary=config.lora.method,
        methods=write_results(ctx.path, ctx.tracker, methods, data.class_names, primary=config.lora.method, step=step,
                              top_k=(1, 5), examples=image_paths(data), evaluation=config.evaluation),
        n_classes=len(data.class_names), parameters=parameters, timings=timings, details=details,
        n_examples={"train": len(data.train), **{s: len(getattr(data, s)) for s in SPLITS}}, notes=list(inputs.notes))


def print_summary(metrics: RunMetrics) -> None:
    for method, result in metrics.methods.items():
        print(f"{method} (95% intervals): top-1 {summary_line(result, 'validation')}, {summary_line(result)}, "
              f"top-5 {summary_line(result, metric='top5_accuracy')}")
