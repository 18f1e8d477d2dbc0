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
