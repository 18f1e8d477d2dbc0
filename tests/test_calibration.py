"""Calibration against hand computation; temperature scaling changes probabilities, never predictions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from transferlab.errors import TransferlabError
from transferlab.evaluation.calibration import (bin_index, brier_score, calibration_record, expected_calibration_error,
                                                fit_temperature, nll, reliability, rows_calibration, scaled)
from transferlab.evaluation.results import summary_line, write_results


def test_ece_equals_the_hand_computed_value():
    # bins of width 1/15: 0.95 -> bin 14, 0.55 -> bin 8, 0.30 -> bin 4
    confidence = [0.95, 0.95, 0.55, 0.55, 0.30]
    correct = [True, False, True, True, False]
    by_hand = 2 / 5 * abs(0.5 - 0.95) + 2 / 5 * abs(1.0 - 0.55) + 1 / 5 * abs(0.0 - 0.30)
    assert by_hand == pytest.approx(0.42)
    assert expected_calibration_error(confidence, correct) == pytest.approx(by_hand, abs=1e-12)
    table = reliability(confidence, correct)
    assert table["count"].tolist() == [0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 2]


def test_bins_are_equal_width_and_closed_on_the_right():
    assert bin_index(np.array([0.0, 1 / 15, 1 / 15 + 1e-9, 0.5, 1.0])).tolist() == [0, 0, 1, 7, 14]


def test_brier_and_nll_equal_the_hand_computed_values():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.5, 0.25, 0.25]])
    y = np.array([0, 2, 0])
    brier_by_hand = ((0.3 ** 2 + 0.2 ** 2 + 0.1 ** 2) + (0.1 ** 2 + 0.8 ** 2 + 0.9 ** 2)
                     + (0.5 ** 2 + 0.25 ** 2 + 0.25 ** 2)) / 3
    assert brier_score(probs, y) == pytest.approx(brier_by_hand)
    assert nll([0.7, 0.1, 0.5]) == pytest.approx(-(np.log(0.7) + np.log(0.1) + np.log(0.5)) / 3)
    record = calibration_record(probs, y)
    assert record["nll"] == pytest.approx(nll([0.7, 0.1, 0.5]))
    assert record["n_bins"] == 15
    assert nll([0.0]) == pytest.approx(-np.log(1e-15))  # clipped, not infinite


def test_calibration_refuses_logits():
    with pytest.raises(TransferlabError, match="probabilities"):
        reliability([1.5, -2.0], [True, False])


def overconfident(n: int = 2000, classes: int = 5, seed: int = 0):
    """Logits three times too sharp: about 60% right, but most predictions near probability 1."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    logits = rng.normal(size=(n, classes))
    logits[np.arange(n), y] += 1.0
    probs = np.exp(3 * logits)
    return y, probs / probs.sum(axis=1, keepdims=True)


def test_temperature_scaling_leaves_accuracy_unchanged_and_improves_nll():
    y, probs = overconfident()
    y_val, p_val, y_test, p_test = y[:1000], probs[:1000], y[1000:], probs[1000:]
    temperature = fit_temperature(p_val, y_val)
    assert temperature == pytest.approx(3.0, rel=0.25)         # undoes the sharpening
    after = scaled(p_test, temperature)
    assert np.array_equal(after.argmax(1), p_test.argmax(1))    # accuracy cannot change
    assert np.allclose(after.sum(1), 1.0)
    before_record, after_record = calibration_record(p_test, y_test), calibration_record(after, y_test)
    assert after_record["nll"] < before_record["nll"] and after_record["ece"] < before_record["ece"]


def test_rows_of_a_binary_file_give_the_exact_figures():
    probs = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4], [0.2, 0.8]])
    y = np.array([0, 0, 1, 1])
    names = ["neg", "pos"]
    rows = [{"label": names[t], "prediction": names[int(p.argmax())], "probability": float(p.max())}
            for t, p in zip(y, probs)]  # a version 1 row: no label_probability
    from_rows, full = rows_calibration(rows, 2), calibration_record(probs, y)
    for key in ("ece", "brier", "nll"):
        assert from_rows[key] == pytest.approx(full[key])


def test_rows_of_an_old_multiclass_file_say_what_is_unavailable():
    rows = [{"label": "a", "prediction": "b", "probability": 0.6}, {"label": "c", "prediction": "c", "probability": 0.9}]
    record = rows_calibration(rows, 3)
    assert record["ece"] == pytest.approx((0.6 + 0.1) / 2)
    assert record["nll"] is None and record["brier"] is None and "NLL" in record["unavailable"]
    new = rows_calibration([{**r, "label_probability": p} for r, p in zip(rows, (0.1, 0.9))], 3)
    assert new["nll"] == pytest.approx(nll([0.1, 0.9])) and new["brier"] is None


def test_write_results_records_intervals_calibration_and_calibrated(tmp_path):
    y, probs = overconfident(600, classes=6, seed=1)
    splits = {"validation": (y[:300], probs[:300].argmax(1), probs[:300]),
              "test": (y[300:], probs[300:].argmax(1), probs[300:])}
    names = [f"c{i}" for i in range(6)]

    class Evaluation:
        calibrate, n_resamples, confidence, seed = True, 500, 0.9, 3

    results = write_results(tmp_path, None, {"m": splits}, names, primary="m", top_k=(1, 5), evaluation=Evaluation())
    test = results["m"]["test"]
    assert test["intervals"]["confidence"] == 0.9 and test["intervals"]["n_resamples"] == 500
    assert test["intervals"]["accuracy"][0] < test["accuracy"] < test["intervals"]["accuracy"][1]
    assert "top5_accuracy" in test["intervals"] and "top1_accuracy" not in test["intervals"]
    assert test["calibrated"]["fitted_on"] == "validation" and test["calibrated"]["temperature"] > 1
    assert test["calibrated"]["nll"] < test["calibration"]["nll"]
    assert test["accuracy"] == pytest.approx((y[300:] == probs[300:].argmax(1)).mean())  # unchanged
    rows = [json.loads(line) for line in (tmp_path / "predictions" / "m.jsonl").read_text().splitlines()]
    test_rows = [r for r in rows if r["split"] == "test"]
    assert rows_calibration(test_rows, 6)["nll"] == pytest.approx(test["calibration"]["nll"], rel=1e-4)
    assert summary_line(results["m"]).startswith(f"test {test['accuracy']:.4f} [")
    assert summary_line({"validation": {"accuracy": 0.5}}) == "test not scored"


def test_a_temperature_fitted_at_its_bound_is_noted_in_the_metrics(tmp_path):
    """Two validation reviews, both confidently wrong: the NLL falls as T grows, so the fit stops at 20, the
    top of its range. The split records ``at_bound`` and metrics.json's notes say so."""
    from transferlab.evaluation.calibration import TEMPERATURE_BOUNDS
    from transferlab.evaluation.schema import RunMetrics

    wrong = np.array([[0.05, 0.95], [0.9, 0.1]])
    splits = {"validation": (np.array([0, 1]), wrong.argmax(1), wrong),
              "test": (np.array([0, 1, 1]), np.array([0, 1, 0]), np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]]))}

    class Evaluation:
        calibrate, n_resamples, confidence, seed = True, 200, 0.95, 0

    methods = write_results(tmp_path, None, {"features": splits}, ["neg", "pos"], primary="features",
                            evaluation=Evaluation())
    calibrated = methods["features"]["validation"]["calibrated"]
    assert calibrated["temperature"] == pytest.approx(TEMPERATURE_BOUNDS[1], rel=1e-3)
    assert calibrated["at_bound"] == TEMPERATURE_BOUNDS[1]
    metrics = RunMetrics(experiment="features", model={"name": "m"}, primary="features", methods=methods,
                         n_classes=2, n_examples={"validation": 2, "test": 3}, notes=["a loader note"])
    assert metrics.notes[0] == "a loader note"
    (note,) = metrics.notes[1:]
    assert "features: the temperature fitted on 2 validation examples is at the bound of its range, T = 20" in note

    fitted = write_results(tmp_path, None, {"m": {"validation": splits["test"], "test": splits["test"]}},
                           ["neg", "pos"], primary="m", evaluation=Evaluation())
    assert "at_bound" not in fitted["m"]["validation"]["calibrated"]  # an interior optimum: no note
    assert RunMetrics(experiment="features", model={"name": "m"}, primary="m", methods=fitted, n_classes=2,
                      n_examples={"validation": 3, "test": 3}).notes == []


@pytest.mark.slow
def test_a_class_absent_from_the_test_split_is_noted_in_metrics_json(clip_folder, tmp_path, capsys):
    """A CLIP run (whose data checks only print) on a Tiny ImageNet whose test images lack one class: the note
    goes into metrics.json, once, naming the class."""
    from clip_fixtures import WNIDS, tiny_imagenet_tree

    from transferlab.cli import main

    tree = tiny_imagenet_tree(tmp_path / "tiny", n_train=6, n_val=2)
    annotations = tree / "val" / "val_annotations.txt"
    lines = annotations.read_text().splitlines()
    for line in lines:
        if WNIDS[2] in line:  # the test images of the third class go
            (tree / "val" / "images" / line.split("\t")[0]).unlink()
    annotations.write_text("\n".join(line for line in lines if WNIDS[2] not in line) + "\n")
    assert main(["zeroshot", "--output-dir", str(tmp_path / "out"), f"model.name={clip_folder}", f"data.path={tree}",
                 "data.val_per_class=2", "model.templates=['a photo of a {name}.']", "model.batch_size=8"]) == 0
    run = Path(capsys.readouterr().out.strip().splitlines()[-1])
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["methods"]["zero_shot"]["test"]["missing_classes"] == ["Egyptian cat"]
    notes = [n for n in metrics["notes"] if n.startswith("the test split has no example of")]
    assert len(notes) == 1 and "(Egyptian cat)" in notes[0]  # once: the data check's note, not a second one
