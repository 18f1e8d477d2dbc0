"""Per-example predictions on disk: ``predictions/<method>.jsonl``, one JSON object per example and split.

Fields: ``split``, ``id`` (row index in the split), ``example`` (the text, or the image path, when
known), ``label`` and ``prediction`` (class names), ``probability`` (of the predicted class),
``label_probability`` (of the true label, 6 significant digits, so NLL and, for two classes, the
Brier score are exact; files written before schema version 2 lack it) and, for more than two
classes, ``top5`` (``[[name, probability], ...]``). Scores that are not probabilities (logits,
decision values, log-probabilities) are turned into probabilities with a softmax.
``transferlab predict`` prints the same fields (without ``label`` and ``label_probability``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from transferlab.tracking.files import atomic_write

FOLDER = "predictions"


def probabilities(scores: np.ndarray) -> np.ndarray:
    """Rows that already are distributions stay as they are; anything else goes through a softmax."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.min() >= 0 and np.allclose(scores.sum(axis=1), 1.0, atol=1e-4):
        return scores
    finite = np.where(np.isfinite(scores), scores, -np.inf)
    shifted = np.exp(finite - finite.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def one_hot(y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    out = np.zeros((len(y_pred), n_classes))
    out[np.arange(len(y_pred)), y_pred] = 1.0
    return out


def prediction_record(index: int, example, probs: np.ndarray, label_names: Sequence[str],
                      predicted: int | None = None, label: int | None = None) -> dict:
    """One example's ``id``, ``example``, ``prediction``, ``probability``, ``label_probability`` (when the
    true ``label`` is given) and (more than 2 classes) ``top5``; ``predicted`` defaults to the most probable class."""
    predicted = int(np.argmax(probs)) if predicted is None else int(predicted)
    row = {"id": index, "example": example, "prediction": label_names[predicted],
           "probability": round(float(probs[predicted]), 6)}
    if label is not None:
        row["label_probability"] = float(f"{float(probs[int(label)]):.6g}")
    if len(label_names) > 2:
        row["top5"] = [[label_names[int(j)], round(float(probs[j]), 6)]
                       for j in np.argsort(-probs, kind="stable")[:5]]
    return row


def prediction_rows(split: str, y_true: Sequence[int], y_pred: Sequence[int], scores: np.ndarray | None,
                    label_names: Sequence[str], examples: Sequence[str] | None = None) -> Iterator[dict]:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    probs = probabilities(scores) if scores is not None else one_hot(y_pred, len(label_names))
    for i in range(len(y_true)):
        record = prediction_record(i, examples[i] if examples is not None else None, probs[i], label_names,
                                   y_pred[i], label=y_true[i] if scores is not None else None)
        yield {"split": split, "label": label_names[int(y_true[i])], **record}


def write_predictions(run_dir: str | Path, method: str, splits: dict[str, tuple], label_names: Sequence[str],
                      examples: dict[str, Sequence[str]] | None = None) -> Path:
    """``<run>/predictions/<method>.jsonl`` for every split in ``splits`` (``(y_true, y_pred[, scores])``)."""
    folder = Path(run_dir) / FOLDER
    folder.mkdir(exist_ok=True)
    path = folder / f"{method}.jsonl"
    lines = [json.dumps(row, ensure_ascii=False) + "\n"
             for split, (y_true, y_pred, *rest) in splits.items()
             for row in prediction_rows(split, y_true, y_pred, rest[0] if rest else None, label_names,
                                        (examples or {}).get(split))]
    atomic_write(path, "".join(lines))  # a random exclusive temporary name: no link at a guessable name is followed
    return path


def read_predictions(run_dir: str | Path, method: str) -> list[dict]:
    """The rows a run wrote for ``method`` (``[]`` when it wrote none)."""
    path = Path(run_dir) / FOLDER / f"{method}.jsonl"
    if not path.is_file():
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
