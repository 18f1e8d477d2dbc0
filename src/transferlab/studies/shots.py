"""Label-budget studies: every method of an experiment at K labelled examples per class, over seeds.

``run_shot_study`` runs one normal run directory per cell (experiment, K, seed) inside one study directory
(``<output-dir>/study/<name>/<experiment>/k<K>-seed<N>/``), each on a balanced K-shot draw (``data.shots``;
nested within a seed unless ``nested=False``) and scored on the whole test split. ``study.json`` records
the cells and their statuses, written before and after each cell, so a killed study continues with the
missing cells when the same command runs again (a cell that was running is set aside and redone; a
finetune cell with checkpoints continues from its last one). At the end it writes the long-format
``results.csv`` and a CLIP_benchmark-style JSON per (model, dataset, method, shots) (``studies/results.py``).

K = ``None`` ("full" on the command line) is a full-data cell, today's run: the curve's last point.
A training-free experiment (zero-shot) is the same at every K: it runs once, as one full-data cell.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import shutil
import time
from pathlib import Path
from typing import Iterator, Sequence

from transferlab.config import replace_at, to_dict, value_at
from transferlab.errors import TransferlabError
from transferlab.experiments.registry import EXPERIMENTS
from transferlab.tracking.files import read_json, write_json
from transferlab.tracking.rundir import COMPLETED, FAILED, RUNNING, set_aside

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


def plan(arms: dict[str, object], shots: dict[str, list], seeds: Sequence[int] | None, nested: bool) -> dict:
    """The study's state: settings per arm and one pending cell per (experiment, K, seed); ``seeds=None``: each
    arm's own config seed (so a full-data cell is exactly that experiment's usual run)."""
    cells = []
    for experiment, config in arms.items():
        arm_seeds = list(seeds) if seeds else [config.seed]
        if EXPERIMENTS[experiment].training_free:
            cells.append({"experiment": experiment, "shots": None, "seed": arm_seeds[0], "status": PENDING})
            continue
        cells += [{"experiment": experiment, "shots": k, "seed": s, "status": PENDING}
                  for k in shots[experiment] for s in arm_seeds]
    for cell in cells:
        cell["run_dir"] = f"{cell['experiment']}/{cell_name(cell['shots'], cell['seed'])}"
    return {"version": 1, "nested": nested, "seeds": list(seeds) if seeds else "each experiment's config seed",
            "shots": {e: [shots_label(k) for k in shots.get(e, [None])] for e in arms},
            "settings": {e: comparable(c) for e, c in arms.items()}, "status": PENDING, "cells": cells}


def check_shots(arms: dict[str, object], shots: dict[str, list]) -> None:
    for experiment, config in arms.items():
        data = getattr(config, "data", None)
        if not hasattr(data, "shots"):
            raise TransferlabError(f"experiment {experiment} has no data.shots setting: it cannot run at a label "
                                   f"budget; leave it out of the study")
        if not shots.get(experiment) and not EXPERIMENTS[experiment].training_free:
            raise TransferlabError(f"no --shots values for {experiment}: give e.g. --shots 8,16,full")


def open_state(study_dir: Path, planned: dict) -> dict:
    """The study's state: a new one, or the stored one when it has the same settings (a resume)."""
    path = study_dir / STATE
    if not path.is_file():
        return planned
    stored = read_json(path, "study state")
    for key in ("nested", "seeds", "shots", "settings"):
        if stored.get(key) != planned[key]:
            raise TransferlabError(f"{study_dir} holds a study with other {key} ({stored.get(key)!r} there, "
                                   f"{planned[key]!r} now): rerun it with the settings it started with, or give "
                                   f"another run_name=... for a new study")
    return stored


@contextlib.contextmanager
def study_lock(study_dir: Path) -> Iterator[None]:
    """One process at a time per study directory (a second one gets a one-line error, not a race)."""
    study_dir.mkdir(parents=True, exist_ok=True)
    with open(study_dir / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TransferlabError(f"{study_dir} is being run by another process: wait for it, or give another "
                                   f"run_name=...") from None
        yield


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


def run_cell(study_dir: Path, state: dict, cell: dict, config) -> None:
    """One cell, recorded in ``study.json`` before and after; a failure is recorded and the study goes on."""
    experiment = EXPERIMENTS[cell["experiment"]]
    folder = study_dir / cell["run_dir"]
    resume = None
    if folder.is_dir():
        has_checkpoint = any(folder.glob("checkpoints/checkpoint-*"))
        resume = str(folder) if experiment.resumable and has_checkpoint else None
        if resume is None:
            kept = set_aside(folder)
            print(f"note: the unfinished attempt {folder.name} is kept as {kept.name}; redoing the cell")
    cell.update(status=RUNNING, error=None)
    write_json(study_dir / STATE, state)
    begin = time.perf_counter()
    try:
        experiment.run(config, study_dir, resume=resume, progress=False)
    except Exception as exc:  # noqa: BLE001 - one cell's failure is recorded; the other cells still run
        cell.update(status=FAILED, error=f"{exc.__class__.__name__}: {exc}")
        print(f"cell {cell['run_dir']} failed: {cell['error']}")
    except KeyboardInterrupt as exc:
        cell.update(status=FAILED, error=f"{exc.__class__.__name__}: {exc or 'interrupted'}")
        raise
    else:
        cell["status"] = COMPLETED
        shutil.rmtree(folder / "checkpoints", ignore_errors=True)  # the final weights are in model/
    finally:
        cell["elapsed_s"] = round(time.perf_counter() - begin, 1)
        write_json(study_dir / STATE, state)


def run_shot_study(arms: dict[str, object], shots: dict[str, list], seeds: Sequence[int] | None, output_dir: str | Path,
                   name: str, *, nested: bool = True) -> Path:
    """Run (or continue) the study ``<output_dir>/study/<name>``; return its directory. ``arms``: experiment ->
    its config; ``shots``: experiment -> K values (``None``: full data)."""
    from transferlab.studies.results import write_study_results

    check_shots(arms, shots)
    study_dir = Path(output_dir) / "study" / name
    planned = plan(arms, shots, seeds, nested)
    with study_lock(study_dir):
        state = open_state(study_dir, planned)
        state["status"] = RUNNING
        write_json(study_dir / STATE, state)
        todo = [c for c in state["cells"] if not finished(study_dir, c)]
        print(f"study directory: {study_dir} ({len(state['cells'])} cells, {len(todo)} to run)", flush=True)
        if not todo:
            print("note: every cell is complete: results and report rebuilt (give run_name=... for a new study)")
        try:
            for i, cell in enumerate(state["cells"], 1):
                if finished(study_dir, cell):
                    continue
                print(f"== cell {i}/{len(state['cells'])}: {cell['run_dir']}", flush=True)
                run_cell(study_dir, state, cell, cell_config(arms[cell["experiment"]], cell, nested, study_dir))
        except KeyboardInterrupt:
            state["status"] = FAILED
            write_json(study_dir / STATE, state)
            raise
        failed = [c["run_dir"] for c in state["cells"] if c["status"] != COMPLETED]
        state["status"] = FAILED if failed else COMPLETED
        state["failed_cells"] = failed
        write_json(study_dir / STATE, state)
        write_study_results(study_dir, state)
    if failed:
        print(f"{len(failed)} cell(s) failed ({', '.join(failed)}): rerun the same command to redo them")
    return study_dir


def cell_dirs(study_dir: Path, state: dict, full_only: bool = False) -> list[Path]:
    """The run directories of the study's cells that exist (only the full-data ones with ``full_only``)."""
    return [study_dir / c["run_dir"] for c in state["cells"]
            if (study_dir / c["run_dir"]).is_dir() and (not full_only or c["shots"] is None)]
