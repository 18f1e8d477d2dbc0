"""The one ledger of work made of several runs: a ``transferlab run`` pipeline (``pipeline.json``), a label-budget
study (``study.json``) and, through the same liveness records, a search's trials.

One implementation of what they all need, so no copy drifts from another:

- **one state file** (``<folder>/<name>.json``) written atomically without following links;
- **one lock** (``<folder>/<name>.lock``) opened with ``O_NOFOLLOW`` (a planted link is refused, never
  truncated) and held with ``flock`` for as long as one process works on the folder;
- **one shape check** of the state read back: a dict whose ``entries`` key lists dicts with a known ``name``
  (experiment) and a ``status`` string;
- **one containment check** of every recorded ``run_dir``: relative, without ``..``, and resolving inside
  the folder (a received or edited file naming ``../elsewhere`` would otherwise have a resume rename it);
- **one attempt rule**: an entry's folder left by an earlier attempt is continued when its experiment
  resumes from checkpoints and one is there, and is otherwise set aside as ``<name>.failed`` (kept, never
  lost) so the entry starts afresh.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection, Iterator

from transferlab.errors import TransferlabError
from transferlab.tracking.files import inside, read_json, write_json
from transferlab.tracking.liveness import FAILED, RUNNING, describe_status, is_dead
from transferlab.tracking.rundir import Run, list_checkpoints, set_aside


@dataclass(frozen=True)
class Ledger:
    """The state file and lock of one folder. ``entries``: the key listing the units of work (``stages`` of a
    pipeline, ``cells`` of a study); ``known``: the names an entry may carry; ``kind``: words for errors."""

    folder: Path
    name: str  # "pipeline" -> pipeline.json and pipeline.lock
    entries: str
    known: Collection[str]
    kind: str  # "`transferlab run` directory", "study"
    name_key: str = "name"  # the entry key naming its experiment ("experiment" in a study's cells)

    @property
    def path(self) -> Path:
        return self.folder / f"{self.name}.json"

    @property
    def lock_path(self) -> Path:
        return self.folder / f"{self.name}.lock"

    def exists(self) -> bool:
        return self.path.is_file() and not self.path.is_symlink()

    def write(self, state: dict) -> None:
        write_json(self.path, state)

    def read(self) -> dict:
        """The stored state, checked for shape and containment; a one-line error otherwise."""
        if self.path.is_symlink():
            raise TransferlabError(f"{self.path} is a link: a {self.kind} keeps its state in a plain file; remove "
                                   f"the link, or start a new one")
        return self.check(read_json(self.path, f"{self.kind} state"))

    def check(self, state: Any) -> dict:
        records = state.get(self.entries) if isinstance(state, dict) else None
        if not isinstance(records, list) or not all(
                isinstance(r, dict) and r.get(self.name_key) in self.known and isinstance(r.get("status"), str)
                for r in records):
            raise TransferlabError(f"{self.path} does not list known {self.entries} (each with a {self.name_key} among "
                                   f"{', '.join(sorted(self.known))} and a status): it was edited or damaged; "
                                   f"start a new {self.kind}")
        for record in records:
            if record.get("run_dir") is not None:
                self.contained(record["run_dir"])
        return state

    def contained(self, run_dir: Any) -> Path:
        """``folder / run_dir`` when ``run_dir`` is a plain relative path resolving inside the folder."""
        relative = Path(str(run_dir))
        if not isinstance(run_dir, str) or relative.is_absolute() or ".." in relative.parts or not relative.parts:
            raise TransferlabError(f"{self.path} names the directory {run_dir!r}, outside the {self.kind}: it was "
                                   f"edited; start a new {self.kind}")
        return inside(self.folder / relative, self.folder, f"{self.kind} directory")

    @contextlib.contextmanager
    def locked(self, busy: str) -> Iterator[None]:
        """Inside: this process alone works on the folder; ``busy`` is the one-line error a second one gets."""
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            raise TransferlabError(f"cannot open the lock file {self.lock_path} ({exc.strerror}): remove it if it "
                                   f"is a link or not a file, then run again") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise TransferlabError(busy) from None
            yield
        finally:
            os.close(fd)  # releases the lock

    def take_over(self, status_run: Run, state: dict) -> None:
        """Before continuing: refuse work still running elsewhere; work whose process died (and its entries
        recorded as running) is recorded as ``failed: killed``."""
        status = status_run.status()
        if status.get("status") == RUNNING and not is_dead(status):
            raise TransferlabError(f"{self.folder}: the {self.kind} is still {describe_status(status)}: wait for "
                                   f"it, or stop that process first")
        if status.get("status") == RUNNING:
            mark_killed(status_run, status)
        for record in state[self.entries]:
            if record["status"] == RUNNING:
                record.update(status=FAILED, error="killed: the process ended without recording it")
            folder = self.folder / record["run_dir"] if record.get("run_dir") else None
            if folder is not None and folder.is_dir():
                entry_run = Run(folder, record[self.name_key])
                if is_dead(entry_run.status()):
                    mark_killed(entry_run, entry_run.status())

    def dead_entries(self, status: dict, state: dict) -> list[dict]:
        """The entries recorded as running by a process that is gone (what a report names as dead)."""
        if status.get("status") != RUNNING or not is_dead(status):
            return []
        return [r for r in state[self.entries] if r["status"] == RUNNING]


def next_attempt(folder: Path, resumable: bool) -> str | None:
    """The attempt rule: the folder to resume (a resumable experiment with a checkpoint there), else ``None``
    after setting an earlier attempt's folder aside (kept as ``<name>.failed``)."""
    if not folder.is_dir():
        return None
    if resumable and list_checkpoints(folder):  # a complete one: a worker killed while saving its first leaves none
        return str(folder)
    kept = set_aside(folder)
    print(f"note: the unfinished attempt {folder.name} is kept as {kept.name}; starting it afresh")
    return None


def mark_killed(run: Run, status: dict) -> None:
    """Record a run whose process died without a word (SIGKILL, a lost machine) as failed: killed."""
    said = describe_status(status)
    run.set_status(FAILED, error=f"killed: {said[len('running ('):-1]}",
                   note="the process ended without recording it (SIGKILL or a lost machine)")
    print(f"note: {run.path} was {said}: marked failed (killed)")
