"""Where the report writes and what it reads back into a page: the one rule for a folder someone sends you.

- **Writes.** Every file the report writes (``report.md``, ``report.html``, each figure and thumbnail, a README
  block, ``docs/figures/``) goes through :func:`write_file`: a temporary file created exclusively in the
  target folder, then renamed over the name (``tracking.files.atomic_write``). A link planted at the name is
  replaced, never written through. Figures go into a folder the report owns (:func:`owned_folder`): a link
  there is replaced by a real folder (the link's target is untouched), a file there is refused, and a link
  on the way to it is refused.
- **Names.** A file name built from what a received folder holds (metrics.json ``experiment``, results.csv
  ``dataset``, run and method names) goes through :func:`asset_name`: one path component of safe characters,
  so ``../`` or ``/`` cannot place a file elsewhere; a name that had to change carries a short hash of the
  original, so two names never meet in one file.
- **Reads.** A picture is read (inlined into ``report.html``, or turned into a thumbnail) only when it is a
  regular file that, links resolved, lies inside one of the folders the report may read (:func:`readable`):
  the folders it reports on, its own figure folder, and the image folders its caller vouches for.
"""

from __future__ import annotations

import hashlib
import io
import re
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Sequence

from transferlab.errors import TransferlabError
from transferlab.tracking.files import atomic_write, own_folder

ASSETS = "report_assets"
UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
MAX_NAME = 120  # characters of a file name built from data (file systems allow 255 bytes)


def asset_name(*parts: object, suffix: str = ".png") -> str:
    """One safe file name from ``parts`` (joined by ``-``): characters other than letters, digits, ``_.-`` become
    ``-``, no leading dot; a hash of the original is added when anything had to change."""
    original = "-".join(str(p) for p in parts)
    name = UNSAFE.sub("-", original).strip("-.")[:MAX_NAME] or "figure"
    if name != original:
        name += "-" + hashlib.sha256(original.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return name + suffix


def owned_folder(parent: str | Path, *names: str) -> Path:
    """``parent/names...`` made a real folder the report owns (``tracking.files.own_folder`` at each step: a link
    or a file on the way is refused with one line); a link at the last name (the figure folder itself) is
    removed first (the link, never its target), so a real folder takes its place."""
    folder = Path(parent)
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        if i == len(names) - 1 and (folder / name).is_symlink():
            (folder / name).unlink()
        folder = own_folder(folder, name)
    return folder


def report_assets(out_dir: str | Path) -> Path:
    """The figure folder of a report written into ``out_dir`` (``report_assets/``, see :func:`owned_folder`)."""
    return owned_folder(out_dir, ASSETS)


def write_file(path: str | Path, data: str | bytes) -> Path:
    """``data`` into ``path`` atomically, never through a link (``atomic_write``); an OS error is one line."""
    path = Path(path)
    try:
        atomic_write(path, data)
    except OSError as exc:
        raise TransferlabError(f"cannot write {path} ({exc.strerror or exc}): check that its folder exists and "
                               f"is writable, or write the report elsewhere with --output") from None
    return path


def save_figure(fig, path: str | Path, dpi: int = 100) -> Path:
    """A matplotlib figure as a PNG at ``path`` (rendered in memory, then :func:`write_file`); the figure closed."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    try:
        fig.tight_layout()
        fig.savefig(buffer, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return write_file(path, buffer.getvalue())


def save_rendered(render: Callable[[Path], object], path: str | Path) -> Path:
    """A file a function of another layer writes to a path of its choosing (``render(path)``), made in a private
    temporary folder and then written with :func:`write_file`."""
    with tempfile.TemporaryDirectory(prefix="transferlab-report-") as tmp:
        made = Path(tmp) / Path(path).name
        render(made)
        return write_file(path, made.read_bytes())


def resolved_roots(roots: Iterable[str | Path | None]) -> list[Path]:
    return [Path(r).resolve() for r in roots if r]


def readable(path: str | Path, roots: Sequence[Path]) -> Path | None:
    """``path`` resolved, when it is a regular file inside one of the (resolved) ``roots``; else ``None``."""
    try:
        resolved = Path(path).resolve()
    except (OSError, RuntimeError, ValueError):  # a loop of links, a NUL in the name
        return None
    if not any(resolved == root or root in resolved.parents for root in roots):
        return None
    return resolved if resolved.is_file() else None
