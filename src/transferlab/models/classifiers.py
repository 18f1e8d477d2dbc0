"""Classical classifiers on frozen features, with C chosen on the validation split: the one C search.

``select_classifier`` fits one pipeline per C on train, scores each on validation and keeps the
best; ties go to the smaller C (the more regularised, simpler model). The test split is never
seen here: the caller scores the chosen model on it once. Fits run in parallel threads, or, for
``logreg`` with ``warm_start``, one after the other in ascending C, each starting from the last
(strongly regularised fits converge fast and give the next a good start: the linear probe's way).
"""

from __future__ import annotations

import copy
import os
import warnings
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
from joblib import Parallel, delayed
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, LinearSVC

from transferlab.config import check_config, setting
from transferlab.errors import TransferlabError

TIE_RULE = "highest validation accuracy; ties go to the smaller C (stronger regularisation)"


@dataclass
class ClassifierConfig:
    SECTION: ClassVar[str] = "classifier"
    name: Literal["svc", "linear_svc", "logreg"] = setting("svc", "svc (RBF kernel by default), linear_svc or logreg")
    standardize: bool = setting(True, "scale each feature to zero mean and unit variance before fitting")
    C: float = setting(1.0, "the regularisation strength used as is when C_grid is empty or null (setting C "
                            "clears the preset's C_grid)", replaces=("C_grid",))
    C_grid: list[float] | None = setting(help="C values tried, the best chosen on validation (ties: the smaller C)",
                                         factory=lambda: [0.1, 0.3, 1.0, 3.0, 10.0])
    kernel: Literal["rbf", "linear", "poly", "sigmoid"] = setting("rbf", "svc only: the kernel")
    max_iter: int = setting(5000, "linear_svc and logreg: solver iterations", at_least=1)
    n_jobs: int = setting(-1, "grid points fitted in parallel threads (-1: one per core)")
    warm_start: bool = setting(False, "logreg only: fit C ascending, each fit starting from the previous one")

    def __post_init__(self) -> None:
        check_config(self)

    def validate(self, prefix: str = "classifier") -> None:
        for c in [self.C, *(self.C_grid or [])]:
            if c <= 0:
                raise TransferlabError(f"{prefix} C values must be positive; got {c}")
        if self.warm_start and self.name != "logreg":
            raise TransferlabError(f"{prefix}.warm_start applies to logreg only; got name={self.name}")


def make_classifier(cfg: ClassifierConfig, C: float, seed: int = 0) -> Pipeline:
    if cfg.name == "svc":
        model = SVC(C=C, kernel=cfg.kernel, cache_size=1000, random_state=seed)
    elif cfg.name == "linear_svc":
        model = LinearSVC(C=C, max_iter=cfg.max_iter, random_state=seed)
    else:
        model = LogisticRegression(C=C, max_iter=cfg.max_iter, random_state=seed)
    steps = [("scale", StandardScaler())] if cfg.standardize else []
    return Pipeline(steps + [("clf", model)])


def select_classifier(cfg: ClassifierConfig, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray,
                      y_val: np.ndarray, seed: int = 0) -> tuple[Pipeline, dict]:
    """The fitted pipeline with the best validation accuracy over ``cfg.C_grid``, and the search record."""
    grid = sorted(set(cfg.C_grid)) if cfg.C_grid else [cfg.C]
    fit = fit_warm_started if cfg.warm_start else fit_in_parallel
    fitted = fit(cfg, grid, seed, x_train, y_train, x_val, y_val)
    scores = [score for _, score in fitted]
    best_score = max(scores)
    best = fitted[scores.index(best_score)][0]  # first maximum in the ascending grid: the smaller C
    record = {"classifier": cfg.name, "standardize": cfg.standardize, "grid_C": grid,
              "validation_accuracy": scores, "chosen_C": grid[scores.index(best_score)],
              "rule": TIE_RULE if len(grid) > 1 else "fixed C (no search)"}
    return best, record


def fit_in_parallel(cfg: ClassifierConfig, grid: list[float], seed: int, x_train: np.ndarray, y_train: np.ndarray,
                    x_val: np.ndarray, y_val: np.ndarray) -> list[tuple[Pipeline, float]]:
    """One independent pipeline per C, fitted in threads (libsvm and liblinear release the GIL, so no
    process start-up or copying of the features)."""
    jobs = min(len(grid), os.cpu_count() or 1) if cfg.n_jobs == -1 else max(1, min(cfg.n_jobs, len(grid)))
    return Parallel(n_jobs=jobs, prefer="threads")(
        delayed(fit_and_score)(cfg, C, seed, x_train, y_train, x_val, y_val) for C in grid)


def fit_warm_started(cfg: ClassifierConfig, grid: list[float], seed: int, x_train: np.ndarray,
                     y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray) -> list[tuple[Pipeline, float]]:
    """One logistic regression refitted for each C in ascending order, warm-started from the previous fit;
    the scaler is fitted once. A fit that stops at ``max_iter`` is kept (warm starts make that common)."""
    from sklearn.exceptions import ConvergenceWarning

    scaler = StandardScaler().fit(x_train) if cfg.standardize else None
    tx, vx = (scaler.transform(x_train), scaler.transform(x_val)) if scaler else (x_train, x_val)
    clf = LogisticRegression(max_iter=cfg.max_iter, warm_start=True, random_state=seed)
    fitted = []
    for C in grid:
        clf.C = C
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(tx, y_train)
        steps = ([("scale", scaler)] if scaler else []) + [("clf", copy.deepcopy(clf))]
        fitted.append((Pipeline(steps), float((clf.predict(vx) == y_val).mean())))
    return fitted


def fit_and_score(cfg: ClassifierConfig, C: float, seed: int, x_train: np.ndarray, y_train: np.ndarray,
                  x_val: np.ndarray, y_val: np.ndarray) -> tuple[Pipeline, float]:
    pipe = make_classifier(cfg, C, seed).fit(x_train, y_train)
    return pipe, float((pipe.predict(x_val) == y_val).mean())


def predict_proba(pipe: Pipeline, x: np.ndarray) -> np.ndarray:
    """Class probabilities where the model has them; otherwise a softmax over decision scores."""
    if hasattr(pipe, "predict_proba") and hasattr(pipe[-1], "predict_proba") and (
            not isinstance(pipe[-1], SVC) or pipe[-1].probability):
        return pipe.predict_proba(x)
    scores = pipe.decision_function(x)
    if scores.ndim == 1:
        scores = np.stack([-scores, scores], axis=1) / 2
    scores = scores - scores.max(axis=1, keepdims=True)
    exp = np.exp(scores)
    return exp / exp.sum(axis=1, keepdims=True)


# --- saving: skops, a format that holds data only (no pickle, so no code runs on load) ---------------------------

CLASSIFIER_FILE = "classifier.skops"
PICKLE_FILE = "classifier.joblib"  # written by transferlab before skops: read only behind --trust-pickle
# What make_classifier and fit_warm_started build. skops trusts these (and numpy arrays, builtins) by default;
# they are named here so that a file holding anything else is refused, whatever skops' defaults become.
TRUSTED_TYPES = ["sklearn.pipeline.Pipeline", "sklearn.preprocessing._data.StandardScaler", "sklearn.svm._classes.SVC",
                 "sklearn.svm._classes.LinearSVC", "sklearn.linear_model._logistic.LogisticRegression"]
TRUSTED_CLASSES = (Pipeline, StandardScaler, SVC, LinearSVC, LogisticRegression)


def save_classifier(bundle: dict, path) -> None:
    """``bundle`` (the fitted pipeline and plain settings) as a skops file."""
    import skops.io as sio

    sio.dump(bundle, path)


def load_classifier_file(path) -> dict:
    """A bundle saved by :func:`save_classifier`: refused with one line if it holds any type outside
    ``TRUSTED_TYPES`` and skops' safe defaults (nothing is constructed before the check)."""
    import zipfile

    import skops.io as sio

    try:
        untrusted = [t for t in sio.get_untrusted_types(file=path) if t not in TRUSTED_TYPES]
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ValueError(f"not a skops file ({exc.__class__.__name__})") from None
    if untrusted:
        raise TransferlabError(f"{path} holds types transferlab never saves ({', '.join(untrusted[:5])}): it was "
                               f"not written by transferlab features, so it is not loaded; rerun the experiment")
    bundle = sio.load(path, trusted=TRUSTED_TYPES)
    steps = bundle.get("pipeline").steps if isinstance(bundle, dict) and isinstance(bundle.get("pipeline"), Pipeline) \
        else None
    if steps is None or not all(isinstance(step, TRUSTED_CLASSES) for _, step in steps):
        raise TransferlabError(f"{path} does not hold a transferlab classifier bundle: rerun the experiment")
    return bundle
