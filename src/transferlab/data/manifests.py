"""Split manifests: a few-shot draw as JSON Lines, so a draw can be kept, published and given back.

One line per drawn example, ``{"split": "train"|"validation", "id": <row of the train pool>, "label": <class>}``,
then one closing line ``{"sha256": <hex>, "examples": N}``: the SHA-256 of the example lines' bytes (each line
with its newline). An external manifest (the CoOp / 2SFS split files, LM-BFF's K-seed folders, converted) is
checked before use: every id exists in the pool, every label agrees with the pool's, and the SHA-256 matches
where the file has one.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

from transferlab.errors import TransferlabError

MANIFEST = "split_manifest.jsonl"


def manifest_lines(rows: dict[str, Sequence[int]], labels: Sequence) -> list[str]:
    """The example lines of a draw: ``rows`` (split -> row indices of the pool), ``labels`` the pool's labels."""
    return [json.dumps({"split": split, "id": int(i), "label": labels[int(i)]}, sort_keys=True) + "\n"
            for split in ("train", "validation") for i in rows.get(split, [])]


def digest(lines: Sequence[str]) -> str:
    return hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()


def write_manifest(path: str | Path, rows: dict[str, Sequence[int]], labels: Sequence) -> str:
    """The draw's manifest at ``path`` (``<run dir>/split_manifest.jsonl``); returns its SHA-256."""
    lines = manifest_lines(rows, labels)
    sha = digest(lines)
    Path(path).write_text("".join(lines) + json.dumps({"sha256": sha, "examples": len(lines)}) + "\n")
    return sha


def read_manifest(path: str | Path) -> tuple[dict[str, list[int]], dict[int, object], str | None]:
    """(split -> ids, id -> label, the recorded SHA-256 or ``None``), checked against the SHA-256 it records."""
    path = Path(path)
    if not path.is_file():
        raise TransferlabError(f"manifest {str(path)!r} does not exist: give data.manifest=<a JSONL split manifest>")
    lines, recorded = [], None
    for n, line in enumerate(path.read_text().splitlines(keepends=True), 1):
        try:
            record = json.loads(line) if line.strip() else None
        except json.JSONDecodeError:
            raise TransferlabError(f"manifest {str(path)!r} line {n} is not JSON: fix or remove it") from None
        if record is None:
            continue
        if "sha256" in record:
            recorded = str(record["sha256"])
        elif {"split", "id", "label"} <= set(record):
            lines.append(line if line.endswith("\n") else line + "\n")
        else:
            raise TransferlabError(f"manifest {str(path)!r} line {n} lacks split, id or label")
    if recorded is not None and digest(lines) != recorded:
        raise TransferlabError(f"manifest {str(path)!r}: its examples' SHA-256 is not the one it records "
                               f"({recorded[:12]}...): the file was changed; get the original")
    rows: dict[str, list[int]] = {}
    found: dict[int, object] = {}
    for line in lines:
        record = json.loads(line)
        rows.setdefault(record["split"], []).append(int(record["id"]))
        found[int(record["id"])] = record["label"]
    return rows, found, recorded


def check_manifest(path: str | Path, labels: Sequence) -> dict[str, list[int]]:
    """The manifest's rows, after checking every id is a row of the pool and every label agrees with it."""
    rows, found, _ = read_manifest(path)
    if "train" not in rows:
        raise TransferlabError(f"manifest {str(path)!r} has no train examples")
    for i, label in found.items():
        if not 0 <= i < len(labels):
            raise TransferlabError(f"manifest {str(path)!r}: id {i} is not in the pool of {len(labels)} examples")
        if labels[i] != label:
            raise TransferlabError(f"manifest {str(path)!r}: example {i} is labelled {label!r} there but "
                                   f"{labels[i]!r} in the data: the manifest is for other data")
    return rows
