"""``transferlab report RUN_DIR... [--output DIR]``: rebuild the report from finished runs."""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

from transferlab.errors import TransferlabError


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="Rebuild report.md / report.html from finished run directories.",
                       description="Rebuild report.md and a self-contained report.html from run directories "
                                   "(any mix of experiments; several runs of one experiment side by side). "
                                   "Nothing is recomputed.")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                   help="run directories printed by transferlab commands (or a `transferlab run` directory)")
    p.add_argument("--output", default=None, metavar="DIR",
                   help="where to write the report (default: the run directory when one is given, "
                        "else logs/reports/<timestamp>)")
    p.add_argument("--readme", default=None, metavar="FILE",
                   help="also write the results table into FILE between <!-- results:begin/end --> markers "
                        "(study directories: their learning curves between <!-- shots:begin/end -->, the "
                        "figures under docs/figures/ beside FILE)")
    p.set_defaults(func=main)


def pipeline_state(pipe_dir: Path) -> dict:
    """A pipeline's pipeline.json, checked for the shape the report reads (it is data from the run folder)."""
    from transferlab.studies.pipeline import STATE
    from transferlab.tracking.files import read_json

    state = read_json(pipe_dir / STATE, "pipeline state")
    stages = state.get("stages") if isinstance(state, dict) else None
    if not isinstance(stages, list) or not all(isinstance(s, dict) and isinstance(s.get("name"), str)
                                               and isinstance(s.get("status"), str) for s in stages):
        raise TransferlabError(f"{pipe_dir / STATE} is not a pipeline state (a list of stages with name and "
                               f"status): pass the directory `transferlab run` printed, or its stage directories")
    return state


def checked_stage_dir(stage_dir: Path, pipe_dir: Path) -> Path:
    """A stage directory named by pipeline.json, refused when it lies outside the pipeline's directory."""
    if pipe_dir.resolve() not in stage_dir.resolve().parents:
        raise TransferlabError(f"{pipe_dir / 'pipeline.json'} names the stage directory {stage_dir}, outside "
                               f"{pipe_dir}: the file was edited; report the stage directories themselves")
    return stage_dir


def live(stages: list[dict], pipe_dir: Path) -> list[dict]:
    """A stage recorded as running in a pipeline whose process is gone reads as such (no heartbeat; process gone)."""
    from transferlab.tracking.files import read_json
    from transferlab.tracking.liveness import describe_status, is_dead

    status = read_json(pipe_dir / "status.json", "status file") if (pipe_dir / "status.json").is_file() else {}
    if not isinstance(status, dict) or not ("pid" in status or "heartbeat" in status) or not is_dead(status):
        return stages  # alive, or recorded by a version without heartbeats (nothing to tell it by)
    return [{**s, "status": describe_status(status)} if s["status"] == "running" else s for s in stages]


def expand(paths: list[str]) -> tuple[list[Path], list[dict], list[str]]:
    """The run directories to report, with the stage table and notes of each `transferlab run` directory
    among them (from its pipeline.json, as the pipeline's own report shows them)."""
    from transferlab.studies.pipeline import STATE, pipeline_summary, stage_dirs
    from transferlab.studies.shots import STATE as STUDY_STATE
    from transferlab.studies.shots import cell_dirs
    from transferlab.tracking.files import read_json

    runs, stages, notes = [], [], []
    for p in map(Path, paths):
        if not p.is_dir():
            raise TransferlabError(f"{p} is not a directory: pass run directories printed by transferlab commands")
        if (p / STUDY_STATE).is_file():  # a label-budget study: its curves come from results.csv
            runs += cell_dirs(p, read_json(p / STUDY_STATE, "study state"), full_only=True)
        elif (p / STATE).is_file():
            state = pipeline_state(p)
            runs += [checked_stage_dir(d, p) for d in stage_dirs(p, state)]
            more_stages, more_notes = pipeline_summary(p, state)
            stages, notes = stages + live(more_stages, p), notes + more_notes
        else:
            runs.append(p)
    return runs, stages, notes


def main(args: argparse.Namespace) -> Path:
    from transferlab.reporting.report import write_report

    runs, stages, notes = expand(args.run_dirs)
    if args.output:
        out = Path(args.output)
    elif len(args.run_dirs) == 1:
        out = Path(args.run_dirs[0])
    else:
        out = Path("logs") / "reports" / datetime.now().strftime("%Y%m%d-%H%M%S")
    html = write_report(runs, out, notes, stages=stages)
    if args.readme:
        from transferlab.reporting.report import update_readme, update_study_readme
        from transferlab.studies.shots import STATE as STUDY_STATE

        command = "transferlab report " + " ".join(args.run_dirs) + f" --readme {args.readme}"
        if all((Path(d) / STUDY_STATE).is_file() for d in args.run_dirs):
            update_study_readme(args.readme, args.run_dirs, command)  # studies: their curves, the shots block
        else:
            update_readme(args.readme, runs, command)
    return html
