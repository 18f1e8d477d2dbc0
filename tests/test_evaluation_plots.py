"""The most-confused-pairs plot used for confusion matrices of many classes."""

import numpy as np

from transferlab.evaluation.plots import plot_reliability, plot_top_confusions, top_confusions


def test_top_confusions_orders_off_diagonal_cells():
    m = np.array([[50, 3, 0], [7, 40, 1], [0, 0, 9]])
    assert top_confusions(m, k=5) == [(1, 0, 7), (0, 1, 3), (1, 2, 1)]  # diagonal and zero cells left out
    assert top_confusions(m, k=1) == [(1, 0, 7)]


def test_plot_top_confusions_writes_a_png(tmp_path):
    rng = np.random.default_rng(0)
    m = rng.integers(0, 5, (200, 200)) + np.eye(200, dtype=int) * 30
    path = plot_top_confusions(m, [f"class {i}" for i in range(200)], tmp_path / "c.png", k=20)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plot_top_confusions(np.eye(3, dtype=int), ["a", "b", "c"], tmp_path / "none.png")  # no confusions at all
    assert (tmp_path / "none.png").is_file()


def test_plot_reliability_writes_a_png_from_the_calibration_table(tmp_path):
    from transferlab.evaluation.calibration import reliability

    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.3, 1.0, 500)
    table = reliability(confidence, rng.random(500) < confidence)
    path = plot_reliability(table, tmp_path / "r.png", title="m, test", ece=0.05)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
