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
