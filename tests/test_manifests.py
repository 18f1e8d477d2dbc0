"""Split manifests: a real K-shot draw written, read back and checked; tampered or foreign manifests refused."""

import pytest

from transferlab.data.fewshot import fewshot_split
from transferlab.data.manifests import check_manifest, write_manifest
from transferlab.errors import TransferlabError


def draw():
    labels = [i % 3 for i in range(60)]
    train, validation = fewshot_split(labels, 4, seed=1)
    return labels, {"train": [int(i) for i in train], "validation": [int(i) for i in validation]}


def test_round_trip(tmp_path):
    labels, rows = draw()
    sha = write_manifest(tmp_path / "m.jsonl", rows, labels)
    assert len(sha) == 64
    assert check_manifest(tmp_path / "m.jsonl", labels) == rows


def test_tampered_and_foreign_manifests_are_refused(tmp_path):
    labels, rows = draw()
    path = tmp_path / "m.jsonl"
    write_manifest(path, rows, labels)
    text = path.read_text()
    path.write_text(text.replace(f'"id": {rows["train"][0]},', f'"id": {rows["train"][0] + 1},', 1))
    with pytest.raises(TransferlabError, match="SHA-256"):
        check_manifest(path, labels)
    path.write_text(text)
    with pytest.raises(TransferlabError, match="labelled"):
        check_manifest(path, [(x + 1) % 3 for x in labels])
    with pytest.raises(TransferlabError, match="not in the pool"):
        check_manifest(path, labels[:5])


# --- manifests wired into the runs ---------------------------------------------------------------

import json  # noqa: E402
import os  # noqa: E402
from pathlib import Path  # noqa: E402

from transferlab.cli import main  # noqa: E402
from transferlab.data.manifests import MANIFEST, digest, given_draw  # noqa: E402


def features_run(args, out, capsys, *extra):
    code = main(["features", "--output-dir", str(out), *args, *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def features_args(tiny_distilbert):
    return [f"encoder.model={tiny_distilbert}", "encoder.pooling=cls", "data.limit=60", "data.shots=4",
            "classifier.C_grid=[0.1,1,10]"]


def figures(run: Path) -> dict:
    methods = json.loads((run / "metrics.json").read_text())["methods"]["features"]
    return {split: (methods[split]["accuracy"], methods[split]["n_examples"]) for split in ("validation", "test")}


def rewrite(path: Path, change, keep_sha: bool = False) -> Path:
    """The manifest at ``path`` with ``change(record)`` applied to its first train line; its SHA-256 line kept
    as it was (``keep_sha``) or recomputed, so only the check under test can refuse it."""
    lines = path.read_text().splitlines(keepends=True)
    records = [json.loads(line) for line in lines[:-1]]
    change(next(r for r in records if r["split"] == "train"))
    body = [json.dumps(r, sort_keys=True) + "\n" for r in records]
    sha = json.loads(lines[-1])["sha256"] if keep_sha else digest(body)
    out = path.with_name(f"tampered-{len(list(path.parent.iterdir()))}.jsonl")
    out.write_text("".join(body) + json.dumps({"sha256": sha, "examples": len(body)}) + "\n")
    return out


@pytest.mark.slow  # three features runs
def test_a_run_writes_its_draw_and_a_run_given_it_trains_on_the_same_examples(features_args, tmp_path, capsys):
    code, out, err = features_run(features_args, tmp_path / "a", capsys, "run_name=drawn")
    assert code == 0, err
    first = Path(out.strip().splitlines()[-1])
    manifest = first / MANIFEST
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    train = [r for r in records[:-1] if r["split"] == "train"]
    assert len(train) == 8 and sorted(r["label"] for r in train) == [0] * 4 + [1] * 4  # K = 4 of each class
    details = json.loads((first / "metrics.json").read_text())["details"]["fewshot"]
    assert details["manifest_sha256"] == records[-1]["sha256"] and details.get("manifest") is None

    given = ["run_name=given", f"data.manifest={manifest}"]
    code, out, err = features_run(features_args, tmp_path / "b", capsys, *given)
    assert code == 0, err
    second = Path(out.strip().splitlines()[-1])
    assert (second / MANIFEST).read_bytes() == manifest.read_bytes()  # the same training and validation examples
    assert figures(second) == figures(first)
    metrics = json.loads((second / "metrics.json").read_text())
    assert metrics["details"]["fewshot"]["manifest"] == str(manifest)
    assert metrics["details"]["fewshot"]["manifest_sha256"] == records[-1]["sha256"]
    assert any("split manifest" in note for note in metrics["notes"])
    assert f"manifest: {manifest}" in (second / "config.yaml").read_text()

    code, out, err = features_run(features_args, tmp_path / "c", capsys, "run_name=seeded", "seed=7",
                                  f"data.manifest={manifest}")  # another seed: the manifest, not a new draw
    assert code == 0, err
    assert (Path(out.strip().splitlines()[-1]) / MANIFEST).read_bytes() == manifest.read_bytes()


@pytest.mark.slow  # a features run, then the CLI three times
@pytest.mark.parametrize("change, keep_sha, says", [
    (lambda r: r.update(label=1 - r["label"]), False, "is labelled"),
    (lambda r: r.update(id=r["id"] + 1), True, "SHA-256"),
    (lambda r: r.update(id=10_000), False, "is not in the pool of 60 examples"),
])
def test_a_tampered_manifest_is_refused_in_one_line(features_args, tmp_path, capsys, change, keep_sha, says):
    code, out, err = features_run(features_args, tmp_path / "a", capsys, "run_name=drawn")
    assert code == 0, err
    tampered = rewrite(Path(out.strip().splitlines()[-1]) / MANIFEST, change, keep_sha)
    code, out, err = features_run(features_args, tmp_path / "b", capsys, f"data.manifest={tampered}")
    assert code == 2
    assert err.startswith("error: data.manifest: manifest") and says in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "b" / "features").exists()  # refused before any run directory


def test_manifest_checks_shots_splits_and_fills_in_validation(tmp_path):
    labels, rows = draw()
    path = tmp_path / "m.jsonl"
    write_manifest(path, rows, labels)
    train, validation = given_draw(path, labels, 4, seed=1, validation_shots=4)
    assert train.tolist() == sorted(rows["train"]) and validation.tolist() == sorted(rows["validation"])
    with pytest.raises(TransferlabError, match="has 4 train examples of class 0, data.shots is 8"):
        given_draw(path, labels, 8, seed=1, validation_shots=4)
    write_manifest(path, {"train": rows["train"]}, labels)  # CoOp-style: train only
    train, validation = given_draw(path, labels, None, seed=1, validation_shots=2)
    assert not set(train.tolist()) & set(validation.tolist())
    assert sorted(labels[i] for i in validation) == [0, 0, 1, 1, 2, 2]
    write_manifest(path, {"train": rows["train"], "validation": rows["train"][:1]}, labels)
    with pytest.raises(TransferlabError, match="must not share examples"):
        given_draw(path, labels, None, seed=1, validation_shots=2)
    write_manifest(path, {"train": [i for i in rows["train"] if labels[i] != 2]}, labels)
    with pytest.raises(TransferlabError, match="no train example of class 2"):
        given_draw(path, labels, None, seed=1, validation_shots=2)


def test_a_manifest_in_a_received_study_must_stay_inside_it(tmp_path):
    labels, rows = draw()
    write_manifest(tmp_path / "outside.jsonl", rows, labels)
    study = tmp_path / "study"
    study.mkdir()
    (study / "study.json").write_text("{}")
    os.symlink(tmp_path / "outside.jsonl", study / "m.jsonl")
    with pytest.raises(TransferlabError, match="outside it"):
        check_manifest(study / "m.jsonl", labels)
    write_manifest(study / "inside.jsonl", rows, labels)
    assert check_manifest(study / "inside.jsonl", labels) == rows


def test_an_image_draw_and_its_manifest_give_the_same_images(tmp_path):
    from transferlab.data.images import ImageDataConfig, load_images

    drawn = load_images(ImageDataConfig(shots=2, val_per_class=2), seed=3)
    assert drawn.write_manifest(tmp_path) == drawn.fewshot["manifest_sha256"]
    given = load_images(ImageDataConfig(shots=2, val_per_class=2, manifest=str(tmp_path / MANIFEST)), seed=0)
    assert given.train["image"] == drawn.train["image"] and given.validation["image"] == drawn.validation["image"]
    assert given.fewshot["manifest_sha256"] == drawn.fewshot["manifest_sha256"]
    assert "from data.manifest=" in given.draw_note()[0]
    assert load_images(ImageDataConfig(val_per_class=2)).write_manifest(tmp_path / "none") is None


def test_the_pool_a_manifest_was_drawn_from_is_checked_where_both_are_known(tmp_path):
    labels = [0, 1] * 6
    rows = {"train": [0, 1, 2, 3], "validation": [4, 5]}
    path = tmp_path / "m.jsonl"
    write_manifest(path, rows, labels, pool="a1b2c3")
    assert given_draw(path, labels, 2, seed=0, validation_shots=1, pool="a1b2c3")[0].tolist() == [0, 1, 2, 3]
    assert given_draw(path, labels, 2, seed=0, validation_shots=1)[0].tolist() == [0, 1, 2, 3]  # pool unknown
    with pytest.raises(TransferlabError, match="drawn from another pool of examples .fingerprint a1b2c3, this "
                                               "data's ffff"):
        given_draw(path, labels, 2, seed=0, validation_shots=1, pool="ffff")
    write_manifest(path, rows, labels)  # a manifest made by hand: no fingerprint, not checked
    assert given_draw(path, labels, 2, seed=0, validation_shots=1, pool="ffff")[1].tolist() == [4, 5]
