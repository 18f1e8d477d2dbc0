"""Whether a run recorded as running is alive: its pid, host and a heartbeat refreshed while it works.

A run killed by SIGKILL or a lost machine then reads as dead (:func:`is_dead`, :func:`describe_status`)
instead of ``running`` forever.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from transferlab.errors import TransferlabError
from transferlab.tracking.files import read_json

RUNNING, COMPLETED, FAILED = "running", "completed", "failed"


class Beating(Protocol):
    def beat(self) -> None: ...


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
    if isinstance(run_dir, dict):
        status = run_dir
    else:
        path = Path(run_dir) / "status.json"
        status = read_json(path, "status file") if path.is_file() else {}
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

    def __init__(self, run: "Beating | None", interval: float | None = None):
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
