"""The evaluation outputs every experiment writes: metrics per method and split, a text report, a confusion plot.

``write_results`` takes the predictions of each evaluated method (``{method: {split: (y_true, y_pred[,
scores])}}``), logs each value once to the tracker (``<method>/<split>/<metric>`` at ``step``), writes
``classification_report.txt`` (every method and split) and ``confusion_matrix.png`` / ``.csv`` (the
primary method on test), ``predictions/<method>.jsonl`` (every example) and returns the ``methods``
entry of ``metrics.json``: per split the figures, their bootstrap ``intervals`` and, where the method
gives scores, its ``calibration`` (and ``calibrated``, temperature-scaled on validation, with
``evaluation.calibrate=true``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from transferlab.evaluation.calibration import calibrated_record, calibration_record, fit_temperature
from transferlab.evaluation.metrics import classification_metrics, confusion, report_text
from transferlab.evaluation.plots import plot_confusion_matrix, plot_top_confusions
from transferlab.evaluation.predictions import probabilities, write_predictions
from transferlab.evaluation.statistics import CONFIDENCE, N_RESAMPLES, SEED, split_intervals

MAX_CLASSES_FOR_MATRIX = 20


def interval_options(evaluation=None) -> dict:
    """``confidence``, ``n_resamples`` and ``seed`` from an ``EvaluationConfig`` (the defaults without one)."""
    return {"confidence": getattr(evaluation, "confidence", CONFIDENCE),
            "n_resamples": getattr(evaluation, "n_resamples", N_RESAMPLES), "seed": getattr(evaluation, "seed", SEED)}


def split_result(y_true: np.ndarray, y_pred: np.ndarray, scores: np.ndarray | None, label_names: Sequence[str],
                 top_k: Sequence[int], options: dict) -> dict:
    """One SPLIT of ``metrics.json``: the figures, their ``intervals`` and (with scores) ``calibration``."""
    result = classification_metrics(y_true, y_pred, label_names, scores=scores, top_k=top_k)
    topk = {}
    if scores is not None:
        ranked = np.argsort(-np.asarray(scores), axis=1)
        topk = {f"top{k}_accuracy": (ranked[:, :k] == y_true[:, None]).any(axis=1) for k in top_k if k > 1}
    # macro F1 over the classes present in y_true, as classification_metrics averages it
    result["intervals"] = split_intervals(y_true, y_pred, labels=np.unique(y_true), topk_correct=topk, **options)
    if scores is not None:
        result["calibration"] = calibration_record(probabilities(scores), y_true, y_pred)
    return result


def add_calibrated(results: dict[str, dict], splits: dict[str, tuple]) -> None:
    """Temperature scaling fitted on the validation split, recorded beside the raw figures of every split."""
    if "validation" not in splits or len(splits["validation"]) < 3:
        return
    y_val, _, scores_val = splits["validation"]
    temperature = fit_temperature(probabilities(scores_val), np.asarray(y_val))
    for split, (y_true, y_pred, *rest) in splits.items():
        if rest:
            results[split]["calibrated"] = calibrated_record(temperature, probabilities(rest[0]),
                                                             np.asarray(y_true), np.asarray(y_pred))


def tracked(result: dict) -> dict:
    """The numbers of a SPLIT the tracker logs: the figures and the calibration scores."""
    out = {k: v for k, v in result.items() if isinstance(v, (int, float))}
    for entry in ("calibration", "calibrated"):
        out.update({f"{entry}/{k}": v for k, v in result.get(entry, {}).items() if isinstance(v, (int, float))})
    return out


def write_results(run_dir: str | Path, tracker, methods: dict[str, dict[str, tuple]], label_names: Sequence[str],
                  primary: str, step: int = 0, top_k: Sequence[int] = (),
                  examples: dict[str, Sequence[str]] | None = None, evaluation=None) -> dict[str, dict[str, dict]]:
    """``examples``: per split, what each row is (the text, or the image path) for ``predictions/``;
    ``evaluation``: the run's ``EvaluationConfig`` (bootstrap options, ``calibrate``)."""
    run_dir = Path(run_dir)
    options = interval_options(evaluation)
    results, report = {}, []
    for method, splits in methods.items():
        write_predictions(run_dir, method, splits, label_names, examples)
        results[method], texts = {}, {}
        for split, (y_true, y_pred, *rest) in splits.items():
            y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
            results[method][split] = split_result(y_true, y_pred, rest[0] if rest else None, label_names, top_k,
                                                  options)
            texts[split] = report_text(y_true, y_pred, label_names)
            report.append(f"== {method}, {split} ({len(y_true)} examples) ==\n{texts[split]}")
        if getattr(evaluation, "calibrate", False):
            add_calibrated(results[method], splits)
        if tracker is not None:
            for split, result in results[method].items():
                tracker.log_metrics(tracked(result), step, prefix=f"{method}/{split}")
                tracker.log_text(f"{method}/{split}/classification_report", texts[split], step)
    (run_dir / "classification_report.txt").write_text("\n".join(report))
    split = "test" if "test" in methods[primary] else "validation"
    y_true, y_pred = (np.asarray(a) for a in methods[primary][split][:2])
    png = write_confusion(run_dir, y_true, y_pred, label_names, f"{primary}, {split}")
    if tracker is not None:
        tracker.log_image(f"{primary}/{split}/confusion_matrix", png, step)
    return results


def write_confusion(run_dir: Path, y_true: np.ndarray, y_pred: np.ndarray, label_names: Sequence[str],
                    title: str) -> Path:
    """``confusion_matrix.csv`` and ``.png`` (the full matrix for few classes, the top confusions for many)."""
    matrix = confusion(y_true, y_pred, len(label_names))
    np.savetxt(run_dir / "confusion_matrix.csv", matrix, fmt="%d", delimiter=",")
    png = run_dir / "confusion_matrix.png"
    if len(label_names) <= MAX_CLASSES_FOR_MATRIX:
        return plot_confusion_matrix(matrix, label_names, png, title=f"Confusion matrix ({title})")
    return plot_top_confusions(matrix, label_names, png)


def interval_text(value: float | None, interval: Sequence[float] | None, digits: int = 4) -> str:
    """``0.7683 [0.742, 0.793]`` (the interval to one digit fewer), or the value alone without one."""
    if value is None:
        return "–"
    if not interval:
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{interval[0]:.{digits - 1}f}, {interval[1]:.{digits - 1}f}]"


def summary_line(result: dict, split: str = "test", metric: str = "accuracy") -> str:
    """What a command prints at its end for one split: ``test 0.7683 [0.742, 0.793]`` (95% bootstrap
    interval), ``test not scored`` when the split was not evaluated."""
    figures = result.get(split)
    if not figures or metric not in figures:
        return f"{split} not scored"
    interval = figures.get("intervals", {}).get(metric)
    return f"{split} {interval_text(figures[metric], interval)}"
