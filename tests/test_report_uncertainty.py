"""The report's intervals, comparisons and calibration on runs written before metrics.json schema 2.

The runs here are version 1 run directories as today's main wrote them before this change (config.yaml,
status.json, metrics.json with ``schema_version: 1`` and no intervals, predictions without
``label_probability``), written file by file so the tests are fast; their figures come from the real
``classification_metrics``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

from transferlab.cli import main
from transferlab.evaluation.metrics import classification_metrics
from transferlab.evaluation.statistics import accuracy_interval, paired_comparison


def v1_rows(split: str, y: np.ndarray, pred: np.ndarray, conf: np.ndarray, names: list[str], texts=None) -> list:
    rows = []
    for i, (t, p, c) in enumerate(zip(y, pred, conf)):
        row = {"split": split, "label": names[t], "id": i, "example": texts[i] if texts else None,
               "prediction": names[p], "probability": round(float(c), 6)}
        if len(names) > 2:
            others = [j for j in range(len(names)) if j != p][:2]
            row["top5"] = [[names[p], round(float(c), 6)]] + [[names[j], round((1 - c) / 2, 6)] for j in others]
        rows.append(row)
    return rows


def write_v1_run(root: Path, experiment: str, name: str, methods: dict, primary: str, names: list[str],
                 seed: int = 0, texts=None, config: dict | None = None) -> Path:
    """``methods``: ``{method: {split: (y, pred, confidence)}}``."""
    run = root / experiment / name
    (run / "predictions").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"seed": seed, "run_name": name, **(config or {})}))
    (run / "status.json").write_text(json.dumps({"status": "completed", "elapsed_s": 12.5}))
    out = {}
    for method, splits in methods.items():
        lines = []
        for split, (y, pred, conf) in splits.items():
            lines += v1_rows(split, y, pred, conf, names, texts)
        (run / "predictions" / f"{method}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
        out[method] = {}
        for split, (y, pred, conf) in splits.items():
            m = classification_metrics(y, pred, names)
            m["precision"] = m["recall"] = m["f1"] = float(np.mean([v["f1"] for v in m["per_class"].values()]))
            if len(names) > 2:
                m["top5_accuracy"] = float(np.mean([names[t] in [n for n, _ in r["top5"]] for t, r in
                                                    zip(y, v1_rows(split, y, pred, conf, names))]))
            m.pop("missing_classes", None), m.pop("macro_over", None)
            out[method][split] = m
    metrics = {"schema_version": 1, "experiment": experiment, "model": {"name": f"{experiment}-model"},
               "primary": primary, "methods": out, "n_classes": len(names),
               "n_examples": {"train": 100, "validation": len(next(iter(methods.values()))["validation"][0]),
                              "test": len(next(iter(methods.values()))["test"][0])}}
    (run / "metrics.json").write_text(json.dumps(metrics))
    return run


def predictions(n: int, accuracy: float, n_classes: int, seed: int, base: np.ndarray | None = None):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n) if base is None else base
    right = rng.random(n) < accuracy
    pred = np.where(right, y, (y + 1 + rng.integers(0, n_classes - 1, n)) % n_classes)
    conf = np.clip(np.where(right, 0.8, 0.65) + rng.normal(0, 0.08, n), 1 / n_classes, 0.999)
    return y, pred, conf


RT = {"source": "rotten_tomatoes"}  # the lab's own data: its figures apply


@pytest.fixture(scope="module")
def v1_runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("v1-runs")
    texts = [f"review {i}" for i in range(300)]
    texts[3] = "<script>alert('x')</script> | [link](javascript:alert(1)) `tick`"
    names = ["neg", "pos"]
    y_val, y_test = np.random.default_rng(0).integers(0, 2, 300), np.random.default_rng(1).integers(0, 2, 300)
    runs = {}
    for seed in (0, 1):
        y, pred, conf = predictions(300, 0.75, 2, 20 + seed, y_test)
        pred[3], conf[3] = 1 - y[3], 0.999  # the hostile review is the most confident mistake
        runs[f"features{seed}"] = write_v1_run(root, "features", f"seed{seed}", {"features": {
            "validation": predictions(300, 0.75, 2, 10 + seed, y_val), "test": (y, pred, conf)}},
            "features", names, seed=seed, texts=texts, config={"classifier": {"name": "svc"}, "data": RT})
        runs[f"finetune{seed}"] = write_v1_run(root, "finetune", f"seed{seed}", {"finetune": {
            "validation": predictions(300, 0.85, 2, 30 + seed, y_val), "test": predictions(300, 0.86, 2, 40 + seed, y_test)}},
            "finetune", names, seed=seed, texts=texts, config={"model": "m", "data": RT})
    classes = [f"class{i}" for i in range(5)] + ["<i>c5</i>|x"]
    y6v, y6t = np.random.default_rng(2).integers(0, 6, 200), np.random.default_rng(3).integers(0, 6, 400)
    runs["lora"] = write_v1_run(root, "lora", "run", {
        m: {"validation": predictions(200, acc, 6, 50 + i, y6v), "test": predictions(400, acc, 6, 60 + i, y6t)}
        for i, (m, acc) in enumerate((("zero_shot", 0.45), ("linear_probe", 0.55), ("lora", 0.70)))},
        "lora", classes)
    return runs


def cells(html: str) -> list[str]:
    return [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", html, re.S)]


def correct_of(run: Path, method: str) -> np.ndarray:
    rows = [json.loads(line) for line in (run / "predictions" / f"{method}.jsonl").read_text().splitlines()]
    return np.array([r["label"] == r["prediction"] for r in rows if r["split"] == "test"])


@pytest.mark.slow
def test_report_on_v1_runs_shows_intervals_comparisons_and_calibration(v1_runs, tmp_path):
    assert main(["report", *map(str, v1_runs.values()), "--output", str(tmp_path)]) == 0
    html = (tmp_path / "report.html").read_text()
    found = cells(html)
    features = correct_of(v1_runs["features0"], "features")
    low, high = accuracy_interval(features)
    assert f"{features.mean():.4f} [{low:.3f}, {high:.3f}]" in found       # the v1 run gained its interval
    md = (tmp_path / "report.md").read_text()
    # within one run: every pair of the lora run's methods, with McNemar's exact p on the discordant pairs
    lora, probe = correct_of(v1_runs["lora"], "lora"), correct_of(v1_runs["lora"], "linear_probe")
    result = paired_comparison(lora, probe)
    p = stats.binomtest(result["a_only"], result["a_only"] + result["b_only"], 0.5).pvalue
    row = next(line for line in md.splitlines() if line.startswith("| lora − linear\\_probe |")
               or line.startswith("| lora − linear_probe |"))
    assert f"{result['difference']:+.4f} [{result['ci_low']:+.3f}, {result['ci_high']:+.3f}]" in row
    assert f"| {p:.2g} |" in row and f"{result['a_only']:,} / {result['b_only']:,}" in row
    # across runs on the same split: each shared seed, then the two seeds together
    assert md.count("| finetune − features | 0 |") == 1 and md.count("| finetune − features | 1 |") == 1
    assert "| finetune − features | 2 seeds |" in md and "Holm-adjusted over the 5 tests" in md
    assert "| features | features | 2 | 2 (0, 1) |" in md                  # the seeds table, with its interval
    # calibration: exact for two classes from a v1 file; for six, ECE only, and it says why
    assert re.search(r"\| features \| seed0 \| features \| 0\.\d{4} \| 0\.\d{4} \| 0\.\d{4} \|", md)
    assert re.search(r"\| lora \| run \| lora \| 0\.\d{4} \| n/a \| n/a \|", md) and "n/a: NLL and Brier need" in md
    assert md.count("-reliability.png)") == 5                              # one diagram per run


@pytest.mark.slow
def test_data_text_is_inert_in_markdown_and_readme(v1_runs, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results:begin -->\nold\n<!-- results:end -->\noutro\n")
    runs = [str(v1_runs[k]) for k in ("features0", "features1", "finetune0", "finetune1", "lora")]
    assert main(["report", *runs, "--output", str(tmp_path / "rep"), "--readme", str(readme)]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "<script>" not in md and "&lt;script&gt;" in md and "](javascript" not in md
    assert "\\| [link]\\(javascript" in md and " `tick` |" in md         # no cell end, no link; code stays code
    assert "<i>" not in md and "&lt;i&gt;c5&lt;/i&gt;\\|x" in md                  # a class name, escaped
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old" not in text
    assert "test acc [95% CI]" in text and "McNemar p = " in text and "Holm" in text
    claim = next(line for line in text.splitlines() if line.startswith("- finetune above features"))
    assert "over 2 seeds (two-way bootstrap)" in claim and "n = 300 each" in claim
    assert re.search(r"- lora above linear\\?_probe: \+0\.\d{4} \[\+0\.\d{3}, \+0\.\d{3}\], McNemar p = ", text)
    assert re.search(r"finetune 0\.\d{4} \[0\.\d{3}, 0\.\d{3}\]: the interval (lies above|lies below|contains) the "
                     r"lab's 0\.842", text)


def test_a_secondary_method_is_not_a_second_bar_beside_the_run_that_has_it_as_primary(v1_runs, tmp_path):
    from transferlab.reporting.runs import load_record
    from transferlab.reporting.uncertainty import method_groups

    zeroshot = tmp_path / "zeroshot" / "run"
    zeroshot.parent.mkdir(parents=True)
    import shutil

    shutil.copytree(v1_runs["lora"], zeroshot)
    metrics = json.loads((zeroshot / "metrics.json").read_text())
    metrics.update(experiment="zeroshot", primary="zero_shot",
                   methods={"zero_shot": metrics["methods"]["zero_shot"]})
    (zeroshot / "metrics.json").write_text(json.dumps(metrics))
    records = [load_record(zeroshot), load_record(v1_runs["lora"])]
    groups = method_groups(records)
    assert [(g["experiment"], g["method"]) for g in groups] == [
        ("zeroshot", "zero_shot"), ("lora", "lora"), ("lora", "linear_probe")]  # primary first
    assert all(g["interval"]["low"] < g["test_mean"] < g["interval"]["high"] for g in groups)


@pytest.mark.slow
def test_a_pipeline_directory_is_rebuilt_with_its_stages_failure_and_resume_hint(v1_runs, tmp_path):
    import shutil

    from transferlab.reporting.pipeline import write_pipeline_report

    pipe = tmp_path / "pipe"
    shutil.copytree(v1_runs["features0"], pipe / "features" / "seed0")
    state = {"config": "offline", "overrides": [], "seeds": [0], "stages": [
        {"name": "features", "seed": 0, "status": "completed", "error": None, "run_dir": "features/seed0",
         "elapsed_s": 12.5},
        {"name": "finetune", "seed": 0, "status": "failed", "error": "OSError: no <b>model</b> here",
         "run_dir": "finetune/seed0"}]}
    (pipe / "pipeline.json").write_text(json.dumps(state))
    write_pipeline_report(pipe, state)
    first = (pipe / "report.md").read_text()
    assert main(["report", str(pipe), "--output", str(tmp_path / "again")]) == 0
    again = (tmp_path / "again" / "report.md").read_text()
    assert "| finetune (seed 0) | failed |" in again and "no &lt;b&gt;model&lt;/b&gt; here" in again
    assert f"transferlab run --resume {pipe}" in again

    def body(text: str) -> list[str]:  # the same report but for when it was built and where its files lie
        return [line for line in text.splitlines() if not line.startswith("Built ") and "report_assets" not in line
                and "confusion_matrix.png" not in line]
    assert body(first) == body(again)


def test_a_pipeline_state_naming_a_folder_outside_is_refused(v1_runs, tmp_path, capsys):
    pipe = tmp_path / "pipe"
    pipe.mkdir()
    state = {"stages": [{"name": "features", "status": "completed", "run_dir": str(v1_runs["features0"])}]}
    (pipe / "pipeline.json").write_text(json.dumps(state))
    assert main(["report", str(pipe)]) == 2
    assert "outside" in capsys.readouterr().err
    (pipe / "pipeline.json").write_text(json.dumps({"stages": "all"}))
    assert main(["report", str(pipe)]) == 2
    assert "does not list known stages" in capsys.readouterr().err


def test_schema_versions_read_and_refused():
    from transferlab.errors import TransferlabError
    from transferlab.evaluation.schema import RunMetrics

    record = {"experiment": "features", "model": {"name": "m"}, "primary": "features", "n_classes": 2,
              "n_examples": {}, "methods": {"features": {"validation": {"accuracy": 0.5}, "test": {"accuracy": 0.5}}}}
    assert RunMetrics.from_dict({**record, "schema_version": 1}).schema_version == 1
    assert RunMetrics.from_dict({**record, "schema_version": 2}).schema_version == 2
    with pytest.raises(TransferlabError, match="schema_version 3"):
        RunMetrics.from_dict({**record, "schema_version": 3})


def test_predictions_that_disagree_with_metrics_give_no_interval_and_say_so(v1_runs, tmp_path):
    import shutil

    from transferlab.reporting.runs import load_record
    from transferlab.reporting.uncertainty import figures, missing_intervals

    run = tmp_path / "features" / "edited"
    shutil.copytree(v1_runs["features0"], run)
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["methods"]["features"]["test"]["accuracy"] = 0.99  # edited: the predictions say otherwise
    (run / "metrics.json").write_text(json.dumps(metrics))
    record = load_record(run)
    assert figures(record, "features")["intervals"] is None
    assert missing_intervals([record]) == [
        "No interval for features / edited / features: predictions/features.jsonl disagrees with metrics.json."]
    assert figures(load_record(v1_runs["features0"]), "features")["intervals"]["accuracy"][0] > 0.6


@pytest.mark.slow
def test_a_run_with_calibrate_records_temperature_and_keeps_its_accuracy(tmp_path, tiny_distilbert, capsys):
    args = ["features", "--output-dir", str(tmp_path), f"encoder.model={tiny_distilbert}", "data.limit=60",
            "classifier.C_grid=[1.0]", "classifier.name=logreg", "run_name=cal", "evaluation.calibrate=true",
            "evaluation.n_resamples=500"]
    assert main(args) == 0
    out = capsys.readouterr().out
    metrics = json.loads((tmp_path / "features" / "cal" / "metrics.json").read_text())
    test = metrics["methods"]["features"]["test"]
    assert metrics["schema_version"] == 2 and test["intervals"]["n_resamples"] == 500
    assert f"test {test['accuracy']:.4f} [{test['intervals']['accuracy'][0]:.3f}, " in out  # the printed summary
    assert test["calibrated"]["temperature"] > 0 and test["calibrated"]["fitted_on"] == "validation"
    text = (tmp_path / "features" / "cal" / "predictions" / "features.jsonl").read_text()
    rows = [json.loads(line) for line in text.split("\n") if line]  # not splitlines: texts hold \u2028
    test_rows = [r for r in rows if r["split"] == "test"]
    assert np.mean([r["label"] == r["prediction"] for r in test_rows]) == pytest.approx(test["accuracy"])
    assert all(0 <= r["label_probability"] <= 1 for r in test_rows)
    assert main(["features", "evaluation.confidence=1.5"]) == 2
    assert "evaluation.confidence" in capsys.readouterr().err


@pytest.mark.slow
def test_a_killed_pipeline_stage_reads_as_dead_in_the_rebuilt_report(v1_runs, tmp_path):
    import shutil
    import socket
    import subprocess

    gone = subprocess.Popen(["true"])
    gone.wait()
    pipe = tmp_path / "pipe"
    shutil.copytree(v1_runs["features0"], pipe / "features" / "seed0")
    state = {"stages": [{"name": "features", "seed": 0, "status": "completed", "run_dir": "features/seed0"},
                        {"name": "finetune", "seed": 0, "status": "running"}]}
    (pipe / "pipeline.json").write_text(json.dumps(state))
    (pipe / "status.json").write_text(json.dumps({"status": "running", "pid": gone.pid, "host": socket.gethostname(),
                                                  "heartbeat": "2026-01-01T14:02:00+00:00"}))
    assert main(["report", str(pipe), "--output", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert re.search(r"\| finetune \(seed 0\) \| running \(no heartbeat since \d\d:\d\d; process gone\) \|", md)


def test_a_p_value_that_underflows_is_printed_as_a_bound_not_as_zero():
    from scipy.stats import binomtest

    from transferlab.reporting.tables import p_text

    underflow = binomtest(0, 2000).pvalue  # 2 x 0.5**2000: below the smallest double
    assert underflow == 0.0
    assert p_text(underflow) == "< 1e-300"
    assert p_text(2.6e-08) == "2.6e-08" and p_text(None) == "–"


def test_one_method_of_two_studies_with_alike_run_names_gets_two_labels(tmp_path):
    from transferlab.reporting.runs import load_record
    from transferlab.reporting.uncertainty import method_groups

    names = [f"c{i}" for i in range(4)]
    y_val, y_test = np.random.default_rng(0).integers(0, 4, 80), np.random.default_rng(1).integers(0, 4, 120)
    runs = [write_v1_run(tmp_path / study, "lora", "k16-seed0", {"zero_shot": {
        "validation": predictions(80, acc, 4, 1, y_val), "test": predictions(120, acc, 4, 2 + i, y_test)}},
        "zero_shot", names, config={"model": {"templates": [template]}})
        for i, (study, acc, template) in enumerate((("lab", 0.5, "a"), ("clip-lora", 0.3, "b")))]
    labels = sorted(g["label"] for g in method_groups([load_record(r) for r in runs]))
    assert labels == ["zero_shot (clip-lora/lora/k16-seed0)", "zero_shot (lab/lora/k16-seed0)"]


def test_an_interval_against_the_lab_is_judged_as_printed_by_one_rule_everywhere(v1_runs, tmp_path):
    """The lab's 0.79 and an upper bound of 0.7899999999999998 (printed 0.790): 'contains' in every table and
    in the README's sentence, never 'below' in one and 'contains' in another."""
    import shutil

    from transferlab.reporting.tables import verdict
    from transferlab.reporting.uncertainty import lab_relation, relation

    bound = 0.7899999999999998
    assert bound < 0.79 and f"{bound:.3f}" == "0.790"
    from transferlab.reporting.runs import load_record

    assert relation(0.79, 0.75, bound) == "contains" == lab_relation(0.75, bound, "features",
                                                                     [load_record(v1_runs["features0"])])
    assert relation(0.79, 0.75, 0.7894) == "below" and relation(0.79, 0.7906, 0.82) == "above"  # 0.789, 0.791
    assert verdict({"ci_low": 0.0004, "ci_high": 0.03}) == "no clear difference"  # printed +0.000
    assert verdict({"ci_low": 0.0006, "ci_high": 0.03}) == "A above B"  # printed +0.001
    run = tmp_path / "features" / "edge"
    shutil.copytree(v1_runs["features0"], run)
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["methods"]["features"]["test"]["intervals"] = {"accuracy": [0.75, bound]}
    (run / "metrics.json").write_text(json.dumps(metrics))
    readme = tmp_path / "README.md"
    readme.write_text("<!-- results:begin -->\n<!-- results:end -->\n")
    assert main(["report", str(run), "--output", str(tmp_path / "rep"), "--readme", str(readme)]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| features |") and "[0.750, 0.790]" in line]
    assert len(rows) == 2 and all(row.rstrip(" |").endswith("contains") for row in rows)  # results and lab tables
    assert "[0.750, 0.790]: the interval contains the lab's 0.79" in readme.read_text()


def test_the_notes_of_metrics_json_and_a_temperature_at_its_bound_reach_the_report(v1_runs, tmp_path):
    import shutil

    from transferlab.evaluation.schema import evaluation_notes

    run = tmp_path / "features" / "noted"
    shutil.copytree(v1_runs["features0"], run)
    metrics = json.loads((run / "metrics.json").read_text())
    scaled = {"temperature": 20.0, "ece": 0.05, "nll": 0.4, "brier": 0.2, "fitted_on": "validation", "at_bound": 20.0}
    features = metrics["methods"]["features"]
    features["validation"]["calibrated"] = scaled
    features["test"].update(missing_classes=["pos"], calibration={"ece": 0.1, "brier": 0.2, "nll": 0.5},
                            calibrated=scaled)
    metrics["notes"] = evaluation_notes(metrics["methods"])  # as a run of this version records them
    (run / "metrics.json").write_text(json.dumps(metrics))
    assert main(["report", str(run)]) == 0
    md = (run / "report.md").read_text()
    assert "Note: the test split has no example of 1 class(es) (pos)" in md
    assert "Note: features: the temperature fitted on 300 validation examples is at the bound of its range" in md
    assert "T=20.000 (at its bound 20: not an optimum), 0.0500, 0.4000" in md
