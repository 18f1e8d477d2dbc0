import numpy as np
import pytest

from transferlab.models.classifiers import ClassifierConfig, predict_proba, select_classifier


@pytest.fixture
def blobs():
    rng = np.random.default_rng(0)
    def draw(n):
        y = np.repeat([0, 1], n // 2)
        return rng.normal(size=(n, 5)) + y[:, None] * 1.5, y
    return draw(200), draw(100)


@pytest.mark.parametrize("name", ["svc", "linear_svc", "logreg"])
def test_selection_records_grid_and_picks_the_best(blobs, name):
    (xt, yt), (xv, yv) = blobs
    clf, record = select_classifier(ClassifierConfig(name=name, C_grid=[10, 0.01, 1]), xt, yt, xv, yv)
    assert record["grid_C"] == [0.01, 1, 10]
    best = max(record["validation_accuracy"])
    assert record["validation_accuracy"][record["grid_C"].index(record["chosen_C"])] == best
    assert (clf.predict(xv) == yv).mean() == pytest.approx(best)
    assert best > 0.8


def test_ties_go_to_the_smaller_C(blobs):
    (xt, yt), (xv, yv) = blobs
    # Two C values this large give the same separable fit: the same validation accuracy.
    _, record = select_classifier(ClassifierConfig(name="logreg", C_grid=[1e6, 1e5]), xt, yt, xv, yv)
    assert record["validation_accuracy"][0] == record["validation_accuracy"][1]
    assert record["chosen_C"] == 1e5


def test_fixed_C_is_the_labs_untuned_svc(blobs):
    (xt, yt), (xv, yv) = blobs
    clf, record = select_classifier(ClassifierConfig(name="svc", standardize=False, C_grid=None), xt, yt, xv, yv)
    assert record["grid_C"] == [1.0] and record["rule"] == "fixed C (no search)"
    assert [name for name, _ in clf.steps] == ["clf"]
    params = clf[-1].get_params()
    assert params["C"] == 1.0 and params["kernel"] == "rbf" and params["gamma"] == "scale"
    proba = predict_proba(clf, xv)
    assert proba.shape == (100, 2) and np.allclose(proba.sum(1), 1)
    assert (proba.argmax(1) == clf.predict(xv)).all()


def reference_probe(xt, yt, xv, yv, grid, max_iter, seed):
    """The linear probe's own loop before it became a classifier option: one warm-started model, C ascending."""
    import copy

    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(xt)
    clf = LogisticRegression(max_iter=max_iter, warm_start=True, random_state=seed)
    best, best_c, scores = None, None, {}
    for c in sorted(grid):
        clf.C = c
        clf.fit(scaler.transform(xt), yt)
        scores[c] = float((clf.predict(scaler.transform(xv)) == yv).mean())
        if best is None or scores[c] > scores[best_c]:
            best, best_c = copy.deepcopy(clf), c
    return scaler, best, best_c, scores


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_warm_started_logreg_is_the_linear_probe(blobs):
    from transferlab.models.linear_probe import fit_linear_probe, probe_predictions

    rng = np.random.default_rng(1)
    (xt, yt), (xv, yv) = blobs
    yt, yv = (yt + 2 * (rng.random(len(yt)) < 0.3)), (yv + 2 * (rng.random(len(yv)) < 0.3))  # 4 classes
    grid = [1.0, 0.001, 0.01]
    scaler, ref, ref_c, ref_scores = reference_probe(xt, yt, xv, yv, grid, 20, 42)
    probe, record = fit_linear_probe((xt, yt), (xv, yv), grid, max_iter=20, seed=42)
    assert record["chosen_C"] == ref_c and record["validation_accuracy"] == [ref_scores[c] for c in sorted(grid)]
    np.testing.assert_array_equal(probe[-1].coef_, ref.coef_)
    y, pred, scores = probe_predictions(probe, xv, yv)
    np.testing.assert_array_equal(scores, ref.predict_log_proba(scaler.transform(xv)))
    assert (pred == ref.predict(scaler.transform(xv))).all() and (y == yv).all()


def test_warm_start_is_for_logreg_only():
    with pytest.raises(Exception, match="warm_start applies to logreg only"):
        ClassifierConfig(name="svc", warm_start=True).validate()
