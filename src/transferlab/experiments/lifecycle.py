"""The one run lifecycle every experiment goes through.

``with open_run(...) as ctx:`` seeds every generator, creates the run directory (or reopens it for a
resume) from the main process only, tells the other processes of a ``torchrun`` / ``accelerate
launch`` job its path, turns SIGTERM into an interruption, opens the tracker, and on the way out
records ``completed``, or ``failed`` with the reason for any exception, Ctrl-C or SIGTERM. The
exception then carries the run directory as ``exc.run_dir``, so a caller (the pipeline) learns it
from the run itself. Other processes compute but never write.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from transferlab.config import TrackingConfig
from transferlab.errors import TransferlabError
from transferlab.evaluation.schema import RunMetrics
from transferlab.tracking.liveness import Heartbeat, describe_status, is_dead
from transferlab.tracking.ledger import mark_killed
from transferlab.tracking.rundir import COMPLETED, FAILED, RUNNING, Run
from transferlab.tracking.tracker import Tracker
from transferlab.training import checkpoints as ckpt
from transferlab.training.distributed import broadcast, state


FULL_BELOW_BYTES = 1 << 20  # a run that fails with less than this free beside it failed for want of space


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the run is marked failed and stops cleanly."""


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Inside: SIGTERM raises ``Terminated`` (a KeyboardInterrupt), so the run records it and stops cleanly."""
    def handler(signum, frame):
        raise Terminated("terminated by SIGTERM")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def sigterm_held() -> Iterator[Callable[[], None]]:
    """Inside: a SIGTERM is noted, and raised as ``Terminated`` by ``release()`` (or at the end of the block),
    so one sent while a run directory is being created lands where the lifecycle records it."""
    pending: list[int] = []
    try:
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: pending.append(signum))
    except ValueError:  # not the main thread
        yield lambda: None
        return

    def release() -> None:
        if signal.getsignal(signal.SIGTERM) is not previous:
            signal.signal(signal.SIGTERM, previous)
        if pending:
            pending.clear()
            raise Terminated("terminated by SIGTERM")

    try:
        yield release
    finally:
        release()


@dataclass
class RunContext:
    """What a runner needs inside the lifecycle. ``tracker`` and ``run`` are ``None`` on non-main processes."""

    path: Path
    run: Run | None
    tracker: Tracker | None
    config: dict
    process_index: int = 0
    num_processes: int = 1

    @property
    def is_main(self) -> bool:
        return self.run is not None

    def save_metrics(self, metrics: RunMetrics) -> None:
        """Write ``metrics.json`` (main process only): the last file of a finished run; the settings and final
        accuracies also go to TensorBoard's HParams tab, so runs compare there."""
        if self.run is None:
            return
        if self.tracker is not None:
            final = {f"{method}/{split}_accuracy": result[split]["accuracy"]
                     for method, result in metrics.methods.items() for split in ("validation", "test")
                     if split in result}  # a run with score_test=false has no test
            self.tracker.log_hparams({k: v for k, v in self.config.items() if k != "environment"}, final)
        self.run.save_metrics(metrics.to_dict())


def check_resume_config(run_dir: Path, resolved: dict) -> None:
    """Refuse a resume whose settings differ from the run's recorded ones: it would record one thing and do
    another. Only names, sources, tracking and the environment may differ; a relative path must resolve
    where it did (a resume from another working directory would read other files)."""
    recorded = ckpt.read_run_config(run_dir)
    changed = ckpt.config_differences(ckpt.comparable(recorded), ckpt.comparable(resolved))
    if changed:
        raise TransferlabError(f"--resume {run_dir}: these settings differ from the run's config.yaml: "
                               f"{'; '.join(changed)}. Resume with the recorded settings (drop those overrides), "
                               f"or start a new run")
    base = (recorded.get("environment") or {}).get("cwd")
    moved = [f"{key}={value}" for key, value in relative_paths(ckpt.comparable(recorded), Path(base))] if base else []
    if moved and Path(base).resolve() != Path.cwd().resolve():
        raise TransferlabError(f"--resume {run_dir}: the run was started in {base}, and its relative path(s) "
                               f"{', '.join(moved)} would resolve elsewhere from here: resume from {base}")


def relative_paths(config: dict, base: Path, prefix: str = "") -> list[tuple[str, str]]:
    """(dotted key, value) of every relative path in a config that names an existing file or folder in ``base``."""
    found = []
    for key, value in config.items():
        if isinstance(value, dict):
            found += relative_paths(value, base, f"{prefix}{key}.")
        elif isinstance(value, str) and value and not Path(value).is_absolute() and ":" not in value \
                and (base / value).exists() and value not in (".", ".."):
            found.append((prefix + key, value))
    return found


def create_or_reopen(proc, experiment: str, output_dir, run_name: str | None, resolved: dict,
                     default_name: str, resume_dir: Path | None) -> Run | None:
    """The main process creates (or reopens) the run directory; the others learn its path."""
    message = None
    if proc.is_main_process:
        try:
            if resume_dir is not None:
                run = Run(Path(resume_dir), experiment)
                check_not_running(run)
                run.set_status(RUNNING, resumed=True)
            else:
                run = Run.create(output_dir, experiment, run_name, resolved, default_name=default_name)
            for listener in RUN_CREATED:
                listener(run.path)
            message = ("ok", str(run.path))
        except TransferlabError as exc:
            message = ("error", str(exc))
    status, value = broadcast(message)
    if status == "error":
        raise TransferlabError(value)
    return Run(Path(value), experiment) if proc.is_main_process else Path(value)


RUN_CREATED: list[Callable[[Path], None]] = []  # told each run directory as soon as it exists (the pipeline)


@contextlib.contextmanager
def announce_runs(listener: Callable[[Path], None]) -> Iterator[None]:
    """Inside: ``listener(path)`` learns the run directory a runner opens the moment it exists, so a caller
    killed before the runner returns still knows where the run (and its checkpoints) is."""
    RUN_CREATED.append(listener)
    try:
        yield
    finally:
        RUN_CREATED.remove(listener)


def check_not_running(run: Run) -> None:
    """Refuse to resume a run whose process still works on it; a dead one (killed) is marked failed first."""
    status = run.status()
    if status.get("status") != RUNNING:
        return
    if not is_dead(status):
        raise TransferlabError(f"--resume {run.path}: the run is still {describe_status(status)}: wait for it, or "
                               f"stop that process first")
    mark_killed(run, status)


@contextlib.contextmanager
def open_run(experiment: str, *, seed: int, output_dir: str | Path, run_name: str | None, resolved: dict,
             tracking: TrackingConfig, default_name: str = "", resume_dir: Path | None = None,
             cpu: bool = True) -> Iterator[RunContext]:
    """The run lifecycle (see the module doc). ``cpu`` must match the Trainer's ``use_cpu`` under torchrun."""
    set_seed(seed)
    proc = state(cpu=cpu)
    if resume_dir is not None:
        check_resume_config(Path(resume_dir), resolved)
    with sigterm_as_interrupt(), sigterm_held() as release:  # no moment where status.json says "running" unguarded
        opened = create_or_reopen(proc, experiment, output_dir, run_name, resolved, default_name, resume_dir)
        run = opened if isinstance(opened, Run) else None
        path = run.path if run else opened
        start = time.perf_counter()
        try:
            release()  # a SIGTERM sent while the directory was being created arrives here, and is recorded
            if run:
                print(f"run directory: {path}", flush=True)
            with Heartbeat(run), Tracker(path, tracking, resolved) if run else contextlib.nullcontext() as tr:
                yield RunContext(path, run, tr, resolved, proc.process_index, proc.num_processes)
            if run:
                run.set_status(COMPLETED, elapsed_s=round(time.perf_counter() - start, 2))
        except BaseException as exc:
            error = disk_full(exc, path) or exc  # a full disk is the user's to fix: one line, not a traceback
            if run:
                record_failure(run, error, time.perf_counter() - start)
            with contextlib.suppress(AttributeError, TypeError):
                error.run_dir = path
            if error is exc:
                raise
            raise error from None
    proc.wait_for_everyone()


def disk_full(exc: BaseException, path: Path) -> TransferlabError | None:
    """A one-line error for ``ENOSPC`` anywhere in the exception's chain, else ``None``. Libraries wrap it, or
    keep only its text (safetensors: "I/O error: No space left on device (os error 28)")."""
    seen = exc
    while seen is not None:
        if (isinstance(seen, OSError) and seen.errno == errno.ENOSPC) or os.strerror(errno.ENOSPC) in str(seen):
            target = getattr(seen, "filename", None) or f"into {path}"
            return TransferlabError(f"disk full while writing {target}: free space or choose another --output-dir")
        seen = seen.__cause__ or seen.__context__
    try:  # others say nothing of the cause (torch.save: "unexpected pos 9472 vs 9364"): look at the disk itself
        free = shutil.disk_usage(path).free
    except OSError:
        return None
    if isinstance(exc, (OSError, RuntimeError)) and free < FULL_BELOW_BYTES:
        said = str(exc).splitlines()[0] if str(exc) else ""
        return TransferlabError(f"disk full while writing into {path} ({free} bytes left; {exc.__class__.__name__}: "
                                f"{said}): free space or choose another --output-dir")
    return None


def record_failure(run: Run, exc: BaseException, seconds: float) -> None:
    """``failed`` with the reason; never lets a second error (a full disk) hide the first."""
    reason = f"{exc.__class__.__name__}: {str(exc) or exc.__class__.__name__}"
    try:
        run.set_status(FAILED, error=reason, elapsed_s=round(seconds, 2))
    except OSError:
        with contextlib.suppress(OSError):  # the shortest write that still says so, in place
            (run.path / "status.json").write_text(json.dumps({"status": FAILED, "error": reason}) + "\n")
