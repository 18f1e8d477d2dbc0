"""The evaluation outputs every experiment writes: metrics per split, a text report, a confusion plot.

``write_results`` logs each split's metrics once to the tracker (step = ``step``), writes
``classification_report.txt`` and ``confusion_matrix.png`` (of the last split given, the test
split by convention) and returns the per-split metrics for ``metrics.json``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from transferlab.evaluation.metrics import classification_metrics, confusion, report_text
from transferlab.reporting.plots import plot_confusion_matrix
from transferlab.runs import Run
from transferlab.tracking.tracker import Tracker

MAX_CLASSES_FOR_MATRIX = 20


def write_results(run: Run, tracker: Tracker, splits: dict[str, tuple], label_names: Sequence[str],
                  step: int = 0, top_k: Sequence[int] = ()) -> dict:
    """``splits``: ``{"validation": (y_true, y_pred[, scores]), "test": ...}``."""
    metrics, report = {}, []
    for split, (y_true, y_pred, *rest) in splits.items():
        scores = rest[0] if rest else None
        metrics[split] = classification_metrics(y_true, y_pred, label_names, scores=scores, top_k=top_k)
        text = report_text(y_true, y_pred, label_names)
        report.append(f"== {split} ({len(y_true)} examples) ==\n{text}")
        tracker.log_metrics({k: v for k, v in metrics[split].items() if k != "per_class"}, step, prefix=split)
        tracker.log_text(f"{split}/classification_report", text, step)
    (run.path / "classification_report.txt").write_text("\n".join(report))
    last = list(splits)[-1]
    y_true, y_pred = np.asarray(splits[last][0]), np.asarray(splits[last][1])
    matrix = confusion(y_true, y_pred, len(label_names))
    np.savetxt(run.path / "confusion_matrix.csv", matrix, fmt="%d", delimiter=",")
    png = run.path / "confusion_matrix.png"
    if len(label_names) <= MAX_CLASSES_FOR_MATRIX:
        plot_confusion_matrix(matrix, label_names, png, title=f"Confusion matrix ({last})")
    else:
        from transferlab.reporting.confusions import plot_top_confusions

        plot_top_confusions(matrix, label_names, png)
    tracker.log_image(f"{last}/confusion_matrix", png, step)
    return metrics
