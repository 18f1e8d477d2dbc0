"""``--models``: the model as a study axis, crossed with --shots and --seeds on the same draws (issue 29)."""

from __future__ import annotations

import csv
import json

import pytest

from transferlab.cli.axes import model_arms, models_by_experiment, parse_models
from transferlab.errors import TransferlabError
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
