"""The baselines of the CLIP runs, on image embeddings already computed with the base model: zero-shot
(``transferlab zeroshot``'s method, and the first of ``lora``'s), the first template alone, the linear
probe and, in K-shot runs, Tip-Adapter and Tip-Adapter-F. Each chooses its settings on the validation
split (the probe's C, Tip-Adapter's alpha and beta); the library steps are in ``transferlab.models``.
"""

from __future__ import annotations

import time

import torch

from transferlab.experiments.clip.config import ClipConfig
from transferlab.experiments.clip.inputs import SPLITS, Inputs
from transferlab.models.linear_probe import fit_linear_probe, probe_predictions
from transferlab.models.tip_adapter import cache_model, finetune_keys, search_alpha_beta, tip_logits
from transferlab.models.trunk_cache import head_embeddings
from transferlab.models.zero_shot import class_embeddings, predictions, zero_shot_predictions
from transferlab.models.zero_shot import scores as zero_shot_scores


def timed(timings: dict, key: str, fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, its seconds recorded under ``timings[key]``."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    timings[key] = round(time.perf_counter() - start, 1)
    return out


def evaluated_splits(config: ClipConfig) -> tuple[str, ...]:
    """Validation and test; validation alone with ``score_test=false`` (a search's trials)."""
    return SPLITS if config.score_test else ("validation",)


def zero_shot(inputs: Inputs, evaluated: dict, config: ClipConfig, timings: dict) -> tuple[torch.Tensor, dict]:
    """``(class embeddings, {split: predictions})``: the class prompts encoded once (templates averaged),
    every evaluated split scored against them with the model family's scoring."""
    started = time.perf_counter()
    class_embeds = class_embeddings(inputs.model, inputs.prompt_sets, config.model.batch_size, inputs.precision)
    out = {s: predictions(inputs.model, x, y, class_embeds) for s, (x, y) in evaluated.items()}
    timings["zero_shot_s"] = round(time.perf_counter() - started, 3)
    return class_embeds, out


def baselines(inputs: Inputs, encoded: dict, trunks: dict | None, start: int | None, config: ClipConfig,
              timings: dict) -> tuple[dict, dict]:
    """``({method: {split: predictions}}, {method: its selection record})`` of the zero-shot baseline and
    (if enabled) the linear probe (its C search) and, in K-shot runs, Tip-Adapter(-F) (alpha and beta),
    all chosen on the validation split."""
    evaluated = {s: encoded[s] for s in evaluated_splits(config)}
    class_embeds, methods = zero_shot(inputs, evaluated, config, timings)
    methods = {"zero_shot": methods}
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


def tip_queries(inputs: Inputs, config: ClipConfig, encoded: dict, trunks: dict | None,
                start: int | None) -> tuple:
    """Tip-Adapter-F's training features: the base model's embeddings of the training images and, from
    the trunk cache, of their augmented views (``objective.train_views``)."""
    features, labels = encoded["train"]
    if trunks is None or len(trunks["train"][1]) == len(labels):
        return features, labels
    views = head_embeddings(inputs.model, trunks["train"][0][len(labels):], start, config.model.batch_size,
                            inputs.precision)
    return torch.cat([features, views]), trunks["train"][1]


def tip_adapter_methods(model, class_embeds: torch.Tensor, encoded: dict, queries: tuple, config: ClipConfig,
                        timings: dict) -> tuple[dict, dict]:
    """Tip-Adapter (keys: the training images' features) and Tip-Adapter-F (keys fine-tuned on the training
    features for ``tip_adapter.epochs``); alpha and beta searched on validation, before and after. The
    zero-shot logits they blend with are the model's own (SigLIP's with its bias: a constant per image,
    so neither the search nor Tip-Adapter-F's cross-entropy depends on it)."""
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
