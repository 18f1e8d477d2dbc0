"""Experiment 3b: LoRA fine-tuning of a dual encoder against its class prompts, beside the zero-shot
baseline and a linear probe.

Reads top to bottom: data, model, prompts and LoRA targets (every input error before a run directory
exists); each image encoded once with the base model (the zero-shot baseline, the probe's features
and, while the image tower stays frozen, the training inputs); the baselines (main process); adapters
added (peft) and trained with the Trainer as one data-parallel job under ``torchrun`` (loss from
``models.clip_losses``; every evaluation scores validation against class embeddings recomputed with the
current weights; ``KeepBest`` keeps the best state); the best state scored on validation and test
once; the adapter saved. The library pieces live in ``transferlab.models``.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from transferlab.evaluation.metrics import split_accuracy
from transferlab.evaluation.results import summary_line, write_results
from transferlab.evaluation.schema import RunMetrics
from transferlab.experiments.clip.inputs import (SPLITS, Inputs, image_paths, model_record, open_clip_run, prepare)
from transferlab.experiments.lifecycle import RunContext, set_seed
from transferlab.models.device import resolve_precision
from transferlab.experiments.clip.trunks import image_inputs, training_source
from transferlab.models.dual_encoder_lora import (formula_by_tower, lora_by_tower, lora_targets, plain_convolutions,
                                                  projection_parameters, trunk_start, unfreeze)
from transferlab.models.linear_probe import fit_linear_probe, probe_predictions
from transferlab.models.prompt_classifier import EmbeddingDataset, PromptClassifier, param_groups, split_predictions
from transferlab.models.tip_adapter import cache_model, finetune_keys, search_alpha_beta, tip_logits
from transferlab.models.trunk_cache import head_embeddings
from transferlab.models.zero_shot import class_embeddings, predictions, zero_shot_predictions
from transferlab.models.zero_shot import scores as zero_shot_scores
from transferlab.tracking.tracker import configure_wandb_env, trainer_report_to
from transferlab.training.arguments import training_arguments
from transferlab.training.callbacks import KeepBest, early_stopping_record, run_callbacks, use_tensorboard_dir
from transferlab.training.lora import apply_lora, count_parameters, lora_parameters
from transferlab.training.trainer import EvaluatingTrainer, train

EXPERIMENT = "lora"


def run_lora(config, output_dir: str | Path = "logs", *, resume: str | None = None,
             progress: bool = True) -> Path | None:
    inputs = prepare(config, EXPERIMENT, resume)
    targets = lora_targets(inputs.model, config.lora.target_modules, config.lora.towers,
                           config.lora.layers_by_tower())
    plain_convolutions(inputs.model, targets)  # before the run exists: an unsupported target is an input error
    start = trunk_start(inputs.model, targets)
    source = training_source(config, start)
    projection = projection_parameters(inputs.model) if config.lora.train_projection else []
    precision = resolve_precision(config.training.precision, inputs.device,  # auto: the model's faster one
                                  cpu_auto=inputs.model.preferred_cpu_precision, key="training.precision")
    method = config.lora.method
    with open_clip_run(EXPERIMENT, config, inputs, output_dir, training_precision=precision,
                       training_steps=training_steps(config, inputs)) as ctx:
        timings: dict[str, float] = {}
        encoded, trunks = timed(timings, "encode_images_s", image_inputs, inputs, config, splits_to_encode(config),
                                source, start, use_cache=ctx.is_main, progress=progress)  # disk cache: one writer
        methods, searches = baselines(inputs, encoded, trunks, start, config, timings) if ctx.is_main else ({}, {})
        peft_model, parameters = add_adapters(inputs.model, config, targets, projection)
        classifier = PromptClassifier(inputs.model, inputs.prompt_sets, config.objective.loss,
                                      start if source == "trunk" else None,
                                      text_start(inputs.model, targets, config)).to(inputs.device)
        cached = {"embeddings": encoded, "trunk": trunks}.get(source)
        trainer, keep = timed(timings, "train_s", train_adapters, classifier, cached, inputs, config, ctx.path,
                              precision, progress)
        methods[method] = timed(timings, "score_s", lambda: {s: score(classifier, s, cached, inputs, config)
                                                             for s in evaluated_splits(config)})
        report_process(ctx, methods[method], keep)
        if ctx.is_main:
            save_adapter(ctx.path, peft_model, inputs.model, projection, config.lora.save_merged)
            details = {**searches, "best_step": keep.best.step, "loss": config.objective.loss,
                       "best_validation_accuracy": keep.best.value, "global_step": trainer.state.global_step,
                       "early_stopping": early_stopping_record(trainer), "lora_targets": len(targets),
                       "image_features_cached": cached is not None,
                       "training_source": source, "trunk_start_block": start if source == "trunk" else None,
                       "train_views": list(config.objective.train_views) if source == "trunk" else [],
                       "training_rows": len(cached["train"][1]) if cached else len(inputs.data.train),
                       "lora_by_tower": parameters.pop("lora_by_tower"),
                       "lora_formula_by_tower": parameters.pop("lora_formula_by_tower"),
                       "skipped_unreadable_images": inputs.data.skipped, **shots_record(config, inputs)}
            metrics = lora_metrics(ctx, config, inputs, methods, trainer.state.global_step, parameters, timings,
                                   details)
            ctx.save_metrics(metrics)
            print_summary(metrics)
    return ctx.path if ctx.is_main else None


def timed(timings: dict, key: str, fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    timings[key] = round(time.perf_counter() - start, 1)
    return out


def evaluated_splits(config) -> tuple[str, ...]:
    """Validation and test; validation alone with ``score_test=false`` (a search's trials)."""
    return SPLITS if config.score_test else ("validation",)


def splits_to_encode(config) -> list[str]:
    needs_train = config.probe.enabled or config.objective.cache_image_features
    return (["train"] if needs_train else []) + list(evaluated_splits(config))


def baselines(inputs: Inputs, encoded: dict, trunks: dict | None, start: int | None, config,
              timings: dict) -> tuple[dict, dict]:
    """``({method: {split: predictions}}, {method: its selection record})`` of the zero-shot baseline and
    (if enabled) the linear probe (its C search) and, in K-shot runs, Tip-Adapter(-F) (alpha and beta),
    all chosen on the validation split."""
    evaluated = {s: encoded[s] for s in evaluated_splits(config)}
    started = time.perf_counter()
    class_embeds = class_embeddings(inputs.model, inputs.prompt_sets, config.model.batch_size, inputs.precision)
    methods = {"zero_shot": {s: predictions(inputs.model, x, y, class_embeds) for s, (x, y) in evaluated.items()}}
    timings["zero_shot_s"] = round(time.perf_counter() - started, 1)
    if len(inputs.prompt_sets) > 1:  # the ensemble's first template alone, for comparison
        methods["zero_shot_single_template"] = zero_shot_predictions(
            inputs.model, inputs.prompt_sets[:1], evaluated, config.model.batch_size, inputs.precision)
    searches = {}
    if config.probe.enabled:
        (tx, ty), (vx, vy) = encoded["train"], encoded["validation"]
        probe, searches["linear_probe"] = timed(timings, "linear_probe_s", fit_linear_probe, (tx.numpy(), ty),
                                                (vx.numpy(), vy), config.probe.c_grid, config.probe.max_iter,
                                                config.seed)
        methods["linear_probe"] = {s: probe_predictions(probe, encoded[s][0].numpy(), encoded[s][1])
                                   for s in evaluated}
    if config.tip_adapter.enabled and config.data.shots:  # a few-shot baseline: K-shot cells only
        queries = tip_queries(inputs, config, encoded, trunks, start)
        tip, tip_searches = tip_adapter_methods(inputs.model, class_embeds, encoded, queries, config, timings)
        methods.update(tip)
        searches.update(tip_searches)
    return methods, searches


def tip_queries(inputs: Inputs, config, encoded: dict, trunks: dict | None, start: int | None) -> tuple:
    """Tip-Adapter-F's training features: the base model's embeddings of the training images and, from
    the trunk cache, of their augmented views (``objective.train_views``)."""
    features, labels = encoded["train"]
    if trunks is None or len(trunks["train"][1]) == len(labels):
        return features, labels
    views = head_embeddings(inputs.model, trunks["train"][0][len(labels):], start, config.model.batch_size,
                            inputs.precision)
    return torch.cat([features, views]), trunks["train"][1]


def tip_adapter_methods(model, class_embeds: torch.Tensor, encoded: dict, queries: tuple, config,
                        timings: dict) -> tuple[dict, dict]:
    """Tip-Adapter (keys: the training images' features) and Tip-Adapter-F (keys fine-tuned on the training
    features for ``tip_adapter.epochs``); alpha and beta searched on validation, before and after."""
    t, n_classes = config.tip_adapter, class_embeds.shape[0]
    started = time.perf_counter()
    zero_shot = {s: torch.from_numpy(zero_shot_scores(model, x, class_embeds)) for s, (x, _) in encoded.items()
                 if s != "train"}  # the evaluated splits
    keys, values = cache_model(encoded["train"][0], encoded["train"][1], n_classes)
    (vx, vy) = encoded["validation"]
    alpha, beta, record = search_alpha_beta(zero_shot["validation"], vx, vy, keys, values, t.alpha_grid, t.beta_grid)
    methods = {"tip_adapter": tip_predictions(zero_shot, encoded, keys, values, alpha, beta)}
    searches = {"tip_adapter": record}
    timings["tip_adapter_s"] = round(time.perf_counter() - started, 1)
    if t.finetune:
        started = time.perf_counter()
        query_zero_shot = torch.from_numpy(zero_shot_scores(model, queries[0], class_embeds))
        tuned, losses = finetune_keys(keys, values, queries[0], query_zero_shot, queries[1], alpha, beta, t.epochs,
                                      t.learning_rate, t.batch_size, config.seed)
        alpha, beta, record = search_alpha_beta(zero_shot["validation"], vx, vy, tuned, values, t.alpha_grid,
                                                t.beta_grid)
        methods["tip_adapter_f"] = tip_predictions(zero_shot, encoded, tuned, values, alpha, beta)
        searches["tip_adapter_f"] = {**record, "epochs": t.epochs, "training_rows": len(queries[1]),
                                     "loss_per_epoch": losses}
        timings["tip_adapter_f_s"] = round(time.perf_counter() - started, 1)
    return methods, searches


def tip_predictions(zero_shot: dict, encoded: dict, keys, values, alpha: float, beta: float) -> dict:
    """``{split: (y_true, y_pred, scores)}`` of the blended logits on the evaluated splits."""
    out = {}
    with torch.no_grad():
        for s in zero_shot:  # the evaluated splits (validation alone with score_test=false)
            logits = tip_logits(zero_shot[s], encoded[s][0], keys, values, alpha, beta).numpy()
            out[s] = (encoded[s][1], logits.argmax(1), logits)
    return out


def training_steps(config, inputs: Inputs) -> int | None:
    """``objective.steps_per_shot`` x the images per class (``data.shots``, or the training split's per
    class); ``None``: the training settings decide."""
    if config.objective.steps_per_shot is None:
        return None
    shots = config.data.shots or max(1, len(inputs.data.train) // len(inputs.data.class_names))
    return config.objective.steps_per_shot * shots


def shots_record(config, inputs: Inputs) -> dict:
    """What a label-budget study reads: the images per class trained on and chosen on, and the draw."""
    d = config.data
    return {"shots": d.shots, "nested_shots": d.nested_shots if d.shots else None,
            "validation_per_class": len(inputs.data.validation) // len(inputs.data.class_names),
            "selection": "validation split" + (f" (min(K, {d.shots_validation}) per class, drawn apart from the "
                                               f"K-shot train draw)" if d.shots else ""),
            "step_selection": "best on validation" if config.objective.select_step else "the last step (fixed)",
            "images_encoded": dict(inputs.images_encoded)}


def add_adapters(model, config, targets: list[str], projection: list[str]):
    """The peft model (adapters injected into ``model`` in place) and the parameter counts."""
    set_seed(config.seed)  # the adapters' initialisation, whatever ran before
    peft_model = apply_lora(model, config.lora, targets)
    unfreeze(model, projection)
    counts = count_parameters(model)
    by_tower, formula = lora_by_tower(model), formula_by_tower(model, targets, config.lora.r)
    parameters = {"total": counts["total"], "trainable": counts["trainable"], "lora": lora_parameters(model),
                  "lora_formula": sum(formula.values()), "lora_by_tower": by_tower, "lora_formula_by_tower": formula}
    for tower in formula:
        print(f"LoRA parameters, {tower} tower: {by_tower.get(tower, 0):,} (r x (in + out) per linear layer, "
              f"r x (in x k x k + out) per convolution: {formula[tower]:,})")
    print(f"LoRA parameters: {parameters['lora']:,} over {len(targets)} layers (formula: "
          f"{parameters['lora_formula']:,}); trainable in all: {parameters['trainable']:,}")
    return peft_model, parameters


def text_start(model, targets: list[str], config) -> int | None:
    """The first adapted text block when the frozen ones below it may run once (``objective.cache_text_trunk``)."""
    start = trunk_start(model, targets, "text") if config.objective.cache_text_trunk else None
    return start or None


def score(classifier: PromptClassifier, split: str, cached: dict | None, inputs: Inputs, config) -> tuple:
    """``(y_true, y_pred, scores)`` of a split with the current weights."""
    return split_predictions(classifier, cached[split] if cached else None, getattr(inputs.data, split),
                             config.model.batch_size, config.data.num_workers, inputs.precision)


def train_adapters(classifier: PromptClassifier, cached: dict | None, inputs: Inputs, config, run_dir: Path,
                   precision: str, progress: bool) -> tuple[EvaluatingTrainer, KeepBest]:
    """Train with the Trainer, evaluating on validation on the schedule; the classifier ends in its best state."""
    from transferlab.data.images import with_pixels

    if cached:
        key = "image_embeds" if classifier.image_start is None else "image_hidden"
        train_set, eval_set = (EmbeddingDataset(*cached[s], key=key) for s in ("train", "validation"))
    else:
        train_set, eval_set = with_pixels(inputs.data.train, pixel_preprocess(inputs, config)), inputs.data.validation
    t = recipe_training(config, inputs)
    configure_wandb_env(config.tracking, run_dir)
    args = training_arguments(t, run_dir, seed=config.seed, device=inputs.device, precision=precision,
                              report_to=trainer_report_to(config.tracking), progress=progress,
                              run_name=run_dir.name, checkpoints=False, remove_unused_columns=False)
    optimizer = torch.optim.AdamW(param_groups(classifier, t.learning_rate, config.objective.projection_learning_rate),
                                  lr=t.learning_rate, weight_decay=t.weight_decay)
    keep = KeepBest("eval_accuracy")
    trainer = EvaluatingTrainer(
        model=classifier, args=args, train_dataset=train_set, eval_dataset=eval_set, optimizers=(optimizer, None),
        callbacks=[keep, *run_callbacks(t)],
        evaluator=lambda model: {"accuracy": split_accuracy(score(model, "validation", cached, inputs, config))})
    use_tensorboard_dir(trainer, run_dir / "tensorboard")
    train(trainer, None, "training.batch_size", run_dir)
    if keep.last_step != trainer.state.global_step:
        trainer.evaluate()  # a max_steps run that stopped between evaluations
    keep.restore(classifier)
    return trainer, keep


class ViewedPreprocess:
    """The model's preprocessing after a seeded random view (``objective.pixel_view``), drawn anew at each
    access; each data-loader worker draws from its own stream (seed, worker)."""

    def __init__(self, preprocess, view: str, seed: int):
        from transferlab.models.trunk_cache import VIEWS

        self.preprocess, self.view, self.seed = preprocess, VIEWS[view], seed
        self.rng, self.worker = None, None

    def __call__(self, images: list) -> torch.Tensor:
        info = torch.utils.data.get_worker_info()
        worker = info.id if info else -1
        if self.rng is None or worker != self.worker:
            self.rng, self.worker = np.random.default_rng([self.seed, worker + 1]), worker
        return self.preprocess(self.view(images, self.rng))


def pixel_preprocess(inputs: Inputs, config):
    """The model's preprocessing, after ``objective.pixel_view`` if set."""
    view = config.objective.pixel_view
    if not view:
        return inputs.model.preprocess
    seed = config.seed if config.objective.view_seed is None else config.objective.view_seed
    return ViewedPreprocess(inputs.model.preprocess, view, seed)


def recipe_training(config, inputs: Inputs):
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


def save_adapter(run_dir: Path, peft_model, model, projection: list[str], save_merged: bool) -> None:
    """``adapter/`` (peft ``save_pretrained``, plus the fully trained map as ``extra_trainable.safetensors``)
    and, on request, ``merged_model/``."""
    peft_model.save_pretrained(run_dir / "adapter")
    if projection:
        from safetensors.torch import save_file

        params = dict(model.named_parameters())
        save_file({n: params[n].detach().cpu().contiguous() for n in projection},
                  str(run_dir / "adapter" / "extra_trainable.safetensors"))
    if save_merged:
        peft_model.merge_and_unload()
        model.save_pretrained(run_dir / "merged_model")


def lora_metrics(ctx: RunContext, config, inputs: Inputs, methods: dict, step: int, parameters: dict,
                 timings: dict, details: dict) -> RunMetrics:
    data = inputs.data
    return RunMetrics(
        experiment=EXPERIMENT, model=model_record(config, inputs, processes=ctx.num_processes),
        primary=config.lora.method,
        methods=write_results(ctx.path, ctx.tracker, methods, data.class_names, primary=config.lora.method, step=step,
                              top_k=(1, 5), examples=image_paths(data), evaluation=config.evaluation),
        n_classes=len(data.class_names), parameters=parameters, timings=timings, details=details,
        n_examples={"train": len(data.train), **{s: len(getattr(data, s)) for s in SPLITS}})


def print_summary(metrics: RunMetrics) -> None:
    for method, result in metrics.methods.items():
        print(f"{method} (95% intervals): top-1 {summary_line(result, 'validation')}, {summary_line(result)}, "
              f"top-5 {summary_line(result, metric='top5_accuracy')}")
