"""Hostile or damaged inputs someone may send: a study folder whose results or cell files are links to files
outside it, a run folder whose model is one, damaged results, YAML alias bombs, task files and manifests
holding the wrong kinds of value, a task or suite in a received study naming things outside it. Each is one
``error:`` line (exit code 2) that names the problem, and nothing outside the folder is read or reported."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_security import cli, one_line_error

from transferlab.data import manifests, tasks
from transferlab.errors import TransferlabError

SECRET = "0.987654"  # what a planted link would publish


@pytest.fixture(scope="module")
def study(tmp_path_factory, tiny_text_models) -> Path:
    """A finished one-cell features study on the tiny BERT."""
    out = tmp_path_factory.mktemp("received")
    from transferlab.cli.main import main

    assert main(["features", "--shots", "2", "--seeds", "0", "--output-dir", str(out), "--threads", "1",
                 f"encoder.model={tiny_text_models['bert']}", "data.limit=60", "classifier.C_grid=[1.0]",
                 "tracking.tensorboard=false", "run_name=got"]) == 0
    return out / "study" / "got"


def received(study: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "got"
    shutil.copytree(study, copy, symlinks=True)
    return copy


def with_value(csv_text: str, column: str, value: str) -> str:
    """The CSV text with ``column`` of its first row set to ``value``."""
    header, first, *rest = csv_text.splitlines()
    cells = first.split(",")
    cells[header.split(",").index(column)] = value
    return "\n".join([header, ",".join(cells), *rest]) + "\n"


def outside_copy(path: Path, tmp_path: Path, text: str) -> Path:
    """``path`` replaced by a link to a file outside its folder holding ``text``."""
    target = tmp_path / f"outside-{path.name}"
    target.write_text(text)
    path.unlink()
    path.symlink_to(target)
    return target


@pytest.mark.slow
@pytest.mark.parametrize("command", ["leaderboard", "report"])
def test_a_study_whose_results_are_a_link_outside_is_refused(study, tmp_path, capsys, command):
    got = received(study, tmp_path)
    results = got / "results.csv"
    outside_copy(results, tmp_path, with_value(results.read_text(), "value", SECRET))
    code, out, err = cli(capsys, command, got, *(["--output", tmp_path / "rep"] if command == "report" else []))
    line = one_line_error(code, err)
    assert f"{results} resolves to {tmp_path / 'outside-results.csv'}, outside the study folder {got}" in line
    assert SECRET not in out + err and not (got / "leaderboard.md").exists() and not (tmp_path / "rep").exists()


@pytest.mark.slow
def test_a_cell_file_linked_from_outside_is_refused(study, tmp_path, capsys):
    got = received(study, tmp_path)
    (predictions,) = (got / "features").glob("*/predictions/features.jsonl")
    outside_copy(predictions, tmp_path, predictions.read_text())
    code, _, err = cli(capsys, "leaderboard", got)
    assert "outside the study folder" in one_line_error(code, err) and not (got / "leaderboard.md").exists()


@pytest.mark.slow
def test_damaged_results_are_one_line_naming_the_cause(study, tmp_path, capsys):
    got = received(study, tmp_path)
    results = got / "results.csv"
    results.write_text(with_value(results.read_text(), "seed", "zero"))
    code, _, err = cli(capsys, "leaderboard", got)
    line = one_line_error(code, err)
    assert "leaderboard could not read what it was given (ValueError: invalid literal for int()" in line
    assert "a file of it is damaged or was not written by transferlab" in line


@pytest.mark.slow
@pytest.mark.parametrize("accuracy", [7.5, float("nan"), True])
def test_an_accuracy_that_is_no_fraction_is_one_line_not_a_figure(study, tmp_path, capsys, accuracy):
    (cell,) = (study / "features").iterdir()
    run = tmp_path / "run"
    shutil.copytree(cell, run)
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["methods"]["features"]["test"]["accuracy"] = accuracy
    (run / "metrics.json").write_text(json.dumps(metrics))
    code, _, err = cli(capsys, "report", run, "--output", tmp_path / "rep")
    assert f"has test accuracy {accuracy!r}, not a fraction from 0 to 1" in one_line_error(code, err)


@pytest.mark.slow
def test_predict_refuses_a_model_linked_from_outside(study, tmp_path, capsys):
    (cell,) = (study / "features").iterdir()
    run = tmp_path / "run"
    shutil.copytree(cell, run)
    (run / "classifier.skops").unlink()
    (run / "classifier.skops").symlink_to(cell / "classifier.skops")  # a working model, but not the run's own
    code, out, err = cli(capsys, "predict", run, "--text", "fine")
    assert "classifier.skops resolves to" in one_line_error(code, err) and "outside the run folder" in err
    assert out == ""


# --- YAML and task files --------------------------------------------------------------------------------------

BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b, *b]\n"


def test_a_yaml_alias_bomb_is_refused_before_it_expands(tmp_path, capsys):
    task = tmp_path / "bomb.yaml"
    task.write_text("name: bomb\nmodality: text\nsource: {hub: x/y}\ndescription: *d\n".replace(
        "description: *d", "description: &d hi\nclass_names: [*d, *d]"))
    with pytest.raises(TransferlabError, match=r"is not valid YAML \(an alias \(\*name\): write the value out"):
        tasks.load_task(str(task))
    config = tmp_path / "config.yaml"
    config.write_text(BOMB + "data: {limit: 60}\n")
    code, _, err = cli(capsys, "features", "--config", config, "--output-dir", tmp_path / "out")
    assert "an alias (*name): write the value out instead" in one_line_error(code, err)


@pytest.mark.parametrize("body, says", [
    ("splits: abc", "splits must be a mapping of names to names, got 'abc'"),
    ("class_names: ab", "class_names must be a list of names, got 'ab'"),
    ("reference: 'no'", "reference must be true or false, got 'no'"),
    ("columns: [text]", "columns must be a mapping of names to names"),
    ("description: [a]", "description must be text"),
    ("name: " + "a" * 300, "use letters, digits, '-' and '_' only, at most 100"),
    ("class_names: [" + "9" * 5000 + "]", "is not valid YAML (a value it cannot read (ValueError))"),
])
def test_a_task_file_holding_the_wrong_kind_of_value_is_one_line(tmp_path, body, says):
    task = tmp_path / "t.yaml"
    task.write_text(f"modality: text\nsource: {{hub: x/y}}\n{body}\n")
    with pytest.raises(TransferlabError) as raised:
        tasks.load_task(str(task))
    assert says in str(raised.value) and "\n" not in str(raised.value)


def test_a_received_task_or_suite_may_not_reach_outside_its_study(tmp_path):
    study = tmp_path / "study"
    study.mkdir()
    (study / "study.json").write_text("{}")
    local_dataset = tmp_path / "hubdir"
    local_dataset.mkdir()
    (study / "t.yaml").write_text(f"name: t\nmodality: text\nsource: {{hub: {local_dataset}}}\n")
    with pytest.raises(TransferlabError, match=f"names '{local_dataset}' outside it"):
        tasks.load_task(str(study / "t.yaml"))
    (tmp_path / "elsewhere.yaml").write_text("name: e\nmodality: text\nsource: {hub: x/y}\n")
    (study / "suite.yaml").write_text("name: s\ntasks: [../elsewhere.yaml]\n")
    with pytest.raises(TransferlabError, match="names the task file '../elsewhere.yaml' outside it"):
        tasks.load_suite(str(study / "suite.yaml"))


# --- split manifests ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("line, says", [
    ('{"split": "train", "id": "abc", "label": 0}', "id must be a row of the pool (a whole number, 0 or more)"),
    ('{"split": "train", "id": 2.9, "label": 0}', "got '2.9'"),
    ('{"split": "train", "id": true, "label": 0}', "got 'True'"),
    ('{"split": "train", "id": -1, "label": 0}', "got '-1'"),
    ('{"split": "train", "id": NaN, "label": 0}', "got 'nan'"),
    ('{"split": "test", "id": 1, "label": 0}', "split must be train or validation, got 'test'"),
    ('{"split": ["train"], "id": 1, "label": 0}', "split must be train or validation"),
    ('{"split": "train", "id": 1, "label": [0]}', "label must be a class index or name"),
    ('{"split": "train", "id": ' + "9" * 5000 + ', "label": 0}', "line 1 is not JSON"),
    ("5", "line 1 is not a JSON object"),
    ("[" * 100000 + "]" * 100000, "line 1 is not JSON"),
])
def test_a_manifest_line_of_the_wrong_kind_is_one_line(tmp_path, line, says):
    path = tmp_path / "m.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(TransferlabError) as raised:
        manifests.check_manifest(path, [0, 1, 0, 1])
    assert says in str(raised.value) and "line 1" in str(raised.value)


def test_a_manifest_with_a_byte_order_mark_reads_and_one_not_utf8_is_one_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"split": "train", "id": 1, "label": 1}).encode() + b"\n")
    assert manifests.check_manifest(path, [0, 1]) == {"train": [1]}
    path.write_bytes(b'{"split": "train", "id": 1, "label": "\xe9"}\n')
    with pytest.raises(TransferlabError, match="is not UTF-8 text"):
        manifests.check_manifest(path, [0, 1])


# --- the command line -----------------------------------------------------------------------------------------

def test_an_argument_error_is_one_line_naming_the_help(capsys):
    from transferlab.cli.main import main

    with pytest.raises(SystemExit) as stop:
        main(["features", "--shots"])
    err = capsys.readouterr().err
    assert stop.value.code == 2
    assert err == "error: transferlab features: argument --shots: expected one argument " \
                  "(see transferlab features --help)\n"


def test_a_one_class_image_folder_is_refused(tmp_path):
    from test_tasks import save_image

    from transferlab.data.images import load_folder

    for i in range(4):
        save_image(tmp_path / "train" / "only" / f"{i}.png", i)
    save_image(tmp_path / "test" / "only" / "t.png", 9)
    with pytest.raises(TransferlabError, match="holds 1 class: classification needs two or more classes"):
        load_folder(tmp_path, val_per_class=1)


def test_predict_reads_a_csv_with_a_byte_order_mark(tmp_path):
    from transferlab.experiments.predict import read_texts

    path = tmp_path / "texts.csv"
    path.write_bytes(b"\xef\xbb\xbftext,label\ngood film,1\n")
    assert read_texts(str(path)) == ["good film"]
