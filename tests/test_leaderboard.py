"""Known answers for the leaderboard's statistics, its report blocks, and the leaderboard of a real plain study
(one task, two models, one seed): the tied group per K and the one-seed bootstrap cells, recomputed here."""

import csv
import importlib
import json

import numpy as np
import pytest
from scipy import stats

from transferlab.evaluation import statistics as st
from transferlab.evaluation.statistics import accuracy_interval
from transferlab.reporting import leaderboard as lb

cli = importlib.import_module("transferlab.cli.main")


def correct_vector(n, accuracy, seed=0):
    out = np.zeros(n, dtype=bool)
    out[:round(accuracy * n)] = True
    return np.random.default_rng(seed).permutation(out)


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


def test_a_one_seed_cell_has_the_bootstrap_interval_over_test_examples():
    correct = correct_vector(1000, 0.7)
    low, high = accuracy_interval(correct)  # what results.csv records for the run
    assert lb.cell_interval([0.7], [(low, high)]) == (0.7, low, high)
    # known answer: the percentile bootstrap of 700 / 1,000 lies within 0.004 of Wilson's [0.6709, 0.7276]
    wilson = stats.binomtest(700, 1000).proportion_ci(0.95, method="wilson")
    assert (low, high) == pytest.approx((wilson.low, wilson.high), abs=0.004)
    assert lb.cell_interval([0.6, 0.7, 0.8], [(0, 1)] * 3) == lb.t_interval([0.6, 0.7, 0.8])  # seeds: t
    assert lb.cell_interval([0.7], [(None, None)]) == (0.7, 0.7, 0.7)  # nothing recorded: the value alone


def column(scores, vectors, intervals=None):
    return {"metric": "accuracy", "scores": {m: {0: v} for m, v in scores.items()},
            "intervals": intervals or {}, "correct": {m: {0: v} for m, v in vectors.items()}}


def test_board_blocks_across_two_tasks_mark_best_and_tied_and_order_k():
    rng = np.random.default_rng(1)
    best = rng.random(500) < 0.85
    close, worse = best.copy(), rng.random(500) < 0.55
    close[np.flatnonzero(best)[:4]] = False  # 4 fewer right: below the best, not different from it
    vectors = {"a": best, "b": close, "c": worse}
    scores = {m: float(v.mean()) for m, v in vectors.items()}
    board = {("text", "16"): {"t1": column(scores, vectors), "t2": column(scores, vectors)},
             ("text", "4"): {"t1": column(scores, vectors)}}
    board_rows = lb.table(board)
    blocks = lb.board_blocks(board_rows)
    assert blocks[0] == ("h2", "Leaderboard across tasks")
    titles = [b[1] for b in blocks if b[0] == "h3"]
    assert titles == ["text, K = 4", "text, K = 16"]  # K as a number
    tables = [b for b in blocks if b[0] == "table"]
    assert tables[0][1] == ["method", "t1", "MTEB", "SetFit"]  # one task: no mean, no rank
    headers, rows = tables[1][1], tables[1][2]
    assert headers == ["method", "t1", "t2", "mean", "average rank", "MTEB", "SetFit"]
    by_method = {r[0]: r for r in rows}
    assert [r[0] for r in rows] == ["a", "b", "c"]  # by average rank
    assert by_method["a"][1].endswith("(best)") and by_method["b"][1].endswith("(tied)")
    assert not by_method["c"][1].endswith(")") and by_method["c"][4].startswith("3.00 [3.00, 3.00]")
    assert f"{100 * best.mean():.1f} [" in by_method["a"][1]
    md = lb.markdown(board_rows)
    assert "## Leaderboard across tasks" in md and "### text, K = 16" in md


@pytest.mark.slow
def test_a_plain_study_gets_the_tied_group_per_k_and_one_seed_bootstrap_cells(tmp_path, tiny_text_models, capsys):
    a, b = tiny_text_models["distilbert"], tiny_text_models["bert"]
    assert cli.main(["features", "--models", f"{a},{b}", "--shots", "2,4", "--seeds", "0", "--output-dir",
                     str(tmp_path), "--threads", "1", "data.limit=120", "classifier.C_grid=[1.0]",
                     "tracking.tensorboard=false", "run_name=p"]) == 0
    study = tmp_path / "study" / "p"
    rows = lb.table(lb.collect([study]))
    assert {(r["shots"], r["method"]) for r in rows} == {(k, f"features@{m}") for k in ("2", "4")
                                                         for m in ("distilbert", "bert")}
    with (study / "results.csv").open() as handle:
        recorded = {(r["shots"], r["method"]): r for r in csv.DictReader(handle)
                    if r["split"] == "test" and r["metric"] == "accuracy"}
    for k in ("2", "4"):
        correct = {m: correct_of(study / "features" / f"{m}-k{k}-seed0") for m in ("distilbert", "bert")}
        group = {r["method"].split("@")[1]: r for r in rows if r["shots"] == k}
        for m, row in group.items():  # one seed: the run's bootstrap over test examples, recomputed here
            value, low, high = row["cells"]["rotten_tomatoes"]
            assert value == pytest.approx(correct[m].mean())
            assert (low, high) == pytest.approx(accuracy_interval(correct[m]))
            assert (low, high) == pytest.approx((float(recorded[(k, f"features@{m}")]["ci_low"]),
                                                 float(recorded[(k, f"features@{m}")]["ci_high"])))
        best = max(correct, key=lambda m: (correct[m].mean(), f"features@{m}"))
        other = next(m for m in correct if m != best)
        x, y = correct[other], correct[best]
        discordant = int((x != y).sum())  # McNemar by hand: one test, so Holm leaves it as it is
        p = stats.binomtest(int((x & ~y).sum()), discordant, 0.5).pvalue if discordant else 1.0
        assert group[best]["best"]["rotten_tomatoes"] and group[best]["tied"]["rotten_tomatoes"]
        assert group[other]["tied"]["rotten_tomatoes"] == (p >= 0.05)
    report = (study / "report.md").read_text()
    assert "## Tied with the best, per K (rotten_tomatoes)" in report and "### K = 4" in report
    assert "(best)" in report and "features@bert" in report
    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- shots:begin -->\nold\n<!-- shots:end -->\n")
    capsys.readouterr()
    assert cli.main(["report", str(study), "--readme", str(readme), "--output", str(tmp_path / "rep")]) == 0
    assert "### Tied with the best, per K (rotten_tomatoes)" in readme.read_text()
    assert cli.main(["leaderboard", str(study)]) == 0
    assert "### K = 2" in (study / "leaderboard.md").read_text()


def test_a_folder_without_a_study_has_no_leaderboard_blocks(tmp_path):
    assert lb.leaderboard_blocks([tmp_path]) == []  # no study here: nothing, no error


def correct_of(run_dir):
    """The run's test correctness in id order, read independently of the leaderboard's reader."""
    rows = [json.loads(r) for r in (run_dir / "predictions" / "features.jsonl").read_text().splitlines()]
    by_id = {r["id"]: r for r in rows if r["split"] == "test"}
    return np.array([by_id[i]["label"] == by_id[i]["prediction"] for i in sorted(by_id)])


def test_an_accuracy_cell_with_predictions_has_the_two_way_bootstrap_interval():
    """Seeds that agree (a deterministic full-data cell) still have test-set uncertainty: the interval is
    ``seeds_interval``'s two-way bootstrap, not a zero-wide t interval over identical values."""
    rng = np.random.default_rng(0)
    vector = rng.random(400) < 0.7
    same = [vector, vector, vector]
    mean, low, high = lb.cell_interval([vector.mean()] * 3, [(0.6, 0.8)] * 3, same)
    expected = st.seeds_interval(np.array(same))
    assert (mean, low, high) == (pytest.approx(vector.mean()), expected["ci_low"], expected["ci_high"])
    assert high - low > 0.05  # about ±1.96·sqrt(.21/400)
    assert lb.t_interval([vector.mean()] * 3)[1:] == (vector.mean(), vector.mean())  # what it would have said
    other = [vector, ~vector, vector]
    assert lb.cell_interval([v.mean() for v in other], (), other)[1:] == tuple(
        st.seeds_interval(np.array(other))[k] for k in ("ci_low", "ci_high"))
    # predictions that do not give the figures (another metric, a mixed-up folder): the t interval
    assert lb.cell_interval([0.1, 0.2, 0.3], (), same) == lb.t_interval([0.1, 0.2, 0.3])


def test_ties_over_several_seeds_use_the_two_way_bootstrap_not_a_pooled_mcnemar():
    """Three seeds that agree are one seed's evidence: pooling them into one McNemar table would triple the
    discordant counts (p from 0.11 to 0.0005 here) and call a tie a win."""
    rng = np.random.default_rng(1)
    best = rng.random(300) < 0.75
    close = best.copy()
    close[np.flatnonzero(best)[:10]] = False  # 10 examples only the best gets right, 3 the other way
    close[np.flatnonzero(~best)[:3]] = True
    one_seed = lb.tie_p(close, best)
    assert one_seed == pytest.approx(stats.binomtest(3, 13, 0.5).pvalue)
    pooled = stats.binomtest(9, 39, 0.5).pvalue
    assert one_seed > 0.05 > pooled  # tied on one seed; pooled thrice it would not be
    column = {"metric": "accuracy", "scores": {"best": {s: best.mean() for s in (0, 1, 2)},
                                               "close": {s: close.mean() for s in (0, 1, 2)}},
              "correct": {"best": {s: best for s in (0, 1, 2)}, "close": {s: close for s in (0, 1, 2)}}}
    found, tied = lb.column_ties(column, {"best": best.mean(), "close": close.mean()})
    assert found == "best" and tied == {"best", "close"}
    p = lb.tie_p(np.array([close] * 3), np.array([best] * 3))
    assert p == st.seeds_difference([close] * 3, [best] * 3)["p_value"] and p > 0.05


def test_the_bootstrap_p_value_known_answers():
    assert st.bootstrap_p(np.zeros(99)) == 1.0                       # no difference in any replicate
    assert st.bootstrap_p(np.ones(99)) == pytest.approx(2 / 100)     # every replicate above 0: (0 + 1) / (n + 1), x2
    assert st.bootstrap_p(np.r_[-np.ones(10), np.ones(89)]) == pytest.approx(2 * 11 / 100)
