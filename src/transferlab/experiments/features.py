"""Experiment 1: frozen encoder features + a classical classifier (the lab's SVC and tuned peers).

Reads top to bottom: validate data and model, embed each split (cached), choose the classifier
on validation, score validation and test once, write everything into the run directory.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import joblib
import numpy as np

from transferlab.config import TrackingConfig, to_dict
from transferlab.data.text import TextDataConfig, load_text_data
from transferlab.evaluation.results import write_results
from transferlab.models.classifiers import ClassifierConfig, select_classifier
from transferlab.models.feature_cache import cached, weights_fingerprint
from transferlab.models.text_encoder import EncoderConfig, encode, load_encoder, pick_device, resolve_precision
from transferlab.runs import Run, set_seed
from transferlab.tracking.tracker import Tracker


@dataclass
class FeaturesConfig:
    seed: int = 0
    run_name: str | None = None
    data: TextDataConfig = field(default_factory=TextDataConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    cache: bool = True
    cache_dir: str | None = None  # default: <output_dir>/cache/features
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    source: str = ""  # where the config came from (filled by the loader)

    def validate(self) -> None:
        self.encoder.validate()
        self.classifier.validate()


def run_features(cfg: FeaturesConfig, output_dir: str | Path = "logs", progress: bool = True) -> Path:
    set_seed(cfg.seed)
    data = load_text_data(cfg.data)
    for note in data.notes:
        print(f"note: {note}")
    device = pick_device(cfg.encoder.device)
    precision = resolve_precision(cfg.encoder.precision, device)
    tokenizer, model = load_encoder(cfg.encoder.model, device)

    resolved = to_dict(cfg)
    resolved["resolved"] = {"device": str(device), "precision": precision}
    run = Run.create(output_dir, "features", cfg.run_name, resolved,
                     default_name=f"{cfg.encoder.model}-{cfg.classifier.name}")
    print(f"run directory: {run.path}")
    with run.guard(), Tracker(run.path, cfg.tracking, resolved) as tracker:
        weights = weights_fingerprint(model)
        cache_dir = (cfg.cache_dir or Path(output_dir) / "cache" / "features") if cfg.cache else None
        vectors, timing = {}, {}
        for split in ("train", "validation", "test"):
            texts = data.splits[split]["text"]
            key = {"weights": weights, "model": cfg.encoder.model, "pooling": cfg.encoder.pooling,
                   "max_length": cfg.encoder.max_length, "precision": precision,
                   "data": data.fingerprint(split), "split": split}
            start = time.perf_counter()
            vectors[split], hit = cached(cache_dir, key, lambda: encode(
                texts, tokenizer, model, cfg.encoder.pooling, cfg.encoder.max_length,
                cfg.encoder.batch_size, precision, progress=progress))
            timing[split] = {"seconds": round(time.perf_counter() - start, 3), "cache_hit": hit,
                             "examples": len(texts)}
            print(f"{split}: {len(texts)} texts {'from cache' if hit else 'encoded'} "
                  f"in {timing[split]['seconds']:.1f}s")

        labels = {split: np.asarray(data.splits[split]["label"]) for split in vectors}
        start = time.perf_counter()
        clf, selection = select_classifier(cfg.classifier, vectors["train"], labels["train"],
                                           vectors["validation"], labels["validation"], cfg.seed)
        selection["seconds"] = round(time.perf_counter() - start, 3)
        print(f"classifier {cfg.classifier.name}: C={selection['chosen_C']} "
              f"(validation accuracy by C: {dict(zip(selection['grid_C'], selection['validation_accuracy']))})")
        for i, (C, acc) in enumerate(zip(selection["grid_C"], selection["validation_accuracy"])):
            tracker.log_metrics({"selection/validation_accuracy": acc, "selection/C": C}, step=i)

        predictions = {split: (labels[split], clf.predict(vectors[split])) for split in ("validation", "test")}
        metrics = write_results(run, tracker, predictions, data.label_names)
        joblib.dump({"pipeline": clf, "label_names": data.label_names, "encoder": to_dict(cfg.encoder),
                     "precision": precision}, run.path / "classifier.joblib")
        metrics.update(selection=selection, timing=timing, notes=data.notes,
                       model={"encoder": cfg.encoder.model, "pooling": cfg.encoder.pooling,
                              "dim": int(vectors["train"].shape[1]), "precision": precision,
                              "classifier": cfg.classifier.name})
        run.save_metrics(metrics)
        print(f"validation accuracy {metrics['validation']['accuracy']:.4f}, "
              f"test accuracy {metrics['test']['accuracy']:.4f}")
    return run.path


def load_classifier(run_dir: str | Path) -> dict:
    """The saved classifier bundle of a features run: pipeline, label names, encoder settings."""
    return joblib.load(Path(run_dir) / "classifier.joblib")
