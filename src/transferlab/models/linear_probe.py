"""Linear probe: multinomial logistic regression on frozen image embeddings, C chosen on validation.

The C search is ``models.classifiers.select_classifier`` (standardised features, warm-started over
ascending C, ties to the smaller C); this module adds the probe's settings and its predictions over
all classes.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from transferlab.models.classifiers import ClassifierConfig, select_classifier


def fit_linear_probe(train: tuple[np.ndarray, np.ndarray], validation: tuple[np.ndarray, np.ndarray],
                     c_grid: Sequence[float], max_iter: int = 300, seed: int = 42) -> tuple[object, dict]:
    """(fitted pipeline, C-search record) for ``(features, labels)`` pairs."""
    cfg = ClassifierConfig(name="logreg", standardize=True, C_grid=list(c_grid), max_iter=max_iter,
                           warm_start=True)
    return select_classifier(cfg, *train, *validation, seed=seed)


def probe_predictions(model, x: np.ndarray, y: np.ndarray) -> tuple:
    """``(y_true, y_pred, scores)`` over all classes (columns of classes absent from training are -inf)."""
    proba = model.predict_log_proba(x)
    classes = model.classes_
    n_classes = max(int(classes.max()) + 1, int(np.max(y)) + 1)
    full = np.full((len(x), n_classes), -np.inf)
    full[:, classes] = proba
    return y, full.argmax(1), full
