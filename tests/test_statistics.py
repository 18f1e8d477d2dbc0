"""The statistics against cases whose answer is known: Wilson, binomtest, scikit-learn, Holm by hand (McNemar's
exact test and Holm now come from statsmodels: the same figures as the hand-written copies they replaced)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import f1_score

from transferlab.errors import TransferlabError
from transferlab.evaluation.statistics import (accuracy_interval, f1_interval, holm, macro_f1, mcnemar_p,
                                               paired_comparison, relation_to, seeds_interval, split_intervals)


def correct_vector(n: int, accuracy: float, seed: int = 0) -> np.ndarray:
    out = np.zeros(n, dtype=bool)
    out[:round(accuracy * n)] = True
    return np.random.default_rng(seed).permutation(out)


def test_accuracy_interval_agrees_with_wilson_for_1066_at_77_percent():
    correct = correct_vector(1066, 0.77)
    low, high = accuracy_interval(correct)
    wilson = stats.binomtest(int(correct.sum()), correct.size).proportion_ci(0.95, method="wilson")
    assert abs(low - wilson.low) < 0.005 and abs(high - wilson.high) < 0.005
    assert low < correct.mean() < high


def test_intervals_are_reproducible_with_the_same_seed_and_move_with_another():
    correct = correct_vector(500, 0.6, seed=3)
    assert accuracy_interval(correct, seed=7) == accuracy_interval(correct, seed=7)
    assert accuracy_interval(correct, seed=7) != accuracy_interval(correct, seed=8)
    y_true = np.random.default_rng(1).integers(0, 4, 300)
    y_pred = np.where(np.random.default_rng(2).random(300) < 0.7, y_true, 0)
    assert f1_interval(y_true, y_pred, seed=5) == f1_interval(y_true, y_pred, seed=5)


def test_wider_confidence_gives_a_wider_interval():
    correct = correct_vector(400, 0.8)
    low90, high90 = accuracy_interval(correct, confidence=0.90)
    low99, high99 = accuracy_interval(correct, confidence=0.99)
    assert low99 < low90 and high99 > high90


def test_macro_f1_matches_scikit_learn_including_absent_classes():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 6, 400)
    y_pred = np.where(rng.random(400) < 0.5, y_true, rng.integers(0, 7, 400))   # class 6 only predicted
    labels = np.arange(8)                                                         # class 7 nowhere
    from transferlab.evaluation.statistics import _codes
    t, p, n_labels = _codes(y_true, y_pred, labels)
    expected = f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
    assert macro_f1(t, p, n_labels) == pytest.approx(expected, abs=1e-12)
    low, high = f1_interval(y_true, y_pred, labels=labels)
    assert low < expected < high


def test_mcnemar_p_is_binomtest_on_the_discordant_pairs_of_a_hand_made_pair():
    # 10 examples both right, 2 both wrong, 7 only A right, 1 only B right.
    a = np.array([True] * 10 + [False] * 2 + [True] * 7 + [False] * 1)
    b = np.array([True] * 10 + [False] * 2 + [False] * 7 + [True] * 1)
    result = paired_comparison(a, b)
    assert (result["a_only"], result["b_only"], result["n"]) == (7, 1, 20)
    assert result["mcnemar_p"] == pytest.approx(stats.binomtest(7, 8, 0.5).pvalue, rel=1e-12)
    assert result["mcnemar_p"] == pytest.approx(2 * (1 + 8) / 2 ** 8, rel=1e-12)  # by hand: 2 P(X <= 1)
    assert result["difference"] == pytest.approx(0.3)
    assert result["ci_low"] <= 0.3 <= result["ci_high"]


def test_mcnemar_p_from_statsmodels_equals_the_old_binomtest_on_every_small_table_and_hand_cases():
    # statsmodels' exact McNemar replaced binomtest(a_only, a_only + b_only, 0.5): the same p-values.
    for a_only in range(25):
        for b_only in range(25):
            expected = stats.binomtest(a_only, a_only + b_only, 0.5).pvalue if a_only + b_only else 1.0
            assert mcnemar_p(a_only, b_only) == pytest.approx(expected, rel=1e-12, abs=0)
    assert mcnemar_p(5, 5) == 1.0                                  # balanced discordance: capped at 1
    assert mcnemar_p(0, 10) == pytest.approx(2 / 2 ** 10, rel=1e-12)  # by hand: 2 P(X = 0)
    assert mcnemar_p(1200, 1300) == pytest.approx(stats.binomtest(1200, 2500, 0.5).pvalue, rel=1e-12)
    assert mcnemar_p(0, 2000) == stats.binomtest(0, 2000).pvalue == 0.0  # both underflow alike


def test_paired_comparison_of_identical_methods_is_exactly_zero_with_p_one():
    a = correct_vector(100, 0.7)
    result = paired_comparison(a, a)
    assert (result["difference"], result["ci_low"], result["ci_high"], result["mcnemar_p"]) == (0, 0, 0, 1.0)
    assert mcnemar_p(0, 0) == 1.0


def test_paired_interval_is_narrower_than_independent_intervals_for_correlated_methods():
    a = correct_vector(2000, 0.70, seed=1)
    b = a.copy()
    b[np.flatnonzero(~a)[:60]] = True            # B fixes 60 of A's mistakes, nothing else changes
    result = paired_comparison(b, a)
    assert result["difference"] == pytest.approx(0.03)
    assert result["ci_low"] > 0                  # clearly above, though the separate intervals overlap
    low_a, high_a = accuracy_interval(a)
    low_b, _ = accuracy_interval(b)
    assert low_b < high_a


def test_paired_comparison_refuses_different_lengths():
    with pytest.raises(TransferlabError, match="same examples"):
        paired_comparison([True, False], [True])


def test_seeds_interval_accounts_for_seed_spread_and_test_noise():
    base = correct_vector(1000, 0.75, seed=0)
    same = seeds_interval([base, base, base])
    assert same["sd"] == 0 and same["mean"] == pytest.approx(0.75)
    low, high = accuracy_interval(base)
    assert same["ci_low"] == pytest.approx(low, abs=0.01) and same["ci_high"] == pytest.approx(high, abs=0.01)
    spread = seeds_interval([correct_vector(1000, acc, seed=s) for s, acc in enumerate((0.70, 0.75, 0.80))])
    assert spread["sd"] == pytest.approx(0.05)
    assert spread["ci_high"] - spread["ci_low"] > same["ci_high"] - same["ci_low"] + 0.02
    assert seeds_interval([base, base], seed=4) == seeds_interval([base, base], seed=4)


def test_seeds_interval_needs_matched_examples():
    with pytest.raises(TransferlabError, match="same examples"):
        seeds_interval([[True, False], [True]])


def test_holm_matches_the_hand_computed_step_down():
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> monotone 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])   # 0.5*2 = 1.0, then max(1.0, 0.9*1)
    assert holm([]).size == 0
    # ties: 0.01*3 = 0.03, 0.01*2 = 0.02 -> 0.03, 0.04*1 = 0.04
    assert holm([0.01, 0.04, 0.01]) == pytest.approx([0.03, 0.04, 0.03])
    # 0.001*3 = 0.003, 0.02*2 = 0.04, 0.3*1 = 0.3; one p-value is its own adjustment
    assert holm([0.3, 0.001, 0.02]) == pytest.approx([0.3, 0.003, 0.04])
    assert holm([0.2]) == pytest.approx([0.2])


def test_relation_to_a_reference_point():
    assert relation_to(0.842, 0.87, 0.90) == "above"
    assert relation_to(0.842, 0.80, 0.83) == "below"
    assert relation_to(0.842, 0.83, 0.86) == "contains"


def test_split_intervals_records_every_figure_and_its_method():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 3, 200)
    y_pred = np.where(rng.random(200) < 0.8, y_true, 0)
    out = split_intervals(y_true, y_pred, labels=[0, 1, 2], topk_correct={"top5_accuracy": np.ones(200, bool)})
    assert set(out) == {"accuracy", "f1", "top5_accuracy", "confidence", "method", "n_resamples", "seed"}
    assert out["top5_accuracy"] == [1.0, 1.0]
    assert out["accuracy"][0] < (y_true == y_pred).mean() < out["accuracy"][1]


def test_bad_options_are_one_line_errors():
    with pytest.raises(TransferlabError, match="confidence"):
        accuracy_interval([True, False], confidence=1.5)
    with pytest.raises(TransferlabError, match="empty"):
        accuracy_interval([])


def test_seeds_difference_is_paired_by_example_and_centred_on_the_difference_of_means():
    from transferlab.evaluation.statistics import seeds_difference

    base = correct_vector(1500, 0.70, seed=2)
    better = []
    for s in range(3):  # each seed fixes 45 (3%) of the base's mistakes, different ones per seed
        b = base.copy()
        b[np.flatnonzero(~base)[s * 45:(s + 1) * 45]] = True
        better.append(b)
    result = seeds_difference(better, [base, base, base])
    assert result["difference"] == pytest.approx(0.03)
    assert 0 < result["ci_low"] < 0.03 < result["ci_high"] < 0.06
    assert result["n_seeds"] == (3, 3) and result["n"] == 1500
    with pytest.raises(TransferlabError, match="same examples"):
        seeds_difference([[True, False]], [[True, False, True]])
