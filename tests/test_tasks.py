"""Tasks as data: the registry's one-line errors, a user's text task in the Hub's folder layout, scikit-learn's
digits as an image task, a suite study of text and image tasks with its leaderboard, a changed task refused."""

import csv
import importlib
import json

import pytest

from transferlab.data import tasks
from transferlab.errors import TransferlabError

cli = importlib.import_module("transferlab.cli.main")


def test_builtin_tasks_load_and_unknown_is_one_line():
    names = tasks.known_tasks()
    assert {"rotten_tomatoes", "tiny_imagenet", "sst2", "caltech101"} <= set(names)
    for name in names:
        assert tasks.load_task(name).name == name
    with pytest.raises(TransferlabError, match="unknown task 'nope': give one of ag_news"):
        tasks.load_task("nope")


def test_modality_mismatch_is_one_line(capsys):
    assert cli.main(["features", "--task", "tiny_imagenet", "--print-config"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: task tiny_imagenet is a image task but this experiment reads text data")
    assert len(err.splitlines()) == 1


def test_source_override_beside_task_is_refused(capsys):
    assert cli.main(["features", "--task", "rotten_tomatoes", "data.source=files", "--print-config"]) == 2
    assert "data.source is set by --task rotten_tomatoes" in capsys.readouterr().err


def write_text_task(folder, n=24):
    """A text task in the Hub's data-files layout: train.csv and test.csv beside a task file."""
    (folder / "data").mkdir(parents=True)
    words = {"good": ["fine", "great", "lovely", "superb"], "bad": ["awful", "poor", "dull", "grim"]}
    for split in ("train", "test"):
        with (folder / "data" / f"{split}.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["sentence", "sentiment"])
            for i in range(n):
                label = "good" if i % 2 else "bad"
                writer.writerow([f"a {words[label][i % 4]} film number {i}", label])
    task = folder / "reviews.yaml"
    task.write_text("name: reviews\nmodality: text\nsource: {folder: data}\n"
                    "columns: {text: sentence, label: sentiment}\nclass_names: [bad, good]\n")
    return task


def write_digits_task(folder, per_class=12):
    """scikit-learn's bundled digits as an image folder (train/<digit>/, test/<digit>/) and its task file."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    seen = {}
    for image, label in zip(digits.images, digits.target):
        if label > 3 or seen.get(label, 0) >= 2 * per_class:
            continue
        split = "train" if seen.get(label, 0) < per_class else "test"
        seen[label] = seen.get(label, 0) + 1
        path = folder / "digits" / split / f"digit_{label}" / f"{seen[label]}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((image * 255 / 16).astype("uint8")).resize((32, 32)).save(path)
    task = folder / "digits.yaml"
    task.write_text("name: digits\nmodality: image\nsource: {folder: digits}\n"
                    "class_names: [zero, one, two, three]\ntemplates: ['a photo of the digit {}.']\n")
    return task


@pytest.mark.slow
def test_user_task_runs_end_to_end(tmp_path):
    task = write_text_task(tmp_path / "mine")
    run = cli.main(["features", "--task", str(task), "--output-dir", str(tmp_path / "out"), "run_name=r"])
    assert run == 0
    metrics = json.loads((tmp_path / "out" / "features" / "r" / "metrics.json").read_text())
    assert metrics["methods"]


@pytest.mark.slow
def test_suite_study_leaderboard_and_changed_task_refused(tmp_path, capsys):
    digits = write_digits_task(tmp_path)
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"name: mixed\ntasks: [rotten_tomatoes, {digits.name}, tiny_imagenet_animals]\n")
    args = ["run", "--stages", "features,zeroshot", "--suite", str(suite), "--shots", "4", "--seeds", "0,1",
            "--output-dir", str(tmp_path / "out"), "features.data.limit=200"]
    assert cli.main(args) == 0
    study = tmp_path / "out" / "study" / "offline-suite"
    state = json.loads((study / "study.json").read_text())
    assert set(state["tasks"]) == {"rotten_tomatoes", "digits", "tiny_imagenet_animals"}
    assert {r["dataset"] for r in csv.DictReader((study / "results.csv").open())} == set(state["tasks"])
    assert cli.main(["leaderboard", str(study)]) == 0
    board = (study / "leaderboard.md").read_text()
    assert "## image, K = full" in board and "## text, K = 4" in board and "average rank" in board
    digits.write_text(digits.read_text().replace("the digit", "a digit"))  # the task changes
    capsys.readouterr()
    assert cli.main(args) == 2
    assert "holds a study with other" in capsys.readouterr().err


def test_received_task_stays_inside_its_study(tmp_path):
    study = tmp_path / "study"
    study.mkdir()
    (study / "study.json").write_text("{}")
    (study / "t.yaml").write_text("name: t\nmodality: text\nsource: {folder: ../elsewhere}\n")
    with pytest.raises(TransferlabError, match="outside it"):
        tasks.load_task(str(study / "t.yaml"))
