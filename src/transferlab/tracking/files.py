"""Files a run writes and reads, safely: atomic writes that never follow a planted link, JSON with one-line
errors, containment of paths read from a received folder, and names safe for folders.

The rule, implemented here once: every file transferlab writes is created inside the folder it owns through a
temporary file made exclusively under a random name (``O_EXCL``: a link is never followed) and renamed into
place; every path read from a received file is resolved and must lie inside its folder (:func:`inside`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Sequence

from transferlab.errors import TransferlabError


def slug(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9._-]+", "-", text.rstrip("/").split("/")[-1].split(":")[-1]).strip("-").lower()


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """``data`` into ``path`` atomically: written to a file created exclusively (``O_EXCL``, a random name, never
    through a link) in the same folder, then renamed over ``path``; removed again if writing fails."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes it 0600; a result file keeps the usual mode
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename is None:
            exc.filename = str(path)  # "disk full while writing <this file>"
        raise


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: Path, data: Any) -> None:
    """Atomically (see :func:`atomic_write`)."""
    atomic_write(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: Path, what: str = "file") -> Any:
    """Parsed JSON, or a one-line error naming the file."""
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TransferlabError(f"{what} {path} is not valid JSON ({exc.__class__.__name__}): it was cut short "
                               f"or edited; rerun the run that wrote it") from None


def inside(path: Path, folder: Path, what: str = "run directory") -> Path:
    """``path`` if, resolved (links followed), it lies inside ``folder``; else a one-line error."""
    resolved, root = Path(path).resolve(), Path(folder).resolve()
    if not resolved.is_relative_to(root):
        raise TransferlabError(f"{what} {path} resolves to {resolved}, outside the output folder {root}: "
                               f"give a plain run_name, or another --output-dir")
    return path


def links_outside(folder: Path, names: Sequence[str]) -> list[tuple[Path, Path]]:
    """``(file, where it resolves)`` for each of ``names`` in ``folder`` (a folder: everything below it) that,
    links followed, lies outside ``folder``."""
    root = Path(folder).resolve()
    files = []
    for name in names:
        path = Path(folder) / name
        files += [path] + (sorted(path.rglob("*")) if path.is_dir() and not path.is_symlink() else [])
    out = []
    for file in files:
        if file.is_symlink() or file.exists():
            resolved = file.resolve()
            if not resolved.is_relative_to(root):
                out.append((file, resolved))
    return out


def check_links_inside(folder: Path, names: Sequence[str], what: str) -> None:
    """Refuse (one line) a received ``folder`` whose files to be read (``names``) resolve outside it: a planted
    link would make transferlab read (and report) a file of someone else's choosing."""
    found = links_outside(folder, names)
    if found:
        file, resolved = found[0]
        raise TransferlabError(f"{file} resolves to {resolved}, outside the {what} {folder}: its files are read "
                               f"only inside it; remove the link, or give another {what}")


def write_bytes_new(folder: Path, name: str, data: bytes) -> Path:
    """``folder/name`` holding ``data``: written once (atomically) if absent; an existing regular file with the
    same bytes is kept as is; anything else there (other bytes, a link, a folder) is a one-line error."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise TransferlabError(f"{path} exists and is not a regular file: remove it and run again")
    if path.is_file():
        if path.read_bytes() != data:
            raise TransferlabError(f"{path} exists with other content: remove it and run again")
        return path
    atomic_write(path, data)
    return path


def own_folder(parent: Path, name: str) -> Path:
    """``parent/name`` as a real folder of ``parent`` (made if absent): a link or a file there is refused with
    one line, so nothing is written through it to another place."""
    folder = Path(parent) / name
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise TransferlabError(f"{folder} is a link or not a folder: transferlab writes only into folders it "
                               f"owns; remove it and run again")
    folder.mkdir(exist_ok=True)
    return folder


def content_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes, or of a folder's files (relative names and bytes, in sorted order; links are
    not followed): a fingerprint of data by content, whatever path it is reached by."""
    import hashlib

    root, digest = Path(path), hashlib.sha256()
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())
    for file in files:
        digest.update(file.relative_to(root).as_posix().encode() + b"\0" if file != root else b"")
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()
