"""The evaluation outputs every experiment writes: metrics per method and split, a text report, a confusion plot.

``write_results`` takes the predictions of each evaluated method (``{method: {split: (y_true, y_pred[,
scores])}}``), logs each value once to the tracker (``<method>/<split>/<metric>`` at ``step``), writes
``classification_report.txt`` (every method and split) and ``confusion_matrix.png`` / ``.csv`` (the
primary method on test), ``predictions/<method>.jsonl`` (every example) and returns the ``methods``
entry of ``metrics.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from transferlab.evaluation.metrics import classification_metrics, confusion, report_text
from transferlab.evaluation.plots import plot_confusion_matrix, plot_top_confusions
from transferlab.evaluation.predictions import write_predictions

MAX_CLASSES_FOR_MATRIX = 20


def write_results(run_dir: str | Path, tracker, methods: dict[str, dict[str, tuple]], label_names: Sequence[str],
                  primary: str, step: int = 0, top_k: Sequence[int] = (),
                  examples: dict[str, Sequence[str]] | None = None) -> dict[str, dict[str, dict]]:
    """``examples``: per split, what each row is (the text, or the image path) for ``predictions/``."""
    run_dir = Path(run_dir)
    results, report = {}, []
    for method, splits in methods.items():
        write_predictions(run_dir, method, splits, label_names, examples)
        results[method] = {}
        for split, (y_true, y_pred, *rest) in splits.items():
            scores = rest[0] if rest else None
            results[method][split] = classification_metrics(y_true, y_pred, label_names, scores=scores, top_k=top_k)
            text = report_text(y_true, y_pred, label_names)
            report.append(f"== {method}, {split} ({len(y_true)} examples) ==\n{text}")
            if tracker is not None:
                summary = {k: v for k, v in results[method][split].items() if k != "per_class"}
                tracker.log_metrics(summary, step, prefix=f"{method}/{split}")
                tracker.log_text(f"{method}/{split}/classification_report", text, step)
    (run_dir / "classification_report.txt").write_text("\n".join(report))
    y_true, y_pred = (np.asarray(a) for a in methods[primary]["test"][:2])
    png = write_confusion(run_dir, y_true, y_pred, label_names, f"{primary}, test")
    if tracker is not None:
        tracker.log_image(f"{primary}/test/confusion_matrix", png, step)
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
