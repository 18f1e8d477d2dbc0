"""Run directories: ``<output_dir>/<experiment>/<run-name>/`` with the resolved config and a status file.

A run directory is created only after inputs were validated. ``status.json`` says whether the run
is ``running``, ``completed`` or ``failed`` (with the error), so a crashed run is never taken for a
result; ``metrics.json`` (see :mod:`transferlab.evaluation.schema`) is written last. Paths recorded
inside a run directory are relative to it.

A running run records its pid, host and a heartbeat (refreshed by :class:`Heartbeat` while it works), so
a run killed by SIGKILL or a lost machine reads as dead (:func:`is_dead`, :func:`describe_status`) instead
of ``running`` forever. Every file is written through a temporary file created exclusively under a random
name (:func:`atomic_write`), so a link planted at a predictable name is never followed.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from transferlab.config import NAME_MAX, check_run_name
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
           "git_commit": git_commit(), "cpu_count": os.cpu_count(), "cwd": os.getcwd()}  # relative paths' base
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
    if resolved != root and root not in resolved.parents:
        raise TransferlabError(f"{what} {path} resolves to {resolved}, outside the output folder {root}: "
                               f"give a plain run_name, or another --output-dir")
    return path


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
        (self.path / "config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False, allow_unicode=True))

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
        config = yaml.safe_load((path / "config.yaml").read_text()) or {}
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


# --- liveness: pid, host and heartbeat ---------------------------------------------------------------------------

HEARTBEAT_S = float(os.environ.get("TRANSFERLAB_HEARTBEAT_S", 30))  # how often a running run says it is alive
STALE_AFTER_S = 4 * HEARTBEAT_S  # a run on another host without a heartbeat for this long is taken for dead
_LOCKS: dict[str, threading.Lock] = {}


def status_lock(path: Path) -> threading.Lock:
    """One lock per run directory, so the heartbeat thread and the run never write status.json at once."""
    return _LOCKS.setdefault(str(Path(path).resolve()), threading.Lock())


def process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (a reused pid has another), where /proc tells it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def this_process() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "pid_start": process_start(os.getpid())}


def process_alive(pid: int, start: str | None = None) -> bool:
    """Whether ``pid`` runs on this host (and is the process that started at ``start``, when recorded)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        pass
    return start is None or process_start(pid) in (None, start)


def seconds_since(stamp: str | None) -> float | None:
    try:
        return (datetime.now(timezone.utc) - datetime.fromisoformat(stamp)).total_seconds()
    except (TypeError, ValueError):
        return None


def is_dead(status: dict) -> bool:
    """A ``running`` status whose process is gone: on this host its pid has ended; elsewhere (or for a run
    that recorded no pid) its heartbeat is older than ``STALE_AFTER_S``."""
    if status.get("status") != RUNNING:
        return False
    if status.get("pid") and status.get("host") == socket.gethostname():
        return not process_alive(int(status["pid"]), status.get("pid_start"))
    age = seconds_since(status.get("heartbeat") or status.get("updated"))
    return age is None or age > STALE_AFTER_S


def describe_status(run_dir: str | Path | dict) -> str:
    """A run's status in words, telling a live run from a dead one: ``running (heartbeat 12 s ago, pid 123 on
    host)``, ``running (no heartbeat since 14:02; process gone)``, ``failed: <error>``, ``completed``."""
    status = run_dir if isinstance(run_dir, dict) else Run(Path(run_dir), "").status()
    state = status.get("status", "unknown")
    if state == FAILED:
        return f"failed: {status['error']}" if status.get("error") else FAILED
    if state != RUNNING:
        return state
    beat = status.get("heartbeat") or status.get("updated")
    age, where = seconds_since(beat), f"pid {status.get('pid', '?')} on {status.get('host', '?')}"
    if is_dead(status):
        since = datetime.fromisoformat(beat).astimezone().strftime("%H:%M") if age is not None else "start"
        gone = "process gone" if status.get("host") == socket.gethostname() and status.get("pid") else \
            f"{where} silent for over {STALE_AFTER_S:.0f} s"
        return f"running (no heartbeat since {since}; {gone})"
    return f"running (heartbeat {age:.0f} s ago, {where})" if age is not None else f"running ({where})"


class Heartbeat:
    """``with Heartbeat(run):`` a daemon thread refreshes the run's heartbeat every ``HEARTBEAT_S`` seconds."""

    def __init__(self, run: "Run | None", interval: float | None = None):
        self.run, self.interval = run, interval or HEARTBEAT_S
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, name="transferlab-heartbeat", daemon=True)

    def loop(self) -> None:
        while not self.stop.wait(self.interval):
            with contextlib.suppress(OSError, TransferlabError):  # a full disk must not kill the run from here
                self.run.beat()

    def __enter__(self) -> "Heartbeat":
        if self.run is not None:
            self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()


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
