"""``transferlab report DIR... [--output DIR] [--readme FILE] [--images DIR]``: rebuild the report from finished
runs, label-budget studies and ``transferlab run`` pipelines.

This command decides what each folder is (``study.json``: a study; ``pipeline.json``: a pipeline; else a run),
reads its state through the ledger's checks, and hands the reporting library the run folders and the
sections (a study's curves, a pipeline's stage table) as blocks. A folder is data: thumbnails come only from
inside the run folders, the packaged demo data and the folders given with ``--images``.
"""

from __future__ import annotations

import argparse
import os
from datetime import datetime
from pathlib import Path

from transferlab.errors import TransferlabError


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="Rebuild report.md / report.html from finished run directories.",
                       description="Rebuild report.md and a self-contained report.html from run directories "
                                   "(any mix of experiments; several runs of one experiment side by side), "
                                   "label-budget study directories and `transferlab run` directories. Nothing is "
                                   "recomputed.")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                   help="run directories printed by transferlab commands (or a `transferlab run` or study directory)")
    p.add_argument("--output", default=None, metavar="DIR",
                   help="where to write the report (default: the run directory when one is given, "
                        "else logs/reports/<timestamp>)")
    p.add_argument("--readme", default=None, metavar="FILE",
                   help="also write the results table into FILE between <!-- results:begin/end --> markers "
                        "(study directories: their learning curves between <!-- shots:begin/end -->, the "
                        "figures under figures/ beside FILE)")
    p.add_argument("--images", action="append", default=[], metavar="DIR",
                   help="a folder of images the runs' predictions name (e.g. your Tiny ImageNet copy): the error "
                        "analysis may show thumbnails from it; without it, only images inside the run folders and "
                        "the packaged demo data are shown (repeat for several)")
    p.set_defaults(func=main)


def live(stages: list[dict], pipe_dir: Path) -> list[dict]:
    """A stage recorded as running in a pipeline whose process is gone reads as such (no heartbeat; process gone)."""
    from transferlab.tracking.files import read_json
    from transferlab.tracking.liveness import describe_status, is_dead

    status = read_json(pipe_dir / "status.json", "status file") if (pipe_dir / "status.json").is_file() else {}
    if not isinstance(status, dict) or not ("pid" in status or "heartbeat" in status) or not is_dead(status):
        return stages  # alive, or recorded by a version without heartbeats (nothing to tell it by)
    return [{**s, "status": describe_status(status)} if s["status"] == "running" else s for s in stages]


def read_folders(paths: list[str]) -> list[tuple[str, Path, dict | None]]:
    """``(kind, folder, state)`` of each folder: ``study`` and ``pipeline`` with their state read through the
    ledger's checks (shape, every recorded folder inside), ``run`` otherwise; all before anything is written."""
    from transferlab.reporting.runs import check_contained
    from transferlab.studies.pipeline import STATE, ledger
    from transferlab.studies.shots import STATE as STUDY_STATE
    from transferlab.studies.shots import read_study

    out = []
    for p in map(Path, paths):
        if (p / STUDY_STATE).is_file():
            out.append(("study", p, read_study(p)[0]))
        elif (p / STATE).is_file():
            out.append(("pipeline", p, ledger(p).read()))
        else:
            check_contained(p)
            out.append(("run", p, None))
    return out


def expand(folders: list[tuple[str, Path, dict | None]], assets: Path) -> tuple[list[Path], list[tuple]]:
    """The run folders to report and the sections handed in: each study's (curves saved into ``assets``; its
    full-data cells reported as runs), and one stage table over the pipelines."""
    from transferlab.reporting.pipeline import pipeline_blocks
    from transferlab.reporting.study import study_blocks
    from transferlab.studies.pipeline import pipeline_summary, stage_dirs
    from transferlab.studies.shots import cell_dirs

    runs, studies, stages, notes = [], [], [], []
    for kind, p, state in folders:
        if kind == "study":
            runs += cell_dirs(p, state, full_only=True)
            studies += study_blocks(p, assets)
        elif kind == "pipeline":
            runs += stage_dirs(p, state)
            more_stages, more_notes = pipeline_summary(p, state)
            stages, notes = stages + live(more_stages, p), notes + more_notes
        else:
            runs.append(p)
    return runs, pipeline_blocks(stages, notes) + studies


def image_folders(given: list[str]) -> list[Path]:
    bad = [g for g in given if not Path(g).is_dir()]
    if bad:
        raise TransferlabError(f"--images {bad[0]}: not a folder: give the folder holding the images the runs name")
    return [Path(g) for g in given]


def shown_path(path: str) -> str:
    """``path`` relative to the working directory (the repository root, when the command is run there), with
    ``..`` where it lies outside: a generated line never names an absolute path of the machine that made it."""
    return os.path.relpath(Path(path).resolve(), Path.cwd().resolve())


def main(args: argparse.Namespace) -> Path:
    from transferlab.reporting.output import report_assets
    from transferlab.reporting.readme import checked_readme, update_readme, update_study_readme
    from transferlab.reporting.report import write_report

    missing = [d for d in args.run_dirs if not Path(d).is_dir()]
    if missing:
        raise TransferlabError(f"{missing[0]} is not a directory: pass run directories printed by transferlab commands")
    roots = image_folders(args.images)
    folders = read_folders(args.run_dirs)
    studies = all(kind == "study" for kind, _, _ in folders)
    if args.readme:  # a README that cannot take the block: refused before any report is written
        checked_readme(Path(args.readme), "shots" if studies else "results")
    if args.output:
        out = Path(args.output)
    elif len(args.run_dirs) == 1:
        out = Path(args.run_dirs[0])
    else:
        out = Path("logs") / "reports" / datetime.now().strftime("%Y%m%d-%H%M%S")
    runs, blocks = expand(folders, report_assets(out))
    html = write_report(runs, out, blocks, roots)
    if args.readme:
        readme = Path(args.readme)
        command = ("transferlab report " + " ".join(shown_path(d) for d in args.run_dirs)
                   + f" --readme {shown_path(args.readme)}")
        if studies:
            update_study_readme(readme, args.run_dirs, command)  # studies: their curves, the shots block
        else:
            update_readme(readme, runs, command)
    return html
