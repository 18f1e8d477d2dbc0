"""Classification metrics in the one format every experiment writes to ``metrics.json``."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, precision_recall_fscore_support


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], label_names: Sequence[str],
                           scores: np.ndarray | None = None, top_k: Sequence[int] = ()) -> dict:
    """Accuracy, macro precision/recall/F1, per-class figures and ``n_examples``.

    Macro scores average over the classes present in ``y_true``: a class with no example here has no
    recall to measure, and averaging in its 0 would score a split by what it lacks. When some are absent,
    ``missing_classes`` names them and ``macro_over`` says so (their per-class entries stay, support 0).
    ``scores`` (n_examples x n_classes) adds ``top{k}_accuracy`` for each k in ``top_k``.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in length: {len(y_true)} vs {len(y_pred)}")
    labels = np.arange(len(label_names))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0)
    present = support > 0 if support.any() else np.ones_like(support, bool)
    out = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "precision": float(precision[present].mean()),
        "recall": float(recall[present].mean()),
        "f1": float(f1[present].mean()),
        "n_examples": int(len(y_true)),
    }
    if not present.all():
        out["missing_classes"] = [str(label_names[i]) for i in np.flatnonzero(~present)]
        out["macro_over"] = f"the {int(present.sum())} of {len(label_names)} classes present"
    if scores is not None:
        ranked = np.argsort(-np.asarray(scores), axis=1)
        for k in top_k:
            out[f"top{k}_accuracy"] = float((ranked[:, :k] == y_true[:, None]).any(axis=1).mean())
    out["per_class"] = {
        name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for name, p, r, f, s in zip(label_names, precision, recall, f1, support)
    }
    return out


def split_accuracy(predictions: tuple) -> float:
    """Top-1 accuracy of a ``(y_true, y_pred[, scores])`` tuple, the shape every experiment's predictions take."""
    return float((np.asarray(predictions[0]) == np.asarray(predictions[1])).mean())


def report_text(y_true: Sequence[int], y_pred: Sequence[int], label_names: Sequence[str]) -> str:
    return classification_report(y_true, y_pred, labels=np.arange(len(label_names)),
                                 target_names=list(label_names), digits=4, zero_division=0)


def confusion(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> np.ndarray:
    return confusion_matrix(y_true, y_pred, labels=np.arange(n_classes))
