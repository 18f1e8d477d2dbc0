"""A study's figures as files people already keep: one long-format ``results.csv`` and CLIP_benchmark JSONs.

``results.csv``: one row per (experiment, dataset, model, method, shots, seed, split, metric) of every
completed cell, with the 95% interval of the cell's ``metrics.json`` (schema 2 ``intervals``), or for
accuracy, where a file lacks them, the bootstrap interval recomputed from its predictions file.
``benchmark/<model>__<dataset>__<method>__<shots>.json``: CLIP_benchmark's result layout (``dataset``,
``model``, ``task``, ``metrics`` with ``acc1``, ``acc5``, ``mean_per_class_recall``), the mean over seeds,
with each seed's figures beside it.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from transferlab.config import load_yaml
from transferlab.evaluation.statistics import accuracy_interval
from transferlab.experiments.registry import EXPERIMENTS
from transferlab.tracking.files import atomic_write, own_folder, read_json, slug, write_json
from transferlab.tracking.rundir import COMPLETED

RESULTS = "results.csv"
COLUMNS = ("experiment", "dataset", "model", "method", "shots", "seed", "protocol", "split", "metric", "value", "ci_low",
           "ci_high")
METRICS = ("accuracy", "f1", "recall", "top5_accuracy")  # recall: macro, i.e. mean per-class recall


def dataset_name(config: dict) -> str:
    """A short data set name from a cell's recorded config (``rotten_tomatoes``, ``tiny-imagenet-200``...)."""
    data = config.get("data") or {}
    if data.get("path"):
        return Path(str(data["path"])).name
    if data.get("source") == "hub":
        return str(data.get("name"))
    if data.get("source") == "files":
        return Path(str(data.get("train_file"))).stem
    if data.get("source"):
        return str(data["source"])
    return "tiny_imagenet_demo"  # the image experiments' vendored subset (data.path null)


def method_label(experiment: str, method: str, model: dict) -> str:
    """The method as the study names it: finetune's ``method=lora`` becomes ``finetune_lora``."""
    if experiment == "finetune" and model.get("method") not in (None, "full"):
        return f"{method}_{model['method']}"
    return method


def predictions_interval(run_dir: Path, method: str, split: str) -> tuple[float, float] | tuple[None, None]:
    """The bootstrap interval of accuracy from ``predictions/<method>.jsonl`` (``None``s if it is missing)."""
    path = run_dir / "predictions" / f"{method}.jsonl"
    if not path.is_file():
        return None, None
    with path.open() as handle:
        correct = [row["label"] == row["prediction"] for row in map(json.loads, handle) if row["split"] == split]
    return accuracy_interval(np.asarray(correct)) if correct else (None, None)


def protocol(method: str, config: dict, experiment_training_free: bool) -> str:
    """How a figure's settings were chosen, written beside it: ``validation_free`` (nothing chosen: zero-shot),
    ``fewshot_val@<n>`` (on n examples per class drawn from the train pool, as a K-shot user would have) or
    ``full_val`` (on the whole validation split). No setting is ever chosen on test."""
    data = config.get("data") or {}
    if experiment_training_free or method.startswith("zero_shot"):
        return "validation_free"
    if data.get("shots") is not None:
        return f"fewshot_val@{min(int(data['shots']), int(data.get('shots_validation') or data['shots']))}"
    return "full_val"


def cell_rows(study_dir: Path, cell: dict) -> list[dict]:
    """The results.csv rows of one completed cell."""
    run_dir = study_dir / cell["run_dir"]
    metrics = read_json(run_dir / "metrics.json", "metrics")
    config = load_yaml((run_dir / "config.yaml").read_text()) or {}
    task = cell.get("arm", "").partition("#")[2]  # a suite's arm: the task's name is the data set's
    base = {"experiment": cell["experiment"], "dataset": task or dataset_name(config),
            "model": metrics.get("model", {}).get("name", "?"),
            "shots": "full" if cell["shots"] is None else cell["shots"], "seed": cell["seed"]}
    free = EXPERIMENTS[cell["experiment"]].training_free if cell["experiment"] in EXPERIMENTS else False
    rows = []
    for method, splits in metrics["methods"].items():
        label = method_label(cell["experiment"], method, metrics.get("model", {}))
        model_part = cell.get("arm", "").partition("#")[0].partition("@")[2]
        if model_part:  # a model axis: one curve per method and model
            label += "@" + model_part
        for split, figures in splits.items():
            for metric in (m for m in METRICS if m in figures):
                low, high = (figures.get("intervals") or {}).get(metric) or (None, None)
                if low is None and metric == "accuracy":
                    low, high = predictions_interval(run_dir, method, split)
                rows.append({**base, "method": label, "protocol": protocol(method, config, free), "split": split,
                             "metric": metric, "value": figures[metric], "ci_low": low, "ci_high": high})
    return rows


def read_results(study_dir: str | Path) -> list[dict]:
    """``results.csv`` back as dicts (numbers as floats, ``shots`` as written: an integer or ``full``)."""
    with (Path(study_dir) / RESULTS).open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        for key in ("value", "ci_low", "ci_high"):
            row[key] = float(row[key]) if row[key] not in ("", None) else None
        row["seed"] = int(row["seed"])
    return rows


def write_results_csv(study_dir: Path, state: dict) -> Path:
    rows = [row for cell in state["cells"] if cell["status"] == COMPLETED for row in cell_rows(study_dir, cell)]
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    path = study_dir / RESULTS
    atomic_write(path, buffer.getvalue())  # never through a link planted at results.csv
    return path


def write_benchmark_jsons(study_dir: Path, rows: list[dict]) -> list[Path]:
    """One CLIP_benchmark-style JSON per (model, dataset, method, shots), test split, mean over seeds."""
    names = {"accuracy": "acc1", "top5_accuracy": "acc5", "recall": "mean_per_class_recall"}
    groups: dict[tuple, dict[int, dict]] = {}
    for row in rows:
        if row["split"] == "test" and row["metric"] in names:
            key = (row["model"], row["dataset"], row["method"], str(row["shots"]))
            groups.setdefault(key, {}).setdefault(row["seed"], {})[names[row["metric"]]] = row["value"]
    out = []
    for (model, dataset, method, shots), by_seed in groups.items():
        metrics = {m: (float(np.mean([s[m] for s in by_seed.values()])) if all(m in s for s in by_seed.values())
                       else None) for m in names.values()}
        record = {"dataset": dataset, "model": model, "pretrained": None, "language": "en",
                  "task": "zeroshot_classification" if method == "zero_shot" else "few_shot_classification",
                  "method": method, "shots": shots, "seeds": sorted(by_seed), "metrics": metrics,
                  "per_seed": {str(seed): figures for seed, figures in sorted(by_seed.items())}}
        path = own_folder(study_dir, "benchmark") / f"{slug(model)}__{slug(dataset)}__{slug(method)}__{slug(shots)}.json"
        write_json(path, record)
        out.append(path)
    return out


def write_study_results(study_dir: str | Path, state: dict) -> Path:
    """``results.csv`` and ``benchmark/*.json`` of a study directory; returns the CSV's path."""
    study_dir = Path(study_dir)
    path = write_results_csv(study_dir, state)
    write_benchmark_jsons(study_dir, read_results(study_dir))
    return path
