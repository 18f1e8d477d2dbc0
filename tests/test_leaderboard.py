"""Known answers for the leaderboard's statistics, and a leaderboard read from a real suite study."""

import numpy as np
import pytest

from transferlab.reporting import leaderboard as lb


def test_t_interval_known_answer():
    mean, low, high = lb.t_interval([0.6, 0.7, 0.8])
    # sd = 0.1, t(0.975, 2) = 4.302653, half = 4.302653 * 0.1 / sqrt(3) = 0.248414
    assert mean == pytest.approx(0.7)
    assert (low, high) == pytest.approx((0.7 - 0.248414, 0.7 + 0.248414), abs=1e-6)
    assert lb.t_interval([0.5]) == (0.5, 0.5, 0.5)


def test_mean_over_tasks_combines_half_widths():
    mean, low, high = lb.mean_over_tasks([(0.6, 0.5, 0.7), (0.8, 0.8, 0.8)])
    assert mean == pytest.approx(0.7)
    assert high - mean == pytest.approx(0.1 / 2)  # sqrt(0.1^2 + 0) / 2


def test_ranks_and_average_rank_interval():
    scores = np.array([[0.9, 0.8, 0.7], [0.5, 0.8, 0.9], [0.1, 0.2, 0.3]])
    assert lb.ranks(scores).tolist() == [[1, 1.5, 2], [2, 1.5, 1], [3, 3, 3]]
    ranked = lb.average_rank(scores, n_resamples=500)
    assert ranked[0][0] == pytest.approx(1.5) and ranked[2] == (3.0, 3.0, 3.0)  # always last: no width
    assert ranked[0][1] < 1.5 < ranked[0][2]


def test_minimum_detectable_effect_known_answer():
    # (1.959964 + 0.841621) * sqrt(2 * 0.25 / 1000) = 0.062645
    assert lb.minimum_detectable_effect(0.5, 1000) == pytest.approx(0.062645, abs=1e-6)


def test_tied_group_with_holm():
    rng = np.random.default_rng(0)
    best = rng.random(400) < 0.9
    close = best.copy()
    close[:6] = ~close[:6]  # a few discordant examples: not different
    worse = rng.random(400) < 0.5
    means = {"best": best.mean(), "close": close.mean(), "worse": worse.mean()}
    found, tied, adjusted = lb.tied_with_best({"best": best, "close": close, "worse": worse}, means)
    assert found == "best" and tied == {"best", "close"}
    assert adjusted["worse"] < 0.05 <= adjusted["close"]


def test_summary_formats():
    assert lb.mteb_format([0.5, 0.6, 0.7]) == "60.00"
    assert lb.setfit_format([0.5, 0.6, 0.7, 0.8]) == "65.0 (IQR 15.0)"
