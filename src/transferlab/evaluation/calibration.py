"""Can a method's probabilities be trusted? Expected calibration error, Brier score, NLL, temperature scaling.

- ECE is top-label: the probability of the predicted class against whether the prediction is right,
  in ``N_BINS`` = 15 equal-width bins ``(i/15, (i+1)/15]`` (a confidence of 0 falls in the first bin):
  ``ECE = sum_b |B_b| / n * |accuracy(B_b) - mean confidence(B_b)|``.
- Brier is the multi-class score: the mean over examples of ``sum_c (p_c - [y = c])^2`` (0 is perfect,
  2 the worst; for two classes it is twice the binary ``mean (p_1 - y)^2``); it needs the whole distribution.
- NLL is ``-mean(log p_y)``, the probability of the true label clipped at :data:`EPS`.
- Temperature scaling divides the log-probabilities by one ``T > 0`` fitted by minimising the NLL on
  validation (``scipy.optimize.minimize_scalar`` over ``log T``); a positive ``T`` keeps every
  example's ranking of classes, so predictions and accuracy do not change.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

from transferlab.errors import TransferlabError

N_BINS = 15
EPS = 1e-15
TEMPERATURE_BOUNDS = (0.05, 20.0)  # where fit_temperature searches; a fit at either end is a bound, not an optimum
METHOD = (f"top-label ECE over {N_BINS} equal-width bins; multi-class Brier score (summed over classes, so twice "
          f"the binary score for two classes); NLL of the true label (probabilities clipped at {EPS:g})")


def bin_index(confidence: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """The bin of each confidence: ``(i/n, (i+1)/n]`` is bin i; 0 belongs to bin 0."""
    return np.clip(np.ceil(np.asarray(confidence, dtype=np.float64) * n_bins).astype(np.int64) - 1, 0, n_bins - 1)


def reliability(confidence: Sequence[float], correct: Sequence[bool], n_bins: int = N_BINS) -> dict:
    """Per bin: ``count``, mean ``confidence`` and ``accuracy`` (NaN in empty bins), and the bin ``edges``."""
    confidence, correct = np.asarray(confidence, dtype=np.float64), np.asarray(correct, dtype=np.float64)
    if confidence.shape != correct.shape or confidence.size == 0:
        raise TransferlabError(f"calibration needs one confidence per prediction: got {confidence.size} "
                               f"confidences for {correct.size} predictions")
    if confidence.min() < 0 or confidence.max() > 1 + 1e-9:
        raise TransferlabError("confidences must be probabilities in [0, 1]: pass softmax outputs, not logits")
    bins = bin_index(confidence, n_bins)
    count = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(bins, confidence, n_bins) / count
        accuracy = np.bincount(bins, correct, n_bins) / count
    return {"count": count, "confidence": mean_confidence, "accuracy": accuracy,
            "edges": np.linspace(0.0, 1.0, n_bins + 1)}


def expected_calibration_error(confidence: Sequence[float], correct: Sequence[bool], n_bins: int = N_BINS) -> float:
    table = reliability(confidence, correct, n_bins)
    filled = table["count"] > 0
    gaps = np.abs(table["accuracy"][filled] - table["confidence"][filled])
    return float((table["count"][filled] * gaps).sum() / table["count"].sum())


def brier_score(probs: np.ndarray, y_true: Sequence[int]) -> float:
    probs, y_true = np.asarray(probs, dtype=np.float64), np.asarray(y_true)
    target = np.zeros_like(probs)
    target[np.arange(len(y_true)), y_true] = 1.0
    return float(((probs - target) ** 2).sum(axis=1).mean())


def nll(label_probability: Sequence[float]) -> float:
    """``-mean(log p_y)`` from the probability each example gave its true label."""
    p = np.clip(np.asarray(label_probability, dtype=np.float64), EPS, 1.0)
    return float(-np.log(p).mean())


def calibration_record(probs: np.ndarray, y_true: Sequence[int], y_pred: Sequence[int] | None = None) -> dict:
    """The ``calibration`` entry of a SPLIT in ``metrics.json`` from the full ``n x classes`` distribution;
    ``y_pred`` (default: the most probable class) is the prediction whose probability ECE bins."""
    probs, y_true = np.asarray(probs, dtype=np.float64), np.asarray(y_true)
    y_pred = probs.argmax(axis=1) if y_pred is None else np.asarray(y_pred)
    rows = np.arange(len(y_true))
    return {"ece": expected_calibration_error(probs[rows, y_pred], y_pred == y_true),
            "brier": brier_score(probs, y_true), "nll": nll(probs[rows, y_true]), "n_bins": N_BINS,
            "method": METHOD}


def log_probabilities(probs: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(np.asarray(probs, dtype=np.float64))


def scaled(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log p / T)``: the distribution after temperature scaling (zeros stay zero)."""
    return np.exp(log_softmax(log_probabilities(probs) / temperature, axis=1))


def fit_temperature(probs: np.ndarray, y_true: Sequence[int]) -> float:
    """The ``T`` in ``TEMPERATURE_BOUNDS`` ([0.05, 20]) that minimises the NLL of ``softmax(log p / T)`` on these (validation) examples."""
    logits, y_true = log_probabilities(probs), np.asarray(y_true)
    if len(y_true) == 0:
        raise TransferlabError("temperature scaling needs validation examples: evaluation.calibrate=false")
    rows = np.arange(len(y_true))

    def loss(log_t: float) -> float:
        picked = log_softmax(logits / np.exp(log_t), axis=1)[rows, y_true]
        return float(-np.maximum(picked, np.log(EPS)).mean())

    result = minimize_scalar(loss, bounds=tuple(np.log(TEMPERATURE_BOUNDS)), method="bounded",
                             options={"xatol": 1e-4})
    return float(np.exp(result.x))


def calibrated_record(temperature: float, probs: np.ndarray, y_true: Sequence[int],
                      y_pred: Sequence[int] | None = None) -> dict:
    """The ``calibrated`` entry: ECE, NLL and Brier of ``probs`` after scaling by ``temperature`` (and
    ``at_bound``, the bound of ``TEMPERATURE_BOUNDS`` the fit stopped at, when it did)."""
    record = calibration_record(scaled(probs, temperature), y_true, y_pred)
    out = {"temperature": temperature, "ece": record["ece"], "nll": record["nll"], "brier": record["brier"],
           "fitted_on": "validation"}
    bound = temperature_bound(temperature)
    return {**out, "at_bound": bound} if bound is not None else out


def temperature_bound(temperature: float) -> float | None:
    """The bound of ``TEMPERATURE_BOUNDS`` that ``temperature`` sits at (within the fit's tolerance), else None."""
    for bound in TEMPERATURE_BOUNDS:
        if abs(np.log(temperature) - np.log(bound)) < 1e-3:
            return bound
    return None


def temperature_note(method: str, temperature: float, n_validation: int | None = None) -> str:
    """The note of a temperature fitted at a bound: the optimum lies outside the range searched."""
    on = f" on {n_validation} validation examples" if n_validation else " on validation"
    return (f"{method}: the temperature fitted{on} is at the bound of its range, T = {temperature:.3g} "
            f"(searched: {TEMPERATURE_BOUNDS[0]:g} to {TEMPERATURE_BOUNDS[1]:g}): the validation split cannot "
            f"pin it down (too few or too easy examples), so the temperature-scaled figures are unreliable")


def rows_calibration(rows: Sequence[dict], n_classes: int) -> dict:
    """Calibration from ``predictions/<method>.jsonl`` rows of one split (any file version).

    ECE needs only each row's ``probability``. NLL needs the true label's probability: the row's
    ``label_probability`` (files written since schema 2), or, for two classes, ``probability`` or its
    complement. Brier needs the whole distribution, known from the rows for two classes only; otherwise
    it is ``None`` (read it from ``metrics.json`` where the run recorded it).
    """
    confidence = np.array([r["probability"] for r in rows], dtype=np.float64)
    correct = np.array([r["label"] == r["prediction"] for r in rows])
    record = {"ece": expected_calibration_error(confidence, correct), "brier": None, "nll": None,
              "n_bins": N_BINS, "method": METHOD, "source": "predictions file"}
    if all("label_probability" in r for r in rows):
        label_p = np.array([r["label_probability"] for r in rows], dtype=np.float64)
    elif n_classes == 2:
        label_p = np.where(correct, confidence, 1.0 - confidence)
    else:
        record["unavailable"] = ("NLL and Brier need the true label's probability, which predictions files written "
                                 "before schema 2 do not store (only the predicted class's)")
        return record
    record["nll"] = nll(label_p)
    if n_classes == 2:
        record["brier"] = float((2 * (1.0 - label_p) ** 2).mean())
    else:
        record["unavailable"] = ("Brier needs the whole distribution, which a predictions file of more than two "
                                 "classes does not hold (runs since schema 2 record it in metrics.json)")
    return record
