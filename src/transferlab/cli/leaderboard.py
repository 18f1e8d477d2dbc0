"""``transferlab leaderboard STUDY_DIR...``: a leaderboard across the tasks of finished studies."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("leaderboard", help="A leaderboard across tasks (means, average ranks, tied groups) from "
                                           "finished studies.", description=__doc__)
    p.add_argument("studies", nargs="+", metavar="STUDY_DIR", help="study folders (DIR/study/<name>)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="where leaderboard.md and leaderboard.csv go (default: the first study folder)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> Path:
    from transferlab.reporting.leaderboard import write_leaderboard

    md, table = write_leaderboard(args.studies, args.out or args.studies[0])
    print(md.read_text(), end="")
    print(f"csv: {table}")
    return md
