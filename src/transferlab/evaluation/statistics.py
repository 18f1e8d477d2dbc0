"""Uncertainty of the figures we report: bootstrap intervals, paired tests between methods, Holm's correction.

Every interval here is a seeded percentile bootstrap over test examples, computed by
``scipy.stats.bootstrap(method="percentile")`` with a vectorised statistic (so 2,000 resamples of
10,000 examples cost a fraction of a second). Resamples are drawn in batches of :data:`BATCH` to bound
memory. The same seed gives the same interval.

- :func:`accuracy_interval`: the interval of the mean of a boolean "correct" vector (accuracy, top-5).
- :func:`f1_interval`: macro F1, resampling (true, predicted) pairs together.
- :func:`paired_comparison`: two methods scored on the same examples: the accuracy difference with a
  paired-bootstrap interval (the same resampled examples for both) and McNemar's exact test
  (:func:`mcnemar_p`, statsmodels' ``mcnemar(exact=True)`` on the discordant pairs).
- :func:`seeds_interval`: several seeds of one method on one test set: mean and sd over the seeds and
  an interval for both sources of noise, from a two-way bootstrap (seeds resampled with replacement
  and, independently, test examples resampled with replacement; each replicate is the mean accuracy of
  the drawn seeds on the drawn examples). Seeds and test examples are crossed (every seed is scored on
  the same examples), so the examples are drawn once per replicate for all seeds.
  :func:`seeds_difference` compares two methods over their seeds the same way, the examples drawn
  once per replicate for both.
- :func:`holm`: Holm's step-down adjustment of a family of p-values (statsmodels' ``multipletests``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import stats

from transferlab.errors import TransferlabError

CONFIDENCE = 0.95
N_RESAMPLES = 2000
SEED = 0
BATCH = 100
METHOD = "percentile bootstrap over test examples (scipy.stats.bootstrap)"
SEEDS_METHOD = ("two-way bootstrap: seeds resampled with replacement and test examples resampled with "
                "replacement, independently, in each replicate")


def _check(confidence: float, n_resamples: int, n: int, what: str) -> None:
    if not 0 < confidence < 1:
        raise TransferlabError(f"confidence must lie in (0, 1), got {confidence!r}: use e.g. 0.95")
    if n_resamples < 1:
        raise TransferlabError(f"n_resamples must be at least 1, got {n_resamples!r}: use e.g. 2000")
    if n < 1:
        raise TransferlabError(f"{what} is empty: an interval needs at least one example")


def _bootstrap(data: tuple, statistic, confidence: float, n_resamples: int, seed: int) -> tuple[float, float]:
    """``scipy.stats.bootstrap``, percentile method, paired over the arrays in ``data``, seeded."""
    result = stats.bootstrap(data, statistic, n_resamples=n_resamples, batch=BATCH, vectorized=True,
                             paired=True, axis=-1, confidence_level=confidence, method="percentile",
                             rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def _mean(values: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(values, axis=axis)


def accuracy_interval(correct: Sequence[bool], *, confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES,
                      seed: int = SEED) -> tuple[float, float]:
    """The bootstrap interval of the share of ``True`` in ``correct`` (accuracy, or top-k accuracy)."""
    correct = np.asarray(correct, dtype=np.float64).ravel()
    _check(confidence, n_resamples, correct.size, "correct")
    if correct.min() == correct.max():  # every resample gives the same value
        return float(correct[0]), float(correct[0])
    return _bootstrap((correct,), _mean, confidence, n_resamples, seed)


def _codes(y_true: Sequence, y_pred: Sequence, labels: Sequence | None) -> tuple[np.ndarray, np.ndarray, int]:
    """Both vectors as codes 0..L-1 of ``labels`` (default: the sorted union, as scikit-learn), others as L."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise TransferlabError(f"y_true and y_pred differ in length: {len(y_true)} vs {len(y_pred)}")
    labels = np.unique(np.concatenate([y_true, y_pred])) if labels is None else np.asarray(labels)
    lookup = {value: code for code, value in enumerate(labels.tolist())}
    encode = np.vectorize(lambda value: lookup.get(value, len(labels)), otypes=[np.int64])
    return encode(y_true) if y_true.size else y_true.astype(np.int64), \
        encode(y_pred) if y_pred.size else y_pred.astype(np.int64), len(labels)


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_labels: int, axis: int = -1) -> np.ndarray:
    """Macro F1 over codes ``0..n_labels-1`` along ``axis`` (code ``n_labels``: a class outside the set).

    Per class, F1 = 2 tp / (n_true + n_predicted), 0 when the class is neither present nor predicted,
    as ``sklearn.metrics.f1_score(average="macro", zero_division=0)``; vectorised over leading axes.
    """
    y_true, y_pred = np.moveaxis(y_true, axis, -1), np.moveaxis(y_pred, axis, -1)
    shape, n = y_true.shape[:-1], y_true.shape[-1]
    y_true, y_pred = y_true.reshape(-1, n), y_pred.reshape(-1, n)
    rows, width = y_true.shape[0], n_labels + 1
    offset = np.arange(rows)[:, None] * width

    def counts(codes: np.ndarray) -> np.ndarray:
        return np.bincount(codes, minlength=rows * width).reshape(rows, width)[:, :n_labels]

    n_true, n_pred = counts((offset + y_true).ravel()), counts((offset + y_pred).ravel())
    tp = counts((offset + y_true)[y_true == y_pred])
    f1 = np.divide(2.0 * tp, n_true + n_pred, out=np.zeros(tp.shape), where=(n_true + n_pred) > 0)
    return f1.mean(axis=-1).reshape(shape)


def f1_interval(y_true: Sequence, y_pred: Sequence, *, labels: Sequence | None = None,
                confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES,
                seed: int = SEED) -> tuple[float, float]:
    """The bootstrap interval of macro F1 over ``labels`` (default: the classes seen in either vector)."""
    true_codes, pred_codes, n_labels = _codes(y_true, y_pred, labels)
    _check(confidence, n_resamples, true_codes.size, "y_true")
    if n_labels == 0:
        raise TransferlabError("labels is empty: macro F1 needs at least one class")

    def statistic(t: np.ndarray, p: np.ndarray, axis: int = -1) -> np.ndarray:
        return macro_f1(t, p, n_labels, axis)

    if np.array_equal(true_codes, pred_codes) and np.unique(true_codes).size == 1:
        value = float(macro_f1(true_codes, pred_codes, n_labels))
        return value, value
    return _bootstrap((true_codes, pred_codes), statistic, confidence, n_resamples, seed)


def mcnemar_p(a_only: int, b_only: int) -> float:
    """McNemar's exact test on the discordant pairs (``a_only`` right only in A, ``b_only`` only in B):
    ``statsmodels.stats.contingency_tables.mcnemar(exact=True)``, 2 P(X <= min) under Binomial(a_only + b_only,
    0.5), capped at 1 (the two-sided ``scipy.stats.binomtest`` at p = 0.5); 1.0 with no discordance."""
    from statsmodels.stats.contingency_tables import mcnemar  # here: statsmodels costs a run's import 0.3 s

    if a_only + b_only == 0:
        return 1.0
    return float(mcnemar(np.array([[0, int(a_only)], [int(b_only), 0]]), exact=True).pvalue)


def paired_comparison(correct_a: Sequence[bool], correct_b: Sequence[bool], *, confidence: float = CONFIDENCE,
                      n_resamples: int = N_RESAMPLES, seed: int = SEED) -> dict:
    """Method A against method B on the same examples (position i of both vectors is one example).

    ``difference`` = accuracy(A) - accuracy(B), its paired-bootstrap interval ``ci_low``/``ci_high``,
    McNemar's exact ``mcnemar_p``, ``n`` examples, ``a_only`` (A right, B wrong) and ``b_only``.
    """
    a = np.asarray(correct_a, dtype=bool).ravel()
    b = np.asarray(correct_b, dtype=bool).ravel()
    if a.shape != b.shape:
        raise TransferlabError(f"paired comparison needs the same examples: {a.size} vs {b.size} scored")
    _check(confidence, n_resamples, a.size, "correct_a")
    a_only, b_only = int((a & ~b).sum()), int((~a & b).sum())
    difference = float(a.mean() - b.mean())
    if a_only + b_only == 0:
        low = high = difference
    else:
        delta = a.astype(np.float64) - b.astype(np.float64)
        low, high = _bootstrap((delta,), _mean, confidence, n_resamples, seed)
    return {"difference": difference, "ci_low": low, "ci_high": high, "mcnemar_p": mcnemar_p(a_only, b_only),
            "n": int(a.size), "a_only": a_only, "b_only": b_only}


def _seed_matrix(correct_by_seed: Sequence[Sequence[bool]], what: str) -> np.ndarray:
    lengths = {len(np.ravel(vector)) for vector in correct_by_seed}
    correct = np.asarray(correct_by_seed, dtype=np.float64) if len(lengths) == 1 else None
    if correct is None or correct.ndim != 2:
        raise TransferlabError(f"{what} needs one equally long vector per seed, scored on the same "
                               f"examples: match the seeds' predictions by example id first")
    return correct


def two_way_replicates(groups: Sequence[np.ndarray], n_resamples: int, seed: int) -> np.ndarray:
    """``(len(groups), n_resamples)`` bootstrap replicates of each group's mean accuracy over seeds.

    Each group is a seeds x examples matrix over the same examples. Per replicate, every group's seeds
    are drawn with replacement (independently per group) and the examples once, for all groups alike
    (so differences between groups stay paired by example)."""
    n = groups[0].shape[1]
    rng = np.random.default_rng(seed)
    out = np.empty((len(groups), n_resamples))
    for start in range(0, n_resamples, BATCH):
        size = min(BATCH, n_resamples - start)
        weights = []
        for correct in groups:
            k = correct.shape[0]
            drawn = rng.integers(0, k, size=(size, k))                        # seeds, with replacement
            weights.append((drawn[:, :, None] == np.arange(k)).sum(axis=1) / k)  # each seed's share
        examples = rng.integers(0, n, size=(size, n))                       # examples, with replacement
        offset = (np.arange(size)[:, None] * n + examples).ravel()
        counts = np.bincount(offset, minlength=size * n).reshape(size, n) / n  # each example's share
        for g, correct in enumerate(groups):
            accuracy = counts @ correct.T                                    # every seed on the drawn examples
            out[g, start:start + size] = (weights[g] * accuracy).sum(axis=1)  # the drawn seeds' mean
    return out


def _percentiles(replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = (1 - confidence) / 2
    low, high = np.percentile(replicates, [100 * alpha, 100 * (1 - alpha)])
    return float(low), float(high)


def seeds_interval(correct_by_seed: Sequence[Sequence[bool]], *, confidence: float = CONFIDENCE,
                   n_resamples: int = N_RESAMPLES, seed: int = SEED) -> dict:
    """One method over several seeds, each scored on the same test examples (a seeds x examples matrix).

    Returns ``mean`` and ``sd`` (ddof=1; 0 for one seed) of the per-seed accuracies, ``ci_low``/``ci_high``
    from the two-way bootstrap described in the module docstring, ``n_seeds``, ``n`` and ``method``.
    """
    correct = _seed_matrix(correct_by_seed, "seeds_interval")
    k, n = correct.shape
    _check(confidence, n_resamples, k * n, "correct_by_seed")
    low, high = _percentiles(two_way_replicates([correct], n_resamples, seed)[0], confidence)
    accuracies = correct.mean(axis=1)
    return {"mean": float(accuracies.mean()), "sd": float(accuracies.std(ddof=1)) if k > 1 else 0.0,
            "ci_low": low, "ci_high": high, "n_seeds": int(k), "n": int(n), "method": SEEDS_METHOD,
            "confidence": confidence, "n_resamples": n_resamples, "seed": seed}


def seeds_difference(correct_a: Sequence[Sequence[bool]], correct_b: Sequence[Sequence[bool]], *,
                     confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES, seed: int = SEED) -> dict:
    """Method A against method B, each over its seeds, on the same examples: the difference of the mean
    accuracies with a two-way bootstrap interval (seeds of each method drawn independently, examples drawn
    once for both). McNemar's test applies to one pair of runs, not to seed averages: ``p_value`` is the
    bootstrap's own (:func:`bootstrap_p`)."""
    a, b = _seed_matrix(correct_a, "seeds_difference"), _seed_matrix(correct_b, "seeds_difference")
    if a.shape[1] != b.shape[1]:
        raise TransferlabError(f"seeds_difference needs the same examples: {a.shape[1]} vs {b.shape[1]} scored")
    _check(confidence, n_resamples, a.size, "correct_a")
    replicates = two_way_replicates([a, b], n_resamples, seed)
    differences = replicates[0] - replicates[1]
    low, high = _percentiles(differences, confidence)
    return {"difference": float(a.mean() - b.mean()), "ci_low": low, "ci_high": high, "n": int(a.shape[1]),
            "n_seeds": (int(a.shape[0]), int(b.shape[0])), "method": SEEDS_METHOD,
            "p_value": bootstrap_p(differences)}


def bootstrap_p(differences: np.ndarray) -> float:
    """The two-sided p-value of "no difference" from bootstrap replicates of a difference: twice the smaller
    share of replicates on either side of 0, each share counted as ``(k + 1) / (n + 1)`` (never 0), capped at 1.
    It rejects at level alpha exactly when the percentile interval at 1 - alpha excludes 0."""
    n = differences.size
    below, above = int((differences <= 0).sum()), int((differences >= 0).sum())
    return float(min(1.0, 2 * (min(below, above) + 1) / (n + 1)))


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error), in the order given:
    ``statsmodels.stats.multitest.multipletests(method="holm")``."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, dtype=np.float64).ravel()
    if p.size == 0:
        return p
    return multipletests(p, method="holm")[1]


def relation_to(value: float, low: float, high: float) -> str:
    """Where a reference point ``value`` lies relative to our interval: 'above', 'below' or 'contains'."""
    if high < value:
        return "below"
    if low > value:
        return "above"
    return "contains"


def split_intervals(y_true: Sequence, y_pred: Sequence, *, labels: Sequence | None = None,
                    topk_correct: dict[str, Sequence[bool]] | None = None, confidence: float = CONFIDENCE,
                    n_resamples: int = N_RESAMPLES, seed: int = SEED) -> dict:
    """The ``intervals`` entry of a SPLIT in ``metrics.json``: accuracy, macro F1 and each top-k accuracy."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    options = {"confidence": confidence, "n_resamples": n_resamples, "seed": seed}
    out = {"accuracy": list(accuracy_interval(y_true == y_pred, **options)),
           "f1": list(f1_interval(y_true, y_pred, labels=labels, **options))}
    for name, correct in (topk_correct or {}).items():
        out[name] = list(accuracy_interval(correct, **options))
    return {**out, "confidence": confidence, "method": METHOD, "n_resamples": n_resamples, "seed": seed}
