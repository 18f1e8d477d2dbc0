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
                   help="also write the results table into FILE between <!-- results:begin/end --> markers")
    p.set_defaults(func=main)


def expand(paths: list[str]) -> list[Path]:
    """Stage runs of a `transferlab run` directory (its pipeline.json), or the run directories as given."""
    from transferlab.pipeline import STATE, stage_dirs
    from transferlab.tracking.rundir import read_json

    out = []
    for p in map(Path, paths):
        if not p.is_dir():
            raise TransferlabError(f"{p} is not a directory: pass run directories printed by transferlab commands")
        if (p / STATE).is_file():
            out += stage_dirs(p, read_json(p / STATE, "pipeline state"))
        else:
            out.append(p)
    return out


def main(args: argparse.Namespace) -> Path:
    from transferlab.reporting.report import write_report

    runs = expand(args.run_dirs)
    if args.output:
        out = Path(args.output)
    elif len(args.run_dirs) == 1:
        out = Path(args.run_dirs[0])
    else:
        out = Path("logs") / "reports" / datetime.now().strftime("%Y%m%d-%H%M%S")
    html = write_report(runs, out)
    if args.readme:
        from transferlab.reporting.report import update_readme

        update_readme(args.readme, runs, "transferlab report " + " ".join(args.run_dirs) + f" --readme {args.readme}")
    return html
