"""The contract every registered experiment meets (one registry-parametrized suite, as scikit-learn's common
checks), and a tiny experiment added the way the architecture promises: a folder (tests/tiny_experiment:
config + runner) plus one ``register`` call, which then runs, reports, joins a study and a search with no
other file changed."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

import transferlab as tl
from transferlab.config import load_config, to_dict
from transferlab.experiments.protocol import ExperimentConfig
from transferlab.experiments.registry import EXPERIMENTS, Experiment, register, unregister
from transferlab.studies.search_space import load_search_space, search_file
from helpers import make_csv
from test_security import cli, one_line_error

HERE = Path(__file__).parent


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_every_experiment_meets_the_contract(name):
    entry = EXPERIMENTS[name]
    config = load_config(entry.config_class(), entry.section)
    assert isinstance(config, ExperimentConfig) and dataclasses.is_dataclass(config)
    again = load_config(entry.config_class(), entry.section, None, {k: v for k, v in to_dict(config).items()
                                                                    if k != "source"})
    assert to_dict(again) == to_dict(config)  # the config round-trips through its own dict
    assert callable(entry.runner_function())
    for key in entry.path_keys + entry.model_keys + ((entry.shared_cache[0],) if entry.shared_cache else ()):
        head, *rest = key.split(".")
        assert head in config.__dataclass_fields__, f"registry names {key}, which {name}'s config lacks"
    if entry.tunable:  # its search space loads and every searched key is a setting of the config
        space = load_search_space(search_file(None, None, name))
        for param in space.params:
            assert param.name.split(".")[0] in config.__dataclass_fields__
    if hasattr(config, "data") and hasattr(config.data, "shots"):
        with pytest.raises(tl.TransferlabError, match="data.shots"):
            dataclasses.replace(config, data=dataclasses.replace(config.data, shots=0))


@pytest.fixture
def ridge():
    entry = register(Experiment("ridge", "ridge", "tiny_experiment.config:RidgeConfig",
                                "tiny_experiment.runner:run_ridge", "TF-IDF + ridge (the tests' own experiment).",
                                default_stage=False, tunable=True, path_keys=("data.train_file", "data.test_file")))
    yield entry
    unregister("ridge")


@pytest.fixture
def texts(tmp_path):
    words = ["good", "fine", "great", "bad", "awful", "poor"]
    rows = [{"text": f"a {words[i % 6]} film, number {i}", "label": int(i % 6 >= 3)} for i in range(60)]
    make_csv(tmp_path / "train.csv", rows[:40])
    make_csv(tmp_path / "test.csv", rows[40:])
    return [f"data.source=files", f"data.train_file={tmp_path / 'train.csv'}", f"data.test_file={tmp_path / 'test.csv'}",
            "tracking.tensorboard=false"]


@pytest.mark.slow
def test_a_new_experiment_runs_reports_joins_a_study_and_a_search(ridge, texts, tmp_path, capsys):
    result = tl.run("ridge", overrides=texts + ["alpha=0.5"], output_dir=tmp_path / "logs")
    assert result.status == "completed" and result.metrics["experiment"] == "ridge"
    assert result.test_accuracy() == json.loads((result.run_dir / "metrics.json").read_text())[
        "methods"]["ridge"]["test"]["accuracy"] > 0.9  # the words give the label away

    code, _, err = cli(capsys, "report", result.run_dir)
    assert code == 0, err[-2000:]
    assert "ridge" in (result.run_dir / "report.md").read_text()

    code, _, err = cli(capsys, "ridge", "--shots", "2,full", "--seeds", "0,1", "--output-dir", tmp_path / "out",
                       "run_name=s", *texts)
    assert code == 0, err[-2000:]
    state = json.loads((tmp_path / "out" / "study" / "s" / "study.json").read_text())
    assert [c["status"] for c in state["cells"]] == ["completed"] * 4
    assert "ridge" in (tmp_path / "out" / "study" / "s" / "results.csv").read_text()

    code, _, err = cli(capsys, "tune", "ridge", "--trials", "3", "--search", HERE / "tiny_experiment" / "search.yaml",
                       "--output-dir", tmp_path / "tune", *texts)
    assert code == 0, err[-2000:]
    best = (tmp_path / "tune" / "tune" / "ridge-offline" / "best.yaml").read_text()
    assert "alpha:" in best


def test_a_bad_value_set_in_python_fails_with_one_line_naming_the_field(ridge, capsys):
    config = tl.load_config("features")
    with pytest.raises(tl.TransferlabError) as err:
        dataclasses.replace(config, classifier=dataclasses.replace(config.classifier, name="forest"))
    assert "classifier.name" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(tl.TransferlabError, match="alpha"):
        tl.load_config("ridge", overrides=["alpha=-1"])
    code, _, err = cli(capsys, "ridge", "alpha=0")
    assert "alpha" in one_line_error(code, err)


def test_a_setting_assigned_in_place_is_refused_before_the_run(tmp_path):
    config = tl.load_config("features")
    config.classifier.name = "forest"  # no __post_init__ sees this
    with pytest.raises(tl.TransferlabError, match="classifier.name"):
        tl.run("features", config, output_dir=tmp_path)
    assert not (tmp_path / "features").exists()
