"""The image data loaders: Tiny ImageNet's layout, imagefolder trees, splits, lazy decoding, errors."""

from pathlib import Path

import numpy as np
import pytest

from clip_fixtures import WNIDS, image, tiny_imagenet_tree
from helpers import SHARED
from transferlab.data.images import DEMO_PATH, holdout, load_folder, open_rgb, with_pixels
from transferlab.errors import TransferlabError


@pytest.fixture
def tree(tmp_path) -> Path:
    return tiny_imagenet_tree(tmp_path / "tiny")


def test_tiny_imagenet_layout(tree):
    data = load_folder(tree, val_per_class=2, seed=1)
    assert data.class_ids == WNIDS
    assert data.class_names == ["goldfish", "European fire salamander", "Egyptian cat"]
    assert data.definitions[0].startswith("small golden or orange-red freshwater fishes")
    assert (len(data.train), len(data.validation), len(data.test)) == (18, 6, 9)
    assert sorted(np.bincount(data.validation["label"])) == [2, 2, 2]
    assert not set(list(data.train["image"])) & set(list(data.validation["image"]))
    assert data.test["image"][0].endswith("val/images/val_0.JPEG") and data.test["label"][:4] == [0, 0, 0, 1]
    again = load_folder(tree, val_per_class=2, seed=1)
    assert list(again.validation["image"]) == list(data.validation["image"])
    assert list(load_folder(tree, val_per_class=2, seed=2).validation["image"]) != list(data.validation["image"])


def test_lazy_decoding_and_greyscale(tree):
    data = load_folder(tree, val_per_class=2)
    assert data.train.column_names == ["image", "label"]  # paths only: nothing decoded up front
    grey = next(p for p in list(data.train["image"]) + list(data.validation["image"]) if p.endswith(f"{WNIDS[0]}_0.JPEG"))
    assert open_rgb(grey).mode == "RGB"
    seen = []
    view = with_pixels(data.train, lambda ims: seen.append(len(ims)) or np.stack([np.asarray(i) for i in ims]))
    batch = view[0:4]
    assert seen == [4] and batch["pixel_values"][0].shape == (16, 16, 3) and len(batch["labels"]) == 4


def test_holdout_is_per_class():
    labels = [0] * 10 + [1] * 5
    train, val = holdout(labels, 2, seed=0)
    assert len(val) == 4 and sorted(np.bincount(np.asarray(labels)[val])) == [2, 2]
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(15))


def test_imagefolder_tree(tmp_path):
    for split, n in (("train", 5), ("test", 2)):
        for c, name in enumerate(["apple", "banana_split"]):
            (tmp_path / split / name).mkdir(parents=True)
            for k in range(n):
                image(tmp_path / split / name / f"{k}.jpg", c)
    data = load_folder(tmp_path, val_per_class=1)
    assert data.class_names == ["apple", "banana split"]
    assert (len(data.train), len(data.validation), len(data.test)) == (8, 2, 4)


def test_vendored_demo_subset():
    data = load_folder(DEMO_PATH, val_per_class=5)
    assert len(data.class_ids) == 20 and len(data.test) == 200 and len(data.train) + len(data.validation) == 500


def test_not_a_layout(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(TransferlabError, match="not a recognised image data layout: expected Tiny ImageNet"):
        load_folder(tmp_path)
    with pytest.raises(TransferlabError, match="does not exist"):
        load_folder(tmp_path / "missing")


def test_annotation_class_missing_from_wnids(tree):
    path = tree / "val" / "val_annotations.txt"
    path.write_text(path.read_text() + "val_x.JPEG\tn99999999\t0\t0\t1\t1\n")
    with pytest.raises(TransferlabError, match=r"class 'n99999999' in .*val_annotations.txt \(line 10\) is missing from .*wnids.txt"):
        load_folder(tree)


def test_corrupt_image_skip_or_fail(tree):
    bad = tree / "train" / WNIDS[1] / "images" / f"{WNIDS[1]}_3.JPEG"
    bad.write_bytes(b"not a jpeg")
    data = load_folder(tree, val_per_class=2, on_corrupt="skip")
    assert data.skipped == {"train": 1, "test": 0} and len(data.train) + len(data.validation) == 23
    with pytest.raises(TransferlabError, match=r"1 unreadable image\(s\) in the train split.*data.on_corrupt=skip"):
        load_folder(tree, on_corrupt="fail")


def test_class_name_file(tree, tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("fish\nnewt\ncat\n")
    assert load_folder(tree, val_per_class=2, class_names_file=str(names)).class_names == ["fish", "newt", "cat"]
    names.write_text("fish\nnewt\n")
    with pytest.raises(TransferlabError, match="has 2 names but the data has 3 classes"):
        load_folder(tree, class_names_file=str(names))


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "tiny-imagenet-200").is_dir(), reason="../shared/data is not here")
def test_shared_tiny_imagenet():
    data = load_folder(SHARED / "tiny-imagenet-200", val_per_class=1, max_train_per_class=3, max_test_per_class=2)
    assert len(data.class_ids) == 200 and data.class_ids[0] == "n02124075" and data.class_names[0] == "Egyptian cat"
    assert (len(data.train), len(data.validation), len(data.test)) == (400, 200, 400)
    first = data.test["image"][0]
    assert first.endswith("val_0.JPEG") and data.class_ids[data.test["label"][0]] == "n03444034"
