"""CoOp's few-shot split files (``split_fewshot/shot_K-seed_S.pkl``, pickles of Dassl's ``Datum`` records made on
another machine) converted by ``transferlab manifest`` into a split manifest of a task's images: a run given it
trains and validates on exactly CoOp's images; a pickle naming anything but ``Datum`` is refused in one line
before anything in it runs; a split of other images or another class order is one line."""

from __future__ import annotations

import dataclasses
import json
import pickle
import sys
import types
from pathlib import Path

import pytest
from test_security import Payload, cli, one_line_error
from test_tasks import save_image

from transferlab.data import tasks
from transferlab.data.images import load_images
from transferlab.errors import TransferlabError
from transferlab.experiments.clip.config import ClipConfig

CLASSES = [("Faces", "face"), ("ant", "ant"), ("water_lilly", "water_lilly")]
ELSEWHERE = "/home/you/coop-data/caltech-101/101_ObjectCategories"  # where CoOp's files were made


class Datum:
    """Dassl's record (``dassl.data.datasets.base_dataset.Datum``), as CoOp pickles it."""

    def __init__(self, impath="", label=0, domain=0, classname=""):
        self._impath, self._label, self._domain, self._classname = impath, label, domain, classname


DASSL = types.ModuleType("dassl.data.datasets.base_dataset")
Datum.__module__ = DASSL.__name__  # pickled as Dassl's own class
DASSL.Datum = Datum


@pytest.fixture
def caltech(tmp_path, monkeypatch) -> Path:
    """CoOp's Caltech101 layout, small: 3 classes, 5 train, 2 val and 1 test image each."""
    monkeypatch.setenv("TRANSFERLAB_DATA", str(tmp_path / "data"))
    for name in ("dassl", "dassl.data", "dassl.data.datasets"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, DASSL.__name__, DASSL)
    folder = tmp_path / "data" / "caltech-101"
    split = {"train": [], "val": [], "test": []}
    for label, (directory, name) in enumerate(CLASSES):
        for i, part in enumerate(["train"] * 5 + ["val"] * 2 + ["test"]):
            save_image(folder / "101_ObjectCategories" / directory / f"image_{i:04d}.jpg", 40 * label + i)
            split[part].append([f"{directory}/image_{i:04d}.jpg", label, name])
    (folder / "split_zhou_Caltech101.json").write_text(json.dumps(split))
    return folder


def datum(directory: str, i: int, label: int, name: str) -> Datum:
    return Datum(f"{ELSEWHERE}/{directory}/image_{i:04d}.jpg", label, -1, name)


def coop_draw(train_images=(1, 3), val_images=(5,)) -> dict:
    """A 2-shot draw as CoOp's ``generate_fewshot_dataset`` saves it: train from train, val from val."""
    return {"train": [datum(d, i, label, name) for label, (d, name) in enumerate(CLASSES) for i in train_images],
            "val": [datum(d, i, label, name) for label, (d, name) in enumerate(CLASSES) for i in val_images]}


def write_pickle(path: Path, data, protocol=pickle.HIGHEST_PROTOCOL) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    return path


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_a_coop_draw_becomes_a_manifest_whose_run_uses_exactly_its_images(caltech, tmp_path, capsys, protocol):
    split = write_pickle(caltech / "split_fewshot" / "shot_2-seed_1.pkl", coop_draw(), protocol)
    manifest = tmp_path / "m.jsonl"
    code, out, err = cli(capsys, "manifest", split, "--task", "caltech101", "--output", manifest,
                         "--output-dir", tmp_path / "logs")
    assert code == 0, err
    assert "caltech101: 6 train and 3 validation images of 3 classes from shot_2-seed_1.pkl" in out
    assert f"data.shots=2 data.manifest={manifest}" in out

    config = tasks.apply_task(ClipConfig(), tasks.load_task("caltech101"), work_dir=tmp_path / "logs" / "tasks")
    data = load_images(dataclasses.replace(config.data, shots=2, manifest=str(manifest), val_per_class=1), seed=7)
    real = caltech / "101_ObjectCategories"
    assert sorted(str(Path(p).resolve()) for p in data.train["image"]) == \
        sorted(str(real / d / f"image_{i:04d}.jpg") for d, _ in CLASSES for i in (1, 3))
    assert sorted(str(Path(p).resolve()) for p in data.validation["image"]) == \
        sorted(str(real / d / "image_0005.jpg") for d, _ in CLASSES)
    for split_data in (data.train, data.validation):  # every image with its own class
        for image, label in zip(split_data["image"], split_data["label"]):
            assert Path(image).resolve().parent.name == CLASSES[label][0]


def test_a_pickle_naming_anything_but_datum_is_refused_before_it_runs(caltech, tmp_path, capsys):
    marker = tmp_path / "ran"
    draw = coop_draw()
    draw["train"].append(Payload(marker))
    split = write_pickle(tmp_path / "shot_2-seed_1.pkl", draw)
    code, _, err = cli(capsys, "manifest", split, "--task", "caltech101", "--output-dir", tmp_path / "logs")
    line = one_line_error(code, err)
    assert "is not a CoOp few-shot split (UnpicklingError: it names io.open)" in line
    assert "only Dassl Datum records are read" in line
    assert not marker.exists() and not (tmp_path / "logs" / "manifests").exists()


@pytest.mark.parametrize("change, says", [
    (lambda d: d["train"].__setitem__(0, datum("ant", 1, 0, "face")), "train image 'ant/image_0001.jpg' is "
                                                                       "class 0 ('face') there but 1 ('ant')"),
    (lambda d: d["val"].__setitem__(0, datum("Faces", 9, 0, "face")), "validation image 'Faces/image_0009.jpg' "
                                                                      "is not one image of the task's data"),
    (lambda d: d["train"].__setitem__(0, Datum(f"{ELSEWHERE}/Faces/image_0001.jpg", "0", -1, "face")),
     "train record 0 is not a Datum with an image path, an integer label"),
    (lambda d: d.pop("train"), "it needs a 'train' list of Datum records"),
    (lambda d: d["train"].__setitem__(1, datum("Faces", 1, 0, "face")), "lists a train example twice"),
])
def test_a_split_of_other_images_or_another_class_order_is_one_line(caltech, tmp_path, capsys, change, says):
    draw = coop_draw()
    change(draw)
    split = write_pickle(tmp_path / "shot_2-seed_1.pkl", draw)
    output = tmp_path / "m.jsonl"
    output.write_text("an earlier manifest\n")
    code, _, err = cli(capsys, "manifest", split, "--task", "caltech101", "--output", output,
                       "--output-dir", tmp_path / "logs")
    assert says in one_line_error(code, err) and ".partial" not in err
    assert output.read_text() == "an earlier manifest\n" and not list(tmp_path.glob(".*partial"))  # kept


def test_not_a_pickle_or_not_an_image_task_is_one_line(caltech, tmp_path, capsys):
    junk = tmp_path / "shot_1-seed_1.pkl"
    junk.write_text("not a pickle")
    code, _, err = cli(capsys, "manifest", junk, "--task", "caltech101", "--output-dir", tmp_path / "logs")
    assert "is not a CoOp few-shot split" in one_line_error(code, err)
    split = write_pickle(tmp_path / "shot_2-seed_1.pkl", coop_draw())
    code, _, err = cli(capsys, "manifest", split, "--task", "rotten_tomatoes", "--output-dir", tmp_path / "logs")
    assert "task rotten_tomatoes is a text task: a CoOp few-shot split is for an image task" in \
        one_line_error(code, err)
    code, _, err = cli(capsys, "manifest", tmp_path / "none.pkl", "--task", "caltech101")
    assert "does not exist: give the path of a split_fewshot/shot_K-seed_S.pkl file" in one_line_error(code, err)


def test_a_small_file_repeating_one_record_millions_of_times_is_refused_at_once(caltech, tmp_path, capsys):
    one = datum("Faces", 1, 0, "face")
    split = write_pickle(tmp_path / "shot_1-seed_1.pkl", {"train": [one] * 1_000_000, "val": []})
    assert split.stat().st_size < 4_000_000  # memo references: a few bytes a record
    code, _, err = cli(capsys, "manifest", split, "--task", "caltech101", "--output-dir", tmp_path / "logs")
    assert "its 'train' lists 1,000,000 records, more than any CoOp draw (200,000 at most)" in \
        one_line_error(code, err)


def test_a_manifest_given_a_changed_pool_is_refused_not_misread(caltech, tmp_path, capsys):
    """The pool's images are in row order, so a pool changed within a class (here one image that was unreadable
    and is dropped, shifting the rows after it) would pass the label check and give other images."""
    split = write_pickle(caltech / "split_fewshot" / "shot_2-seed_1.pkl", coop_draw())
    manifest = tmp_path / "m.jsonl"
    code, _, err = cli(capsys, "manifest", split, "--task", "caltech101", "--output", manifest,
                       "--output-dir", tmp_path / "logs")
    assert code == 0, err
    assert '"pool": ' in manifest.read_text().splitlines()[-1]
    (caltech / "101_ObjectCategories" / "ant" / "image_0000.jpg").write_bytes(b"not an image any more")
    config = tasks.apply_task(ClipConfig(), tasks.load_task("caltech101"), work_dir=tmp_path / "logs" / "tasks")
    with pytest.raises(TransferlabError, match="was drawn from another pool of examples"):
        load_images(dataclasses.replace(config.data, shots=2, manifest=str(manifest), val_per_class=1), seed=7)
