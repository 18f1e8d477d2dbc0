"""On-disk cache of sentence vectors, keyed by everything that changes them.

Key: the model's weights (a hash of every parameter), its reference, pooling, max length,
precision, the data set split's content fingerprint and the split name. A changed input is a new
key, so a stale vector is never served. Beside each array, ``<key>.json`` records the key, row
count, shape, dtype and a content hash; a file that does not match its record (truncated,
overwritten, from another split) or the number of texts asked for is recomputed and overwritten.

The record guards against accidents, not tampering: whoever can write the folder can rewrite an array and
its record to match. So the cache is used only where nobody else can write (:func:`untrusted_because`, as
ssh checks its keys): a folder, or a folder above it, writable by group or others (without the sticky bit)
or owned by another user is not read; the vectors are computed afresh, with a warning. Entries are written
through exclusively created temporary files, so a link planted in the folder is never followed.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import stat
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from transferlab.tracking.files import atomic_write


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
    """The array, then its record, each through :func:`~transferlab.tracking.files.atomic_write` (a file
    created exclusively under a random name, renamed into place; removed on failure)."""
    buffer = io.BytesIO()
    try:
        np.save(buffer, vectors)  # straight to a file, numpy reports a full disk as a short write without errno
    except OSError as exc:
        if exc.errno is not None and exc.filename is None:
            exc.filename = str(path)  # "disk full while writing <this file>"
        raise
    atomic_write(path, buffer.getvalue())
    atomic_write(path.with_suffix(".json"), json.dumps(record_of(key_parts, vectors), indent=1))


def untrusted_because(folder: Path) -> str | None:
    """Why another user could change what ``folder`` holds (``None`` when nobody else can): it, or a folder
    above it, is writable by group or others (a folder with the sticky bit, such as /tmp, only protects
    entries it does not own) or is owned by someone other than this user or root."""
    me = os.getuid()
    path = folder.resolve()
    for i, current in enumerate([path, *path.parents]):
        try:
            st = current.stat()
        except OSError:
            continue  # not made yet: the first existing folder above decides
        if st.st_uid not in (me, 0):
            return f"{current} is owned by another user (uid {st.st_uid})"
        writable = st.st_mode & stat.S_IWOTH or (st.st_mode & stat.S_IWGRP and not private_group(st.st_gid))
        if writable and (i == 0 or not st.st_mode & stat.S_ISVTX):
            who = "others" if st.st_mode & stat.S_IWOTH else "its group"
            return f"{current} is writable by {who} (mode {stat.S_IMODE(st.st_mode):o})"
    return None


@functools.lru_cache(maxsize=None)
def private_group(gid: int) -> bool:
    """Whether group ``gid`` holds this user alone (a user private group, as umask 002 systems make): being
    writable by it gives no one else access. Unknown groups count as shared."""
    import grp
    import pwd

    me = pwd.getpwuid(os.getuid()).pw_name
    try:
        members = set(grp.getgrgid(gid).gr_mem)
    except KeyError:
        return False
    return members <= {me} and all(user.pw_name == me for user in pwd.getpwall() if user.pw_gid == gid)


_WARNED: set[str] = set()


def trusted_folder(folder: Path) -> bool:
    """Whether the cache may be read and written (warns once per folder when not)."""
    reason = untrusted_because(folder)
    if reason and str(folder) not in _WARNED:
        _WARNED.add(str(folder))
        print(f"warning: not using the cache {folder}: {reason}, so its entries could have been altered; "
              f"computing afresh (make it private: chmod go-w, or choose another cache folder)", file=sys.stderr)
    return reason is None


def entry_path(folder: str | Path, key_parts: dict) -> Path:
    """Where the array of this key is (or would be) stored."""
    return Path(folder) / f"{cache_key(**key_parts)}.npy"


def cached(folder: str | Path | None, key_parts: dict, compute: Callable[[], np.ndarray],
           rows: int | None = None) -> tuple[np.ndarray, bool]:
    """(vectors, hit): ``<folder>/<key>.npy`` if it checks out (see :func:`load_checked`; ``rows``: the
    number of texts asked for), else computed and stored, overwriting a damaged entry."""
    if folder is None or not trusted_folder(Path(folder)):
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
