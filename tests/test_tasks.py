"""Tasks as data: the registry's one-line errors, a user's text task in the Hub's folder layout, scikit-learn's
digits as an image task, a suite study of text and image tasks with its leaderboard, a changed task refused, and
CoOp's layouts (FGVCAircraft's list files, a split file's class names, ImageNet's classnames.txt) built small."""

import csv
import importlib
import json
from pathlib import Path

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


# --- CoOp's layouts (DATASETS.md and its datasets/*.py readers), built small ------------------------

def save_image(path, shade):
    """A small generated image, PNG-encoded (CoOp's readers name the files; the decoder reads the content)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (24, 24), color=(shade % 256, (3 * shade) % 256, 200)).save(path, format="PNG")


FGVC_VARIANTS = ["707-320", "A300B4", "Cessna 172"]


def write_fgvc(data_root, counts=None):
    """``$DATA/fgvc_aircraft`` as CoOp reads it: images/<id>.jpg, variants.txt, images_variant_{train,val,test}.txt
    (``<id> <variant>`` a line, variants with spaces included). Returns {image id: variant}."""
    folder = data_root / "fgvc_aircraft"
    (folder / "images").mkdir(parents=True)
    (folder / "variants.txt").write_text("".join(f"{v}\n" for v in FGVC_VARIANTS))
    truth, n = {}, 1_000_000
    for split, count in (counts or {"train": 3, "val": 1, "test": 2}).items():
        lines = []
        for variant in FGVC_VARIANTS:
            for _ in range(count):
                n += 1
                save_image(folder / "images" / f"{n:07d}.jpg", n)
                truth[f"{n:07d}"] = variant
                lines.append(f"{n:07d} {variant}\n")
        (folder / f"images_variant_{split}.txt").write_text("".join(lines))
    return truth


def load_task_images(name, tmp_path, **data):
    import dataclasses

    from transferlab.data.images import load_images
    from transferlab.experiments.clip.config import ClipConfig

    config = tasks.apply_task(ClipConfig(), tasks.load_task(name), work_dir=tmp_path / "work")
    return config, load_images(dataclasses.replace(config.data, val_per_class=1, **data))


def test_fgvc_aircraft_in_coops_layout_loads_through_the_registry(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_DATA", str(tmp_path / "data"))
    truth = write_fgvc(tmp_path / "data")
    config, data = load_task_images("fgvc_aircraft", tmp_path)
    assert data.class_names == FGVC_VARIANTS
    assert config.model.templates == ["a photo of a {name}, a type of aircraft."]
    assert len(data.source) == 3 * (3 + 1) and len(data.test) == 3 * 2  # CoOp's val joins train
    for split in (data.source, data.test):
        for image, label in zip(split["image"], split["label"]):
            assert truth[Path(image).resolve().stem] == FGVC_VARIANTS[label]  # every link to its own variant
    _, drawn = load_task_images("fgvc_aircraft", tmp_path, shots=2)
    assert sorted(drawn.train["label"]) == [0, 0, 1, 1, 2, 2]
    assert "coop11" in tasks.known_suites() and "fgvc_aircraft" in [t.name for t in tasks.load_suite("coop11")]


def test_fgvc_aircraft_errors_are_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_DATA", str(tmp_path / "data"))
    with pytest.raises(TransferlabError, match="does not exist: fix source.folder"):
        load_task_images("fgvc_aircraft", tmp_path)
    write_fgvc(tmp_path / "data", {"train": 2, "test": 1})  # no val list: CoOp's reader needs one
    with pytest.raises(TransferlabError, match=r"images_variant_val.txt \(val\) does not exist"):
        load_task_images("fgvc_aircraft", tmp_path)
    (tmp_path / "data" / "fgvc_aircraft" / "images_variant_val.txt").write_text("1000001 Boeing 999\n")
    with pytest.raises(TransferlabError, match="line 1: class 'Boeing 999' is not in variants.txt"):
        load_task_images("fgvc_aircraft", tmp_path)


def test_coop_split_file_gives_the_class_names(tmp_path, monkeypatch):
    """Caltech101 with CoOp's split_zhou_Caltech101.json: the labels and class names come from the split file
    (CoOp's renamed ones, underscores read as spaces as CoOp's prompts do), not from the view's folder names."""
    monkeypatch.setenv("TRANSFERLAB_DATA", str(tmp_path / "data"))
    folder = tmp_path / "data" / "caltech-101"
    split = {"train": [], "val": [], "test": []}
    for label, (directory, name) in enumerate([("Faces", "face"), ("ant", "ant"), ("water_lilly", "water_lilly")]):
        for i, part in enumerate(["train", "train", "val", "test"]):
            save_image(folder / "101_ObjectCategories" / directory / f"image_{i:04d}.jpg", 40 * label + i)
            split[part].append([f"{directory}/image_{i:04d}.jpg", label, name])
    (folder / "split_zhou_Caltech101.json").write_text(json.dumps(split))
    _, data = load_task_images("caltech101", tmp_path)
    assert data.class_names == ["face", "ant", "water lilly"]
    assert len(data.source) == 9 and len(data.test) == 3


def test_imagenet_takes_coops_classnames_by_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_DATA", str(tmp_path / "data"))
    root = tmp_path / "data" / "imagenet"
    for split, count in (("train", 3), ("val", 1)):
        for k, wnid in enumerate(["n00000002", "n00000001"]):
            for i in range(count):
                save_image(root / "images" / split / wnid / f"{wnid}_{i}.JPEG", 10 * k + i)
    with pytest.raises(TransferlabError, match="classnames.txt' does not exist: download CoOp's classnames.txt"):
        load_task_images("imagenet", tmp_path)
    (root / "classnames.txt").write_text("n00000002 great white shark\nn00000001 tench\n")
    _, data = load_task_images("imagenet", tmp_path)
    assert data.class_ids == ["n00000001", "n00000002"] and data.class_names == ["tench", "great white shark"]
