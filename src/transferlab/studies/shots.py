"""Label-budget studies: every method of an experiment at K labelled examples per class, over seeds.

``run_shot_study`` runs one normal run directory per cell (experiment, K, seed) inside one study directory
(``<output-dir>/study/<name>/<experiment>/k<K>-seed<N>/``), each on a balanced K-shot draw (``data.shots``;
nested within a seed unless ``nested=False``) and scored on the whole test split. ``study.json`` records
the cells and their statuses, written before and after each cell, so a killed study continues with the
missing cells when the same command runs again (a cell that was running is set aside and redone; a
finetune cell with checkpoints continues from its last one). After every cell it rewrites the long-format
``results.csv`` and a CLIP_benchmark-style JSON per (model, dataset, method, shots) (``studies/results.py``).
The state file, its lock, the shape and containment checks and the attempt rule are the one ledger's
(``tracking/ledger.py``); the study's own ``status.json`` carries its pid and heartbeat, so a study killed
outright reads as dead. The study records the content hash of its data and refuses to continue on other data;
it exits non-zero when any cell failed.

K = ``None`` ("full" on the command line) is a full-data cell, today's run: the curve's last point.
A training-free experiment (zero-shot) is the same at every K: it runs once, as one full-data cell.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from transferlab.config import check_run_name, replace_at, to_dict, value_at
from transferlab.errors import TransferlabError
from transferlab.experiments.lifecycle import sigterm_as_interrupt
from transferlab.experiments.registry import EXPERIMENTS
from transferlab.models.resolve import check_weights
from transferlab.studies.executor import Executor, open_cells
from transferlab.studies.progress import StudyProgress
from transferlab.studies.results import RESULTS, write_study_results
from transferlab.tracking.files import check_links_inside, content_digest
from transferlab.tracking.ledger import Ledger
from transferlab.tracking.liveness import Heartbeat
from transferlab.tracking.rundir import COMPLETED, FAILED, RUNNING, Run

STATE = "study.json"
PENDING = "pending"
SETTINGS_IGNORED = ("seed", "run_name", "source")  # what a cell changes, or only says where the config came from


def shots_label(shots: int | None) -> str:
    return "full" if shots is None else str(shots)


def cell_name(shots: int | None, seed: int) -> str:
    return f"{'full' if shots is None else f'k{shots}'}-seed{seed}"


def comparable(config) -> dict:
    """An arm's settings as recorded, without what each cell sets itself."""
    out = {k: v for k, v in to_dict(config).items() if k not in SETTINGS_IGNORED}
    out["data"] = {k: v for k, v in out.get("data", {}).items() if k not in ("shots", "nested_shots")}
    return out


def arm_experiment(arm: str) -> str:
    """The experiment of an arm: ``features``, ``features@<model>`` for one model of a model axis,
    ``features#<task>`` / ``features@<model>#<task>`` for one task of a suite."""
    return arm.split("#", 1)[0].split("@", 1)[0]


def cell_folder(arm: str, shots: int | None, seed: int) -> str:
    """``<experiment>/k<K>-seed<N>`` (the run directory an experiment makes for that run name), with the model's
    name in front of the cell's in a model axis: ``features/<model>-k8-seed0``, and the task's before it in a
    suite: ``features/<task>-<model>-k8-seed0``."""
    head, _, task = arm.partition("#")
    experiment, _, model = head.partition("@")
    return f"{experiment}/{task + '-' if task else ''}{model + '-' if model else ''}{cell_name(shots, seed)}"


def plan(arms: dict[str, object], shots: dict[str, list], seeds: Sequence[int] | None, nested: bool) -> dict:
    """The study's state: settings per arm and one pending cell per (arm, K, seed); ``seeds=None``: each arm's
    own config seed (so a full-data cell is exactly that experiment's usual run). An arm is an experiment, or
    ``<experiment>@<model>`` when the study compares models: every model gets the same K values and seeds, so
    the same draws, and its differences to another model are paired."""
    cells = []
    for arm, config in arms.items():
        experiment = arm_experiment(arm)
        tag = {"arm": arm} if arm != experiment else {}
        arm_seeds = list(seeds) if seeds else [config.seed]
        if EXPERIMENTS[experiment].training_free:
            cells.append({"experiment": experiment, **tag, "shots": None, "seed": arm_seeds[0], "status": PENDING})
            continue
        cells += [{"experiment": experiment, **tag, "shots": k, "seed": s, "status": PENDING}
                  for k in shots[experiment] for s in arm_seeds]
    for cell in cells:
        cell["run_dir"] = cell_folder(cell.get("arm", cell["experiment"]), cell["shots"], cell["seed"])
    return {"version": 1, "nested": nested, "seeds": list(seeds) if seeds else "each experiment's config seed",
            "shots": {a: [shots_label(k) for k in shots.get(arm_experiment(a), [None])] for a in arms},
            "settings": {a: comparable(c) for a, c in arms.items()}, "data": data_fingerprints(arms),
            **task_records(arms), "status": PENDING, "cells": cells}


def task_records(arms: dict[str, object]) -> dict:
    """``{"tasks": {name: record}}`` for a suite's arms (modality, metric, the task file's SHA-256: what the
    leaderboard reads back), or nothing for a study without tasks."""
    from transferlab.data.tasks import arm_task, loaded

    tasks = {arm_task(a): loaded(arm_task(a)) for a in arms if arm_task(a)}
    return {"tasks": {n: t.record() for n, t in sorted(tasks.items()) if t}} if tasks else {}


def check_shots(arms: dict[str, object], shots: dict[str, list]) -> None:
    for arm, config in arms.items():
        experiment = arm_experiment(arm)
        data = getattr(config, "data", None)
        if not hasattr(data, "shots"):
            raise TransferlabError(f"experiment {experiment} has no data.shots setting: it cannot run at a label "
                                   f"budget; leave it out of the study")
        if not shots.get(experiment) and not EXPERIMENTS[experiment].training_free:
            raise TransferlabError(f"no --shots values for {experiment}: give e.g. --shots 8,16,full")


def study_ledger(study_dir: Path) -> Ledger:
    return Ledger(Path(study_dir), "study", "cells", EXPERIMENTS, "study", name_key="experiment")


def data_fingerprints(arms: dict[str, object]) -> dict[str, dict[str, str]]:
    """Per arm, the SHA-256 of the content of every data file or folder its config names (registry path keys
    under ``data.``), and of its task file for a suite's arm: a study continued on changed data is refused
    instead of mixing two data sets."""
    from transferlab.data.tasks import arm_task, loaded, task_fingerprint

    out = {}
    for arm, config in arms.items():
        prints = {}
        for key in EXPERIMENTS[arm_experiment(arm)].path_keys:
            value = value_at(config, key)
            if key.startswith("data.") and value and Path(value).expanduser().exists():
                prints[key] = content_digest(Path(value).expanduser())
        task = loaded(arm_task(arm)) if arm_task(arm) else None
        if task is not None:  # a task file changed between two runs of the study is refused like changed data
            prints["task"] = task_fingerprint(task)
        out[arm] = prints
    return out


def open_state(book: Ledger, planned: dict) -> dict:
    """The study's state: a new one, or the stored one when it has the same settings and data (a resume)."""
    if not book.exists():
        return planned
    stored = book.read()
    for key in ("nested", "seeds", "shots", "settings", "data"):
        if stored.get(key) != planned[key]:
            what = "data (file contents)" if key == "data" else key
            raise TransferlabError(f"{book.folder} holds a study with other {what} ({stored.get(key)!r} there, "
                                   f"{planned[key]!r} now): rerun it with the settings and data it started with, "
                                   f"or give another run_name=... for a new study")
    return stored


def preflight(arms: dict[str, object]) -> None:
    """Inputs every cell would refuse, checked once before the first cell: the model references (a missing
    folder, one without weights, an unknown packaged model)."""
    for arm, config in arms.items():
        for key in EXPERIMENTS[arm_experiment(arm)].model_keys:
            if value_at(config, key):
                check_weights(value_at(config, key))


def cell_config(config, cell: dict, nested: bool, study_dir: Path):
    """The arm's config for one cell: its seed, its run name, its label budget; a K-shot cell of an experiment
    with a shared cache (its registry entry) keeps it in ``<study>/cache/<folder>`` unless the config names one,
    so each example is encoded once per study whatever the number of K values and seeds."""
    data = dataclasses.replace(config.data, shots=cell["shots"], nested_shots=nested)
    config = dataclasses.replace(config, seed=cell["seed"], run_name=Path(cell["run_dir"]).name, data=data)
    shared = EXPERIMENTS[cell["experiment"]].shared_cache
    if shared and cell["shots"] is not None and value_at(config, shared[0]) is None:
        config = replace_at(config, shared[0], str(study_dir / "cache" / shared[1]))
    return config


def finished(study_dir: Path, cell: dict) -> bool:
    return cell["status"] == COMPLETED and (study_dir / cell["run_dir"] / "metrics.json").is_file()


class CellRecorder:
    """The driver's records of the cells (the one writer of ``study.json``, whatever runs the cells): a cell
    is marked running when it is handed out, and its outcome recorded when it comes back (status, error, wall
    time, the node that ran it; on Ray its attempts and the checkpoint a retry resumed from), followed by
    ``results.csv`` and the progress display. An input error raised before a cell's run directory existed
    (the same for every cell) stops the study."""

    def __init__(self, book: Ledger, state: dict, progress: StudyProgress):
        self.book, self.state, self.progress = book, state, progress

    def submitted(self, cell: dict, resources: dict | None = None) -> None:
        """A cell handed to the executor; ``resources``: what its Ray task reserves (recorded as asked)."""
        self.book.contained(cell["run_dir"])
        cell.update(status=RUNNING, error=None)
        if resources:
            cell["resources"] = resources
        self.book.write(self.state)

    def started(self, cell: dict, where: str | None) -> None:
        self.progress.started(cell, where)

    def done(self, cell: dict, outcome: dict) -> None:
        cell.update(status=outcome["status"], error=outcome.get("error"), elapsed_s=outcome.get("elapsed_s"),
                    node=outcome.get("node"))
        for key in ("attempts", "resumed_from"):
            cell.pop(key, None)
            if outcome.get(key):
                cell[key] = outcome[key]
        self.book.write(self.state)
        write_study_results(self.book.folder, self.state)
        self.progress.finished(cell)
        if outcome.get("stop"):
            raise TransferlabError(outcome["message"])

    def abandoned(self, cell: dict, error: str, elapsed_s: float | None = None) -> None:
        cell.update(status=FAILED, error=error, **({"elapsed_s": elapsed_s} if elapsed_s is not None else {}))
        self.book.write(self.state)

    def console(self):
        return self.progress.above()


@dataclass(frozen=True)
class StudyOutcome:
    directory: Path
    cells: int
    failed: list[str]  # run_dir of every cell that did not complete


def run_shot_study(arms: dict[str, object], shots: dict[str, list], seeds: Sequence[int] | None,
                   output_dir: str | Path, name: str, *, nested: bool = True,
                   executor: Executor | None = None) -> StudyOutcome:
    """Run (or continue) the study ``<output_dir>/study/<name>``. ``arms``: experiment -> its config; ``shots``:
    experiment -> K values (``None``: full data); ``executor``: where the cells run (``studies.executor``:
    in this process by default, or as Ray tasks). ``results.csv`` is rewritten after every cell, so a study
    killed outright still shows its finished cells."""
    check_shots(arms, shots)
    preflight(arms)
    book = study_ledger(Path(output_dir) / "study" / check_run_name(name))
    planned = plan(arms, shots, seeds, nested)
    with book.locked(f"{book.folder} is being run by another process: wait for it, or give another run_name=..."):
        state = open_state(book, planned)
        status = Run(book.folder, "study")
        book.take_over(status, state)
        with sigterm_as_interrupt(), Heartbeat(status):
            status.set_status(RUNNING)
            state["status"] = RUNNING
            book.write(state)
            failed = run_cells(book, state, arms, nested, status, executor or Executor())
    return StudyOutcome(book.folder, len(state["cells"]), failed)


def run_cells(book: Ledger, state: dict, arms: dict, nested: bool, status: Run, executor: Executor) -> list[str]:
    """Every cell not yet finished, handed to the executor (in order, or all at once on Ray); the study's status
    and results recorded after each, with a progress display (``studies.progress``)."""
    todo = [c for c in state["cells"] if not finished(book.folder, c)]
    print(f"study directory: {book.folder} ({len(state['cells'])} cells, {len(todo)} to run)", flush=True)
    if not todo:
        print("note: every cell is complete: results and report rebuilt (give run_name=... for a new study)")
    try:
        if todo:
            with open_cells(executor, book.folder) as cells, \
                    StudyProgress(state["cells"], todo, slots=cells.slots) as progress:
                jobs = [(c, cell_config(arms[c.get("arm", c["experiment"])], c, nested, cells.study_dir))
                        for c in todo]
                cells.run(jobs, CellRecorder(book, state, progress))
    except (KeyboardInterrupt, TransferlabError) as exc:
        state["status"] = FAILED
        book.write(state)
        status.set_status(FAILED, error=f"{exc.__class__.__name__}: {exc}")
        write_study_results(book.folder, state)
        raise
    failed = [c["run_dir"] for c in state["cells"] if c["status"] != COMPLETED]
    state.update(status=FAILED if failed else COMPLETED, failed_cells=failed)
    book.write(state)
    write_study_results(book.folder, state)
    status.set_status(FAILED if failed else COMPLETED, **({"error": f"{len(failed)} cell(s) failed"} if failed else {}))
    return failed


def read_study(study_dir: Path) -> tuple[dict, list[str]]:
    """A study's state read back (checked: shape, contained paths, no file of its results or its cells linked
    from outside it) and notes for its report: cells recorded as running by a study whose process is gone are
    named dead."""
    book = study_ledger(study_dir)
    state = book.read()
    check_links_inside(study_dir, [RESULTS] + [c["run_dir"] for c in state["cells"]], "study folder")
    dead = book.dead_entries(Run(book.folder, "study").status(), state)
    notes = [f"cell {c['run_dir']} was running when the study's process ended (killed): rerun the same command "
             f"to redo it" for c in dead]
    return state, notes


def cell_dirs(study_dir: Path, state: dict, full_only: bool = False) -> list[Path]:
    """The run directories of the study's cells that exist (only the full-data ones with ``full_only``)."""
    return [study_dir / c["run_dir"] for c in state["cells"]
            if (study_dir / c["run_dir"]).is_dir() and (not full_only or c["shots"] is None)]
