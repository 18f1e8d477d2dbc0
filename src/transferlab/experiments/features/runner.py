"""Experiment 1: frozen encoder features + a classical classifier (the lab's SVC and tuned peers).

Reads top to bottom: validate data and model, embed each split (cached), choose the classifier
on validation, score validation and test once, write everything into the run directory.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

from transferlab.config import to_dict
from transferlab.data.checks import checked_notes
from transferlab.data.text import load_text_data
from transferlab.errors import TransferlabError
from transferlab.evaluation.results import summary_line, write_results
from transferlab.evaluation.schema import RunMetrics
from transferlab.experiments.features.config import FeaturesConfig
from transferlab.experiments.lifecycle import open_run, set_seed
from transferlab.models.classifiers import (CLASSIFIER_FILE, PICKLE_FILE, load_classifier_file, predict_proba,
                                            save_classifier, select_classifier)
from transferlab.models.device import resolve_device, resolve_precision
from transferlab.models.feature_cache import cached, weights_fingerprint
from transferlab.models.text_encoder import encode, load_encoder
from transferlab.training.lora import count_parameters

EXPERIMENT = "features"


def run_features(cfg: FeaturesConfig, output_dir: str | Path = "logs", *, resume: str | None = None,
                 progress: bool = True) -> Path | None:
    if resume:
        raise TransferlabError("features runs do not resume (they are cheap to rerun, and encoded vectors are "
                               "cached): run the command again without --resume")
    set_seed(cfg.seed)
    data = load_text_data(cfg.data, seed=cfg.seed)
    data.notes = checked_notes(data)  # the loader's notes and the checks across splits, printed
    device = resolve_device(cfg.encoder.device, "encoder.device")
    precision = resolve_precision(cfg.encoder.precision, device, cpu_auto="bf16", key="encoder.precision")
    tokenizer, model = load_encoder(cfg.encoder.model, device)
    resolved = dict(to_dict(cfg), resolved={"device": str(device), "precision": precision})

    with open_run(EXPERIMENT, seed=cfg.seed, output_dir=output_dir, run_name=cfg.run_name, resolved=resolved,
                  tracking=cfg.tracking, default_name=f"{cfg.encoder.model}-{cfg.classifier.name}",
                  cpu=device.type == "cpu") as ctx:
        if ctx.is_main:
            data.write_manifest(ctx.path)  # the K-shot draw's split_manifest.jsonl
        cache_dir = (cfg.cache_dir or Path(output_dir) / "cache" / "features") if cfg.cache else None
        vectors, timings = embed_splits(cfg, data, tokenizer, model, precision, cache_dir, progress)
        labels = {split: np.asarray(data.splits[split]["label"]) for split in vectors}
        fitted = fit_classifiers(cfg, vectors, labels, timings)
        clf, selection = fitted[EXPERIMENT]
        if not ctx.is_main:
            return None
        for i, (C, acc) in enumerate(zip(selection["grid_C"], selection["validation_accuracy"])):
            ctx.tracker.log_metrics({"selection/validation_accuracy": acc, "selection/C": C}, step=i)
        splits = ("validation", "test") if cfg.score_test else ("validation",)
        predictions = {method: {split: (labels[split], pipe.predict(vectors[split]), predict_proba(pipe, vectors[split]))
                                for split in splits} for method, (pipe, _) in fitted.items()}
        save_classifier({"pipeline": clf, "label_names": data.label_names, "encoder": to_dict(cfg.encoder),
                         "precision": precision}, ctx.path / CLASSIFIER_FILE)
        metrics = RunMetrics(
            experiment=EXPERIMENT, primary=EXPERIMENT,
            model={"name": cfg.encoder.model, "pooling": cfg.encoder.pooling, "layers": list(cfg.encoder.layers),
                   "dim": int(vectors["train"].shape[1]), "precision": precision, "classifier": cfg.classifier.name},
            methods=write_results(ctx.path, ctx.tracker, predictions, data.label_names,
                                  primary=EXPERIMENT, examples={s: data.splits[s]["text"] for s in splits},
                                  evaluation=cfg.evaluation),
            n_classes=len(data.label_names), n_examples={s: len(data.splits[s]) for s in data.splits},
            parameters={"total": count_parameters(model)["total"], "trainable": 0}, timings=timings,
            details=features_details(fitted, data), notes=data.notes)
        ctx.save_metrics(metrics)
        print("accuracy (95% interval): " + ", ".join(summary_line(metrics.result, s) for s in splits))
    return ctx.path


def fit_classifiers(cfg: FeaturesConfig, vectors: dict, labels: dict, timings: dict) -> dict[str, tuple]:
    """``{method: (fitted pipeline, selection)}``: ``features`` (classifier.name), then ``features_<name>`` for
    each of ``also_classifiers``, each with its C chosen on the validation split (the K-shot draw's own one)."""
    fitted = {}
    for name in [cfg.classifier.name, *cfg.also_classifiers]:
        method = EXPERIMENT if name == cfg.classifier.name else f"{EXPERIMENT}_{name}"
        start = time.perf_counter()
        settings = dataclasses.replace(cfg.classifier, name=name,  # warm starts are logreg's alone
                                       warm_start=cfg.classifier.warm_start and name == "logreg")
        fitted[method] = select_classifier(settings, vectors["train"], labels["train"], vectors["validation"],
                                           labels["validation"], cfg.seed)
        timings["classifier_s" if method == EXPERIMENT else f"classifier_{name}_s"] = round(time.perf_counter() - start, 3)
        selection = fitted[method][1]
        print(f"classifier {name}: C={selection['chosen_C']} "
              f"(validation accuracy by C: {dict(zip(selection['grid_C'], selection['validation_accuracy']))})")
    return fitted


def features_details(fitted: dict, data) -> dict:
    details = {"selection": fitted[EXPERIMENT][1]}
    details.update({f"selection_{method}": selection for method, (_, selection) in fitted.items() if method != EXPERIMENT})
    if data.fewshot:
        details["fewshot"] = data.fewshot
    return details


def embed_splits(cfg: FeaturesConfig, data, tokenizer, model, precision: str, cache_dir, progress: bool):
    """``{split: vectors}`` for train, validation and test (from the cache when it holds them), and timings.
    With a label budget (``data.shots``) the whole train pool is encoded (cached under the same key as a
    full-data run's train split) and the drawn rows are selected from it: a study encodes each text once."""
    weights = weights_fingerprint(model)
    vectors, timings = {}, {}
    sources = [("train", "pool"), ("test", "test")] if data.pool is not None else \
        [(split, split) for split in ("train", "validation", "test")]
    for split, source in sources:
        texts = (data.pool if source == "pool" else data.splits[split])["text"]
        key = {"weights": weights, "model": cfg.encoder.model, "pooling": cfg.encoder.pooling,
               "max_length": cfg.encoder.max_length, "precision": precision,
               "data": data.fingerprint(source), "split": split}
        if cfg.encoder.layers != [-1]:  # keyed only when not the last layer alone: earlier caches stay valid
            key["layers"] = list(cfg.encoder.layers)
        start = time.perf_counter()
        vectors[split], hit = cached(cache_dir, key, lambda: encode(
            texts, tokenizer, model, cfg.encoder.pooling, cfg.encoder.max_length,
            cfg.encoder.batch_size, precision, progress=progress, layers=cfg.encoder.layers), rows=len(texts))
        timings[f"encode_{split}_s"] = round(time.perf_counter() - start, 3)
        timings[f"encoded_{split}_texts"] = 0 if hit else len(texts)
        print(f"{split}{' pool' if source == 'pool' else ''}: {len(texts)} texts "
              f"{'from cache' if hit else 'encoded'} in {timings[f'encode_{split}_s']:.1f}s")
    if data.pool is not None:
        pool = vectors.pop("train")
        vectors.update(train=pool[data.rows["train"]], validation=pool[data.rows["validation"]])
    return vectors, timings


def load_classifier(run_dir: str | Path, trust_pickle: bool = False) -> dict:
    """The saved classifier bundle of a features run: pipeline, label names, encoder settings. A run from before
    skops (``classifier.joblib``, a pickle: loading it runs whatever code it holds) only with ``trust_pickle``."""
    run_dir = Path(run_dir)
    if (run_dir / CLASSIFIER_FILE).is_file() or not (run_dir / PICKLE_FILE).is_file():
        return load_classifier_file(run_dir / CLASSIFIER_FILE)
    if not trust_pickle:
        raise TransferlabError(f"{run_dir / PICKLE_FILE} is a pickle, and loading a pickle runs any code it holds: "
                               f"pass --trust-pickle only if you made this run yourself, or rerun the experiment")
    import joblib

    print(f"warning: loading the pickle {run_dir / PICKLE_FILE} (--trust-pickle): it can run code", file=sys.stderr)
    bundle = joblib.load(run_dir / PICKLE_FILE)
    if not isinstance(bundle, dict) or "pipeline" not in bundle:
        raise TransferlabError(f"{run_dir / PICKLE_FILE} does not hold a transferlab classifier bundle")
    return bundle
