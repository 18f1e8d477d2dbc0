"""Split manifests: a few-shot draw as JSON Lines, so a draw can be kept, published and given back.

One line per drawn example, ``{"split": "train"|"validation", "id": <row of the train pool>, "label": <class>}``,
then one closing line ``{"sha256": <hex>, "examples": N, "pool": <fingerprint>}``: the SHA-256 of the example
lines' bytes (each line with its newline) and the fingerprint of the pool the ids index (:func:`closing_line`).
An external manifest (CoOp's few-shot split files, converted by ``transferlab manifest``
(data/coop_fewshot.py); others converted by hand) is checked before use: every id exists in the pool, every
label agrees with the pool's, the pool is the one it was drawn from where it records that, and the SHA-256
matches where the file has one. A run given
``data.manifest=FILE`` trains on the manifest's examples instead of a draw (:func:`given_draw`); every run with
a draw writes its own manifest into its run directory (:func:`save_draw`).
A manifest inside a received study folder (one holding ``study.json``) is data: it must resolve inside it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from transferlab.errors import TransferlabError

MANIFEST = "split_manifest.jsonl"


def manifest_lines(rows: dict[str, Sequence[int]], labels: Sequence) -> list[str]:
    """The example lines of a draw: ``rows`` (split -> row indices of the pool), ``labels`` the pool's labels."""
    return [json.dumps({"split": split, "id": int(i), "label": labels[int(i)]}, sort_keys=True) + "\n"
            for split in ("train", "validation") for i in rows.get(split, [])]


def digest(lines: Sequence[str]) -> str:
    return hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()


def closing_line(sha: str, examples: int, pool: str | None) -> str:
    """The last line: the examples' SHA-256, their count, and the fingerprint of the pool their ids index (each
    example's content in row order: a pool changed within a class would otherwise pass the label check)."""
    return json.dumps({"sha256": sha, "examples": examples, **({"pool": pool} if pool else {})}) + "\n"


def write_manifest(path: str | Path, rows: dict[str, Sequence[int]], labels: Sequence,
                   pool: str | None = None) -> str:
    """The draw's manifest at ``path`` (``<run dir>/split_manifest.jsonl``); returns its SHA-256."""
    lines = manifest_lines(rows, labels)
    sha = digest(lines)
    Path(path).write_text("".join(lines) + closing_line(sha, len(lines), pool))
    return sha


SPLITS = ("train", "validation")


def manifest_record(line: str, n: int, path: Path) -> dict | None:
    """Line ``n`` parsed and checked (``None``: a blank line): an example ``{"split": "train" | "validation",
    "id": <a row: a whole number, 0 or more>, "label": <an integer or a name>}`` or the closing ``{"sha256"}``."""
    if not line.strip():
        return None
    where = f"manifest {str(path)!r} line {n}"
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):  # not JSON, a number too long to read, nested too deep
        raise TransferlabError(f"{where} is not JSON: fix or remove it") from None
    if not isinstance(record, dict):
        raise TransferlabError(f"{where} is not a JSON object: each line is {{\"split\", \"id\", \"label\"}}")
    if "sha256" in record:
        if not isinstance(record["sha256"], str) or not isinstance(record.get("pool", ""), str):
            raise TransferlabError(f"{where}: sha256 (and pool) must be hex strings")
        return record
    if not {"split", "id", "label"} <= set(record):
        raise TransferlabError(f"{where} lacks split, id or label")
    split, row, label = record["split"], record["id"], record["label"]
    if not isinstance(split, str) or split not in SPLITS:
        raise TransferlabError(f"{where}: split must be train or validation, got {str(split)[:40]!r}")
    if type(row) is not int or row < 0:
        raise TransferlabError(f"{where}: id must be a row of the pool (a whole number, 0 or more), got "
                               f"{str(row)[:40]!r}")
    if type(label) not in (int, str):
        raise TransferlabError(f"{where}: label must be a class index or name, got {str(label)[:40]!r}")
    return record


def read_manifest(path: str | Path) -> tuple[dict[str, list[int]], dict[int, object], str | None, str | None]:
    """(split -> ids, id -> label, the recorded SHA-256 or ``None``, the pool's fingerprint or ``None``), checked
    against the SHA-256 it records."""
    path = Path(path)
    if not path.is_file():
        raise TransferlabError(f"manifest {str(path)!r} does not exist: give data.manifest=<a JSONL split manifest>")
    check_received(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise TransferlabError(f"manifest {str(path)!r} is not UTF-8 text: give a JSONL split manifest") from None
    lines, records, recorded, pool = [], [], None, None
    for n, line in enumerate(text.splitlines(keepends=True), 1):
        record = manifest_record(line, n, path)
        if record is None:
            continue
        if "sha256" in record:
            recorded, pool = record["sha256"], record.get("pool")
        else:
            lines.append(line if line.endswith("\n") else line + "\n")
            records.append(record)
    if recorded is not None and digest(lines) != recorded:
        raise TransferlabError(f"manifest {str(path)!r}: its examples' SHA-256 is not the one it records "
                               f"({recorded[:12]}...): the file was changed; get the original")
    rows: dict[str, list[int]] = {}
    found: dict[int, object] = {}
    for record in records:
        rows.setdefault(record["split"], []).append(record["id"])
        found[record["id"]] = record["label"]
    return rows, found, recorded, pool


def check_manifest(path: str | Path, labels: Sequence, pool: str | None = None) -> dict[str, list[int]]:
    """The manifest's rows, after checking every id is a row of the pool and every label agrees with it, and,
    where both are known, that the manifest was drawn from this pool (``pool``: its fingerprint)."""
    rows, found, _, drawn_from = read_manifest(path)
    if pool and drawn_from and pool != drawn_from:
        raise TransferlabError(f"manifest {str(path)!r} was drawn from another pool of examples (fingerprint "
                               f"{drawn_from[:12]}, this data's {pool[:12]}): the data changed since (an example "
                               f"dropped, data.limit or data.max_train_per_class changed); use the data it was "
                               f"drawn from, or draw again")
    if "train" not in rows:
        raise TransferlabError(f"manifest {str(path)!r} has no train examples")
    for i, label in found.items():
        if not 0 <= i < len(labels):
            raise TransferlabError(f"manifest {str(path)!r}: id {i} is not in the pool of {len(labels)} examples")
        if labels[i] != label:
            raise TransferlabError(f"manifest {str(path)!r}: example {i} is labelled {label!r} there but "
                                   f"{labels[i]!r} in the data: the manifest is for other data")
    return rows


def received_root(path: Path) -> Path | None:
    """The study folder (one holding ``study.json``) ``path`` lies in as written (links not followed), if any."""
    for parent in Path(os.path.abspath(path)).parents:
        if (parent / "study.json").is_file():
            return parent
    return None


def check_received(path: Path) -> None:
    """A manifest inside a received study folder is data: followed through any link, it must stay inside it."""
    root = received_root(path)
    if root is not None and not Path(path).resolve().is_relative_to(root.resolve()):
        raise TransferlabError(f"manifest {str(path)!r} lies in the study folder {root} but resolves to "
                               f"{Path(path).resolve()} outside it: a received manifest must be a file inside it")


def draw_digest(rows: dict[str, Sequence[int]], labels: Sequence) -> str:
    """The SHA-256 a draw's manifest records (the same for a draw and for a run given that draw's manifest)."""
    return digest(manifest_lines(rows, labels))


def per_class(ids: Sequence[int], labels: Sequence) -> dict:
    counts: dict = {}
    for i in ids:
        counts[labels[int(i)]] = counts.get(labels[int(i)], 0) + 1
    return counts


def given_draw(path: str | Path, labels: Sequence, shots: int | None, seed: int,
               validation_shots: int, pool: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(train, validation)`` sorted rows of the pool from the manifest at ``path`` (``data.manifest``), checked:
    ids in the pool, labels agreeing, the SHA-256, no id twice, train and validation apart, every class of the
    pool in train, exactly ``shots`` a class when ``data.shots`` is set, and the pool's fingerprint (``pool``)
    where the manifest records one. A manifest without validation examples gets ``min(K, validation_shots)`` a
    class drawn apart from its train examples (seeded)."""
    rows = check_manifest(path, labels, pool)
    train, validation = rows["train"], rows.get("validation", [])
    for split, ids in (("train", train), ("validation", validation)):
        if len(set(ids)) != len(ids):
            raise TransferlabError(f"manifest {str(path)!r} lists a {split} example twice: fix the manifest")
    if set(train) & set(validation):
        raise TransferlabError(f"manifest {str(path)!r}: example {min(set(train) & set(validation))} is in train and "
                               f"validation: a manifest's splits must not share examples")
    counts = per_class(train, labels)
    missing = sorted(set(labels) - set(counts), key=str)
    if missing:
        raise TransferlabError(f"manifest {str(path)!r} has no train example of class {missing[0]!r} "
                               f"({len(missing)} classes missing): it is for other data or a subset of its classes")
    if shots is not None and set(counts.values()) != {shots}:
        label, n = next((c, n) for c, n in counts.items() if n != shots)
        raise TransferlabError(f"manifest {str(path)!r} has {n} train examples of class {label!r}, data.shots is "
                               f"{shots}: give the manifest of that K, or leave data.shots unset")
    if not validation:
        validation = validation_apart(labels, train, min(min(counts.values()), validation_shots), seed)
    return np.sort(np.asarray(train, dtype=np.int64)), np.sort(np.asarray(validation, dtype=np.int64))


def validation_apart(labels: Sequence, train: Sequence[int], per: int, seed: int) -> list[int]:
    """``per`` examples of every class not in ``train``, in the draws' seeded class orders (from their end)."""
    from transferlab.data.fewshot import class_orders

    taken = set(int(i) for i in train)
    out = []
    for label, order in class_orders(labels, seed).items():
        free = [int(i) for i in order if int(i) not in taken]
        if len(free) < per:
            raise TransferlabError(f"class {label} has {len(free)} examples outside the manifest's train examples, "
                                   f"{per} are needed for validation: add validation lines to the manifest")
        out += free[len(free) - per:]
    return out


def save_draw(folder: str | Path, rows: dict[str, Sequence[int]], labels: Sequence,
              pool: str | None = None) -> str:
    """``<folder>/split_manifest.jsonl`` of the draw (a run directory); its SHA-256. A resumed run whose draw is
    not the one its directory holds is refused (the data or data.manifest changed since it started)."""
    path = Path(folder) / MANIFEST
    lines = manifest_lines(rows, labels)
    sha = digest(lines)
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise TransferlabError(f"{path} exists and is not a regular file: remove it and run again")
    if path.is_file():
        _, _, recorded, _ = read_manifest(path)
        if recorded != sha:
            raise TransferlabError(f"{path} holds another draw (SHA-256 {str(recorded)[:12]}...) than this run's "
                                   f"({sha[:12]}...): the data or data.manifest changed since the run started")
        return sha
    partial = path.with_name(f".{MANIFEST}.{os.getpid()}.partial")  # each process of a launch writes its own
    partial.write_text("".join(lines) + closing_line(sha, len(lines), pool))
    os.replace(partial, path)
    return sha
