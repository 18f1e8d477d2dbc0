"""Run directories: ``<output_dir>/<experiment>/<run-name>/`` with the resolved config and a status file.

A run directory is created only after inputs were validated. ``status.json`` says whether the run
is ``running``, ``completed`` or ``failed`` (with the error), so a crashed run is never taken for a
result; ``metrics.json`` (see :mod:`transferlab.evaluation.schema`) is written last. Paths recorded
inside a run directory are relative to it.
"""

from __future__ import annotations

import errno
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from transferlab.errors import TransferlabError

PACKAGES = ("transferlab", "torch", "transformers", "datasets", "peft", "accelerate", "scikit-learn",
            "numpy", "tensorboard", "wandb")
RUNNING, COMPLETED, FAILED = "running", "completed", "failed"


def slug(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9._-]+", "-", text.rstrip("/").split("/")[-1].split(":")[-1]).strip("-").lower()


def environment() -> dict[str, Any]:
    """Package versions, git commit, Python and hardware: what a result needs to be reproduced."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    env = {"python": sys.version.split()[0], "platform": platform.platform(), "packages": versions,
           "git_commit": git_commit(), "cpu_count": os.cpu_count()}
    try:
        import torch

        env["torch_threads"] = torch.get_num_threads()
        from threadpoolctl import threadpool_info

        env["native_threads"] = {pool["internal_api"]: pool["num_threads"] for pool in threadpool_info()}
        if torch.cuda.is_available():
            env["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return env


def git_commit() -> str | None:
    try:
        root = Path(__file__).resolve().parents[3]
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def write_json(path: Path, data: Any) -> None:
    """Atomically: a temporary file renamed over the target (removed again if writing fails)."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def read_json(path: Path, what: str = "file") -> Any:
    """Parsed JSON, or a one-line error naming the file."""
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TransferlabError(f"{what} {path} is not valid JSON ({exc.__class__.__name__}): it was cut short "
                               f"or edited; rerun the run that wrote it") from None


def new_run_path(output_dir: str | Path, experiment: str, name: str | None, default_name: str = "") -> Path:
    """``<output_dir>/<experiment>/<name>``, or a timestamped name (suffixed to stay unique) when none is given."""
    parent = Path(output_dir) / experiment
    if name:
        return parent / name
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
        (self.path / "config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False, allow_unicode=True))

    def status(self) -> dict:
        path = self.path / "status.json"
        return read_json(path, "status file") if path.is_file() else {}

    def set_status(self, status: str, **extra: Any) -> None:
        """Update ``status.json``; a run that is running again or completed drops an earlier error."""
        record = self.status()
        if status != FAILED:
            record.pop("error", None)
        record.update(status=status, updated=datetime.now(timezone.utc).isoformat(), **extra)
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
        config = yaml.safe_load((path / "config.yaml").read_text()) or {}
    except yaml.YAMLError:
        raise TransferlabError(f"{path / 'config.yaml'} is not valid YAML: the run directory was damaged") from None
    return config, metrics, status


def load_run(path: str | Path) -> tuple[dict, dict]:
    """The resolved config and metrics of a finished run directory, or a one-line error."""
    config, metrics, status = read_run(path)
    if not metrics:
        raise TransferlabError(f"run {path} has no results (status: {status.get('status', 'unknown')}"
                               + (f", {status['error']}" if status.get("error") else "") + "): rerun or resume it")
    return config, metrics
