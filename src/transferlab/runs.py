"""Run directories: ``<output_dir>/<experiment>/<run-name>/`` with the resolved config and a status file.

A run directory is created only after inputs were validated. ``status.json`` says whether the run
is ``running``, ``completed`` or ``failed`` (with the error), so a crashed run is never taken for a
result; ``metrics.json`` is written last.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import random
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

import yaml

from transferlab.errors import TransferlabError

PACKAGES = ("transferlab", "torch", "transformers", "datasets", "peft", "accelerate", "scikit-learn",
            "numpy", "tensorboard", "wandb")


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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
        if torch.cuda.is_available():
            env["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return env


def git_commit() -> str | None:
    try:
        root = Path(__file__).resolve().parents[2]
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    tmp.replace(path)


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


@dataclass
class Run:
    """One run's directory. ``Run.create`` makes it; ``with run.guard():`` records success or failure."""

    path: Path
    experiment: str

    @classmethod
    def create(cls, output_dir: str | Path, experiment: str, name: str | None, config: dict,
               default_name: str = "") -> "Run":
        path = Path(output_dir) / experiment / (name or "")
        if not name:  # timestamped; a numeric suffix keeps runs started in the same second apart
            base = "-".join(filter(None, [datetime.now().strftime("%Y%m%d-%H%M%S"), slug(default_name)]))
            path = path / base
            for i in range(2, 1000):
                if not path.exists():
                    break
                path = path.with_name(f"{base}-{i}")
        if path.exists():
            raise TransferlabError(f"run directory {path} already exists: pick another run_name=... "
                                   f"or --output-dir, or remove the old run")
        path.mkdir(parents=True)
        run = cls(path, experiment)
        run.write_config(config)
        run.set_status("running")
        return run

    def write_config(self, config: dict) -> None:
        resolved = dict(config)
        resolved["environment"] = environment()
        (self.path / "config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False, allow_unicode=True))

    def set_status(self, status: str, **extra: Any) -> None:
        path = self.path / "status.json"
        record = read_json(path) if path.exists() else {"started": datetime.now(timezone.utc).isoformat()}
        record.update(status=status, updated=datetime.now(timezone.utc).isoformat(), **extra)
        write_json(path, record)

    @contextlib.contextmanager
    def guard(self) -> Iterator["Run"]:
        """Mark the run completed on success; failed (with the reason) on any error or Ctrl-C."""
        start = time.perf_counter()
        try:
            yield self
        except BaseException as exc:
            reason = str(exc) or exc.__class__.__name__
            self.set_status("failed", error=f"{exc.__class__.__name__}: {reason}",
                            elapsed_s=round(time.perf_counter() - start, 2))
            raise
        self.set_status("completed", elapsed_s=round(time.perf_counter() - start, 2))

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
    status = read_json(path / "status.json") if (path / "status.json").is_file() else {}
    metrics = read_json(path / "metrics.json") if (path / "metrics.json").is_file() else {}
    return yaml.safe_load((path / "config.yaml").read_text()) or {}, metrics, status


def load_run(path: str | Path) -> tuple[dict, dict]:
    """The resolved config and metrics of a finished run directory, or a one-line error."""
    config, metrics, status = read_run(path)
    if not metrics:
        raise TransferlabError(f"run {path} has no results (status: {status.get('status', 'unknown')}"
                               + (f", {status['error']}" if status.get("error") else "") + "): rerun or resume it")
    return config, metrics
