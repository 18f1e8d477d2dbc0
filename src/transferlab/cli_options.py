"""Command-line options shared by the experiment commands and ``transferlab run``."""

from __future__ import annotations

import argparse


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]`` (distinct integers), or a one-line error."""
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds takes comma-separated integers (e.g. 0,1,2); got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"--seeds needs distinct integers (e.g. 0,1,2); got {text!r}")
    return seeds


def add_seeds_argument(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--seeds", default=None, type=parse_seeds, metavar="0,1,2", help=help_text)


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="threads for torch, BLAS and the tokenizers together (default: the cores available; "
                             "recorded in the run's config.yaml under environment)")
