"""What a study shows while its cells run: cells done of the total, the running cells, the elapsed time and an
ETA from the cells' measured times; and the same for a search's trials (:class:`SearchProgress`, with the best
value so far).

On a terminal it is one ``tqdm`` bar, refreshed every second (elapsed and ETA move while a long cell runs);
anything a cell prints there goes above the bar. When the output is piped (a log file, CI), it is one plain
line per finished cell. The ETA is the measured mean time of the completed cells (per arm of the study when
that arm has finished cells, else over every arm; times recorded by an earlier session of the same study
count too), times the cells left, less what the running cells have done, spread over the cells that run at
once (``slots``: 1 locally, the cluster's CPUs over the CPUs a cell asks for on Ray).
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from typing import IO, Iterator

from tqdm import tqdm

from transferlab.tracking.rundir import COMPLETED


def clock(seconds: float | None) -> str:
    """``0:03:07``; ``?`` before any cell was measured."""
    if seconds is None:
        return "?"
    seconds = int(round(max(seconds, 0)))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def arm_of(cell: dict) -> str:
    return cell.get("arm", cell["experiment"])


class StudyProgress:
    """``started(cell, where)`` when a cell begins (where: the node), ``finished(cell)`` once the driver has
    recorded its outcome (status, ``elapsed_s``, ``node``) in the cell; ``with`` closes the bar."""

    unit, desc = "cell", "study "  # what is counted, and the bar's label

    def __init__(self, cells: list[dict], todo: list[dict], slots: int = 1, stream: IO[str] | None = None,
                 bar: bool | None = None):
        self.cells = cells
        self.left = {c["run_dir"] for c in todo}
        self.setup(len(cells), len(cells) - len(todo), slots, stream, bar)

    def setup(self, total: int, done: int, slots: int, stream: IO[str] | None, bar: bool | None) -> None:
        """The counts, the clock, and the bar when ``bar`` (default: when ``stream`` is a terminal)."""
        self.slots, self.total, self.done = max(1, slots), total, done
        self.running: dict[str, float] = {}  # run_dir (a cell's; a trial's name) -> when it started (monotonic)
        self.begin = time.monotonic()
        self.stream = stream or sys.stdout
        use_bar = bar if bar is not None else bool(getattr(self.stream, "isatty", lambda: False)())
        self.bar = tqdm(total=self.total, initial=self.done, file=self.stream, unit=self.unit, dynamic_ncols=True,
                        bar_format="{desc}{percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} " + self.unit
                        + "s [{postfix}]", desc=self.desc) if use_bar else None
        self.stop = threading.Event()
        self.ticker = threading.Thread(target=self.tick, name="transferlab-progress", daemon=True)

    def __enter__(self) -> "StudyProgress":
        if self.bar is not None:
            self.refresh()
            self.ticker.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        if self.ticker.is_alive():
            self.ticker.join()
        if self.bar is not None:
            self.refresh()
            self.bar.close()

    def tick(self) -> None:
        while not self.stop.wait(1.0):
            self.refresh()

    def mean_times(self) -> tuple[dict[str, float], float | None]:
        """Mean seconds of a completed cell, per arm and over all of them."""
        times: dict[str, list[float]] = {}
        for cell in self.cells:
            if cell.get("status") == COMPLETED and isinstance(cell.get("elapsed_s"), (int, float)):
                times.setdefault(arm_of(cell), []).append(float(cell["elapsed_s"]))
        every = [t for ts in times.values() for t in ts]
        return {a: sum(ts) / len(ts) for a, ts in times.items()}, (sum(every) / len(every) if every else None)

    def eta(self) -> float | None:
        """Seconds until the last cell is done, or ``None`` before any cell was measured."""
        per_arm, overall = self.mean_times()
        if overall is None:
            return None
        now, work = time.monotonic(), 0.0
        for cell in self.cells:
            if cell["run_dir"] not in self.left:
                continue
            expected = per_arm.get(arm_of(cell), overall)
            begun = self.running.get(cell["run_dir"])
            work += max(expected - (now - begun), 0.0) if begun is not None else expected
        return work / min(self.slots, max(len(self.left), 1))

    def status_text(self) -> str:
        names = sorted(self.running)
        running = ("running " + ", ".join(names[:2]) + (f" +{len(names) - 2}" if len(names) > 2 else "")) \
            if names else "waiting"
        return f"{self.tail()}, {running}"

    def refresh(self) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(self.status_text(), refresh=True)

    def started(self, cell: dict, where: str | None = None) -> None:
        self.running[cell["run_dir"]] = time.monotonic()
        self.refresh()

    def finished(self, cell: dict) -> None:
        self.running.pop(cell["run_dir"], None)
        self.left.discard(cell["run_dir"])
        self.done += 1
        line = self.describe(cell)
        if self.bar is None:
            print(f"{line} | {self.tail()}", file=self.stream, flush=True)
            return
        self.bar.write(line, file=self.stream)
        self.bar.update(1)
        self.refresh()

    def describe(self, cell: dict) -> str:
        """The line of a finished cell."""
        where = (cell.get("node") or {}).get("host")
        verdict = cell["status"] if cell["status"] == COMPLETED else f"{cell['status']} ({cell.get('error')})"
        return (f"cell {self.done}/{self.total} {cell['run_dir']}: {verdict} in {clock(cell.get('elapsed_s'))}"
                + (f" on {where}" if where else "")
                + (f" after {len(cell['attempts'])} attempts" if len(cell.get("attempts") or []) > 1 else ""))

    def tail(self) -> str:
        return f"{clock(time.monotonic() - self.begin)} elapsed, ETA {clock(self.eta())}"

    @contextlib.contextmanager
    def above(self) -> Iterator[None]:
        """Inside: what this process prints goes above the bar (on a terminal), not through it."""
        if self.bar is None:
            yield
            return
        with contextlib.redirect_stdout(BarWriter(self.bar, self.stream)):
            yield


class SearchProgress(StudyProgress):
    """``transferlab tune``'s progress: trials done of the total, the best value so far, elapsed and ETA (the
    measured mean time of a finished trial, earlier sessions' included, times the trials left, less what the
    running ones have done, over the trials that run at once). ``started(trial)``, ``finished(trial)`` and
    ``grow(n)`` (a retry of a dead trial runs on top) take dicts: ``run_dir`` (the trial's name), ``status``,
    ``elapsed_s``, ``value``, ``settings`` and ``error``; ``best`` is ``(value, trial)`` or ``None``."""

    unit, desc = "trial", "tune "

    def __init__(self, total: int, times: list[float] = (), slots: int = 1, stream: IO[str] | None = None,
                 bar: bool | None = None):
        self.cells, self.left, self.times = [], set(), [float(t) for t in times]
        self.best: tuple[float, int] | None = None
        self.setup(total, 0, slots, stream, bar)

    def grow(self, n: int = 1) -> None:
        self.total += n
        if self.bar is not None:
            self.bar.total = self.total
            self.refresh()

    def eta(self) -> float | None:
        if not self.times:
            return None
        mean, now = sum(self.times) / len(self.times), time.monotonic()
        left = max(self.total - self.done, 0)
        work = sum(max(mean - (now - begun), 0.0) for begun in self.running.values())
        work += max(left - len(self.running), 0) * mean
        return work / min(self.slots, max(left, 1))

    def best_text(self) -> str:
        return f"best {self.best[0]:.4f} (trial {self.best[1]})" if self.best else "no best yet"

    def status_text(self) -> str:
        names = sorted(self.running)
        running = ("running " + ", ".join(names[:2]) + (f" +{len(names) - 2}" if len(names) > 2 else "")) \
            if names else "waiting"
        return f"{self.best_text()}, {StudyProgress.tail(self)}, {running}"

    def finished(self, trial: dict) -> None:
        if trial["status"] in ("complete", "pruned") and isinstance(trial.get("elapsed_s"), (int, float)):
            self.times.append(float(trial["elapsed_s"]))
        super().finished(trial)

    def describe(self, trial: dict) -> str:
        value = f" {trial['value']:.4f}" if trial.get("value") is not None else ""
        verdict = trial["status"] + value + (f" ({trial['error']})" if trial.get("error") else "")
        return (f"trial {self.done}/{self.total} {trial['run_dir']}: {verdict} in {clock(trial.get('elapsed_s'))}"
                + (f" {trial['settings']}" if trial.get("settings") else ""))

    def tail(self) -> str:
        return f"{self.best_text()} | {super().tail()}"


class BarWriter:
    """A stdout whose complete lines are written above a tqdm bar."""

    def __init__(self, bar: tqdm, stream: IO[str]):
        self.bar, self.stream, self.pending = bar, stream, ""

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            self.bar.write(line, file=self.stream)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False
