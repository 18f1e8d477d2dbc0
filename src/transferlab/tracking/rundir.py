"""Run directories: ``<output_dir>/<experiment>/<run-name>/`` with the resolved config and a status file.

A run directory is created only after inputs were validated. ``status.json`` says whether the run
is ``running``, ``completed`` or ``failed`` (with the error), so a crashed run is never taken for a
result; ``metrics.json`` (see :mod:`transferlab.evaluation.schema`) is written last. Paths recorded
inside a run directory are relative to it.

A running run records its pid, host and a heartbeat (``liveness``), so a run killed outright reads as
dead; every file is written atomically without following links (``files``).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from transferlab.config import NAME_MAX, check_run_name, dump_yaml, load_yaml
from transferlab.errors import TransferlabError
from transferlab.tracking.environment import environment
from transferlab.tracking.files import atomic_write, inside, read_json, slug, write_json
from transferlab.tracking.liveness import (COMPLETED, FAILED, RUNNING, describe_status, is_dead, status_lock,
                                           this_process)

__all__ = ["COMPLETED", "FAILED", "RUNNING", "Run", "load_run", "new_run_path", "read_run", "set_aside"]


def new_run_path(output_dir: str | Path, experiment: str, name: str | None, default_name: str = "") -> Path:
    """``<output_dir>/<experiment>/<name>``, or a timestamped name (suffixed to stay unique) when none is given;
    inside ``output_dir`` whatever the name (see :func:`check_name`)."""
    parent = Path(output_dir) / experiment
    if name:
        return inside(parent / check_run_name(name, limit=NAME_MAX + 40), output_dir)  # room for -seed<N> suffixes
    base = "-".join(filter(None, [datetime.now().strftime("%Y%m%d-%H%M%S"), slug(default_name)]))
    path = parent / base
    for i in range(2, 1000):
        if not path.exists():
            break
        path = parent / f"{base}-{i}"
    return path


@dataclass
class Run:
    """One run's directory: its config, status and metrics files."""

    path: Path
    experiment: str

    @classmethod
    def create(cls, output_dir: str | Path, experiment: str, name: str | None, config: dict,
               default_name: str = "") -> "Run":
        path = new_run_path(output_dir, experiment, name, default_name)
        if path.exists():
            raise TransferlabError(f"run directory {path} already exists: pick another run_name=... "
                                   f"or --output-dir, or remove the old run")
        made = False
        try:  # a file where a folder should be, no permission, a full disk: one line, and nothing left behind
            path.mkdir(parents=True)
            made = True
            run = cls(path, experiment)
            run.write_config(config)
            run.set_status(RUNNING, started=datetime.now(timezone.utc).isoformat())
        except OSError as exc:
            if made:
                shutil.rmtree(path, ignore_errors=True)
            raise TransferlabError(f"cannot create run directory {path} ({exc.strerror or exc}): "
                                   + ("free space or " if exc.errno == errno.ENOSPC else "")
                                   + "choose another --output-dir") from None
        return run

    def write_config(self, config: dict) -> None:
        resolved = dict(config)
        resolved["environment"] = environment()
        atomic_write(self.path / "config.yaml", dump_yaml(resolved, sort_keys=False, allow_unicode=True))

    def status(self) -> dict:
        path = self.path / "status.json"
        return read_json(path, "status file") if path.is_file() else {}

    def set_status(self, status: str, **extra: Any) -> None:
        """Update ``status.json``; a run that is running again or completed drops an earlier error. A running
        run records this process (pid, host, start time) and a heartbeat."""
        with status_lock(self.path):
            record = self.status()
            if status != FAILED:
                record.pop("error", None)
            now = datetime.now(timezone.utc).isoformat()
            if status == RUNNING:
                record.update(this_process(), heartbeat=now)
            record.update(status=status, updated=now, **extra)
            write_json(self.path / "status.json", record)

    def beat(self) -> None:
        """Refresh the heartbeat of a run this process is running (nothing once it has ended)."""
        with status_lock(self.path):
            record = self.status()
            if record.get("status") == RUNNING and record.get("pid") == os.getpid():
                record["heartbeat"] = datetime.now(timezone.utc).isoformat()
                write_json(self.path / "status.json", record)

    def save_metrics(self, metrics: dict) -> Path:
        path = self.path / "metrics.json"
        write_json(path, metrics)
        return path


def read_run(path: str | Path) -> tuple[dict, dict, dict]:
    """(config, metrics, status) of a run directory, finished or not; ``{}`` for a file not written yet."""
    path = Path(path)
    if not (path / "config.yaml").is_file():
        raise TransferlabError(f"{path} is not a transferlab run directory (no config.yaml): "
                               f"pass a folder printed by a transferlab command")
    status = read_json(path / "status.json", "status file") if (path / "status.json").is_file() else {}
    metrics = read_json(path / "metrics.json", "metrics file") if (path / "metrics.json").is_file() else {}
    try:
        config = load_yaml((path / "config.yaml").read_text()) or {}
    except yaml.YAMLError:
        raise TransferlabError(f"{path / 'config.yaml'} is not valid YAML: the run directory was damaged") from None
    return config, metrics, status


def load_run(path: str | Path) -> tuple[dict, dict]:
    """The resolved config and metrics of a finished run directory, or a one-line error."""
    config, metrics, status = read_run(path)
    if not metrics:
        raise TransferlabError(f"run {path} has no results (status: {describe_status(status)}): "
                               + ("wait for it to finish" if status.get("status") == RUNNING and not is_dead(status)
                                  else "rerun or resume it"))
    return config, metrics


def set_aside(folder: Path) -> Path:
    """Rename an unfinished or failed attempt's directory to ``<name>.failed`` (``.failed-2``, ...), so its
    name is free for a new attempt and nothing of it is lost; the new name."""
    target = folder.with_name(folder.name + ".failed")
    for i in range(2, 1000):
        if not target.exists():
            break
        target = folder.with_name(f"{folder.name}.failed-{i}")
    folder.rename(target)
    return target


CHECKPOINTS = "checkpoints"
CHECKPOINT_INFO = "transferlab.json"  # what a checkpoint was trained from (training.callbacks writes it last)


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints, oldest step first: with the Trainer's state and transferlab's info file, which
    is written last (a process killed while saving leaves an incomplete folder, skipped here)."""
    folder = Path(run_dir) / CHECKPOINTS
    found = []
    for path in folder.glob("checkpoint-*") if folder.is_dir() else []:
        match = re.fullmatch(r"checkpoint-(\d+)", path.name)
        if match and (path / "trainer_state.json").is_file() and (path / CHECKPOINT_INFO).is_file():
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]
