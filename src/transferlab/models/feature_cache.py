"""On-disk cache of sentence vectors, keyed by everything that changes them.

Key: the model's weights (a hash of every parameter), its reference, pooling, max length,
precision, the data set split's content fingerprint and the split name. A changed input is a new
key, so a stale vector is never served. Beside each array, ``<key>.json`` records the key, row
count, shape, dtype and a content hash; a file that does not match its record (truncated,
overwritten, from another split) or the number of texts asked for is recomputed and overwritten.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch


def weights_fingerprint(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def cache_key(**parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def content_hash(vectors: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(vectors).tobytes()).hexdigest()[:24]


def record_of(key_parts: dict, vectors: np.ndarray) -> dict:
    """What the ``.json`` beside a cached array holds: its key, row count, shape, dtype and content hash."""
    return {"key": json.loads(json.dumps(key_parts, default=str)), "rows": int(len(vectors)),
            "shape": list(vectors.shape), "dtype": str(vectors.dtype), "sha256": content_hash(vectors)}


def load_checked(path: Path, key_parts: dict, rows: int | None) -> np.ndarray | None:
    """The cached array if it is whole and is what its record says (and has ``rows`` rows), else ``None``:
    a truncated, unreadable, swapped or stale file is recomputed, never trusted."""
    try:
        record = json.loads(path.with_suffix(".json").read_text())
        vectors = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):  # missing record, truncated or garbled file
        return None
    if record != record_of(key_parts, vectors) or (rows is not None and len(vectors) != rows):
        return None
    return vectors


def save_atomically(path: Path, key_parts: dict, vectors: np.ndarray) -> None:
    """The array, then its record, each through a temporary file renamed into place (removed on failure)."""
    tmp_npy, tmp_json = path.with_name(path.stem + ".tmp.npy"), path.with_name(path.stem + ".tmp.json")
    try:
        buffer = io.BytesIO()
        np.save(buffer, vectors)  # straight to a file, numpy reports a full disk as a short write without errno
        tmp_npy.write_bytes(buffer.getvalue())
        tmp_json.write_text(json.dumps(record_of(key_parts, vectors), indent=1))
        tmp_npy.replace(path)
        tmp_json.replace(path.with_suffix(".json"))
    except OSError as exc:
        if exc.errno is not None and exc.filename is None:
            exc.filename = str(path)  # "disk full while writing <this file>"
        raise
    finally:
        tmp_npy.unlink(missing_ok=True)
        tmp_json.unlink(missing_ok=True)


def entry_path(folder: str | Path, key_parts: dict) -> Path:
    """Where the array of this key is (or would be) stored."""
    return Path(folder) / f"{cache_key(**key_parts)}.npy"


def cached(folder: str | Path | None, key_parts: dict, compute: Callable[[], np.ndarray],
           rows: int | None = None) -> tuple[np.ndarray, bool]:
    """(vectors, hit): ``<folder>/<key>.npy`` if it checks out (see :func:`load_checked`; ``rows``: the
    number of texts asked for), else computed and stored, overwriting a damaged entry."""
    if folder is None:
        return compute(), False
    folder = Path(folder)
    path = entry_path(folder, key_parts)
    vectors = load_checked(path, key_parts, rows) if path.is_file() else None
    if vectors is not None:
        return vectors, True
    vectors = compute()
    folder.mkdir(parents=True, exist_ok=True)
    save_atomically(path, key_parts, vectors)
    return vectors, False
