"""``--models``: the model as a study axis, crossed with --shots and --seeds on the same draws (issue 29)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from transferlab.cli.axes import model_arms, models_by_experiment, parse_models
from transferlab.errors import TransferlabError
from transferlab.evaluation import statistics as st
from transferlab.experiments.features.config import FeaturesConfig
from test_security import cli, one_line_error


def test_models_option_parses_lists_and_sections():
    assert parse_models("a,b") == (None, ["a", "b"])
    assert parse_models("features=pypi:x,./m") == ("features", ["pypi:x", "./m"])
    assert parse_models("org/model-a,org/model-b") == (None, ["org/model-a", "org/model-b"])
    sections = {"features": "features", "finetune": "finetune"}
    assert models_by_experiment([(None, ["a"]), ("finetune", ["b"])], sections) == {"features": ["a"], "finetune": ["b"]}
    with pytest.raises(TransferlabError, match="twice"):
        models_by_experiment([(None, ["a"]), (None, ["b"])], sections)
    with pytest.raises(TransferlabError, match="none of this command's config sections"):
        models_by_experiment([("clip", ["a"])], sections)
    with pytest.raises(TransferlabError, match="share the folder name"):
        model_arms({"features": FeaturesConfig()}, {"features": ["one/m", "two/m"]})


@pytest.mark.slow
def test_a_model_study_gives_paired_cells_per_model(capsys, tmp_path, tiny_text_models):
    a, b = tiny_text_models["distilbert"], tiny_text_models["bert"]
    code, _, err = cli(capsys, "features", "--models", f"{a},{b}", "--shots", "2,4", "--seeds", "0,1",
                       "--output-dir", tmp_path, "--threads", "1", "data.limit=120", "classifier.C_grid=[1.0]",
                       "tracking.tensorboard=false", "run_name=m")
    assert code == 0, err[-2000:]
    study = tmp_path / "study" / "m"
    state = json.loads((study / "study.json").read_text())
    assert len(state["cells"]) == 8 and {c["status"] for c in state["cells"]} == {"completed"}
    assert {c["run_dir"].split("/")[1].split("-k")[0] for c in state["cells"]} == {"distilbert", "bert"}
    for k in (2, 4):
        for seed in (0, 1):  # the same draw for both models: the validation examples chosen are the same rows
            drawn = []
            for model in ("distilbert", "bert"):
                rows = (study / "features" / f"{model}-k{k}-seed{seed}" / "predictions" / "features.jsonl").read_text()
                drawn.append(sorted(json.loads(r)["id"] for r in rows.splitlines() if '"validation"' in r))
            assert drawn[0] == drawn[1] and len(drawn[0]) == 2 * min(k, 4)
    with (study / "results.csv").open() as handle:
        methods = {r["method"] for r in csv.DictReader(handle)}
    assert methods == {"features@distilbert", "features@bert"}  # one curve per model
    for model in ("distilbert", "bert"):  # each model's train pool encoded once in the study
        encoded = [json.loads((study / c["run_dir"] / "metrics.json").read_text())["timings"]["encoded_train_texts"]
                   for c in state["cells"] if f"/{model}-" in c["run_dir"]]
        assert sum(encoded) <= 120
    check_model_comparisons(study)
    readme = tmp_path / "README.md"
    readme.write_text("# mine\n<!-- shots:begin -->\n<!-- shots:end -->\n")
    code, _, err = cli(capsys, "report", study, "--readme", readme)
    assert code == 0, err[-2000:]
    said = [line for line in readme.read_text().splitlines() if line.startswith("- features at K=")]
    assert len(said) == 2 and all("bert " in line and " distilbert: " in line and "McNemar" in line for line in said)


def correct_of(run_dir, method="features"):
    rows = [json.loads(r) for r in (run_dir / "predictions" / f"{method}.jsonl").read_text().split("\n") if r]
    by_id = {r["id"]: r for r in rows if r["split"] == "test"}
    return np.array([by_id[i]["label"] == by_id[i]["prediction"] for i in sorted(by_id)])


def check_model_comparisons(study):
    """The study report's paired tests between the two models equal the statistics recomputed here from the
    cells' predictions: per seed McNemar (Holm over the 4 tests), over seeds the two-way bootstrap."""
    with (study / "model_comparisons.csv").open() as handle:
        rows = {r["shots"]: r for r in csv.DictReader(handle)}
    assert set(rows) == {"2", "4"}
    raw = []
    for k in ("2", "4"):
        row = rows[k]
        assert (row["method"], row["model_a"], row["model_b"], row["seeds"]) == ("features", "bert", "distilbert", "2")
        a = [correct_of(study / "features" / f"bert-k{k}-seed{s}") for s in (0, 1)]
        b = [correct_of(study / "features" / f"distilbert-k{k}-seed{s}") for s in (0, 1)]
        over = st.seeds_difference(a, b)
        assert float(row["difference"]) == pytest.approx(over["difference"], abs=1e-12)
        assert (float(row["ci_low"]), float(row["ci_high"])) == pytest.approx((over["ci_low"], over["ci_high"]))
        per_seed = [st.paired_comparison(x, y)["mcnemar_p"] for x, y in zip(a, b)]
        assert [float(p) for p in row["mcnemar_p"].split(";")] == pytest.approx(per_seed, rel=1e-5)
        raw += per_seed
    holm = st.holm(raw)
    assert [float(p) for k in ("2", "4") for p in rows[k]["holm_p"].split(";")] == pytest.approx(list(holm), rel=1e-5)
    report = (study / "report.md").read_text()
    assert "Models compared, paired" in report and "bert vs distilbert" in report


def test_a_model_that_does_not_exist_is_refused_before_any_cell(capsys, tmp_path, tiny_text_models):
    code, _, err = cli(capsys, "features", "--models", f"{tiny_text_models['bert']},{tmp_path / 'none'}",
                       "--output-dir", tmp_path)
    assert "does not exist" in one_line_error(code, err)
    assert not (tmp_path / "study").exists()


def test_study_only_options_on_a_single_run_are_refused(capsys, tmp_path):
    for extra in (["--executor", "ray"], ["--cell-output"], ["--ray-address", "127.0.0.1:1"]):
        code, _, err = cli(capsys, "features", *extra, "--output-dir", tmp_path)
        assert "add --shots, --models or --suite" in one_line_error(code, err)
        code, _, err = cli(capsys, "run", *extra, "--output-dir", tmp_path)
        assert "add --shots, --models or --suite" in one_line_error(code, err)
    assert not any(tmp_path.iterdir())
