"""Command-line options shared by the experiment commands and ``transferlab run``."""

from __future__ import annotations

import argparse
import os
import sys

SEED_RANGE = (0, 2**32 - 1)  # what numpy and torch accept as a seed


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]`` (distinct integers from 0 to 2**32 - 1), or a one-line error."""
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds takes comma-separated integers (e.g. 0,1,2); got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"--seeds needs distinct integers (e.g. 0,1,2); got {text!r}")
    bad = [s for s in seeds if not SEED_RANGE[0] <= s <= SEED_RANGE[1]]
    if bad:
        raise argparse.ArgumentTypeError(f"--seeds {text!r}: seed {bad[0]} is outside 0..{SEED_RANGE[1]} "
                                         f"(numpy and torch take no other seeds)")
    return seeds


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def parse_threads(text: str) -> int:
    """A thread count; above the cores this process may use, accepted with a warning (threads beyond the
    cores only take turns, and are often several times slower)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--threads takes a whole number (e.g. 4); got {text!r}") from None
    cores = available_cores()  # below 1 is refused with one line by models.device.set_threads
    if n > cores:
        print(f"warning: --threads {n} is more than the {cores} core(s) available to this process: the threads "
              f"will take turns on them, which is usually slower; use --threads {cores} or fewer", file=sys.stderr)
    return n


def add_seeds_argument(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--seeds", default=None, type=parse_seeds, metavar="0,1,2", help=help_text)


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=parse_threads, default=None, metavar="N",
                        help="threads for torch, BLAS and the tokenizers together (default: the cores available; "
                             "recorded in the run's config.yaml under environment)")


def parse_shots(text: str) -> tuple[str | None, list[int | None]]:
    """``"1,2,4,full"`` -> ``(None, [1, 2, 4, None])``; ``"clip=1,2,4"`` -> ``("clip", [1, 2, 4])`` (one config
    section's values, for ``transferlab run``). ``full``: all the training data (today's run)."""
    section, sep, values = text.rpartition("=")
    if not sep:
        section, values = "", text
    hint = "comma-separated examples per class, and full for all the data (e.g. 1,2,4,8,full or clip=1,2,4)"
    try:
        shots = [None if part.strip().lower() == "full" else int(part) for part in values.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shots takes {hint}; got {text!r}") from None
    if not shots or len(set(shots)) != len(shots) or any(k is not None and k < 1 for k in shots):
        raise argparse.ArgumentTypeError(f"--shots needs distinct positive integers or full ({hint}); got {text!r}")
    return section.strip() or None, sorted(shots, key=lambda k: float("inf") if k is None else k)


def add_shots_argument(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--shots", default=None, action="append", type=parse_shots, metavar="K1,K2,...,full",
                        help=help_text)
    parser.add_argument("--independent-shots", action="store_true",
                        help="with --shots: draw each K anew (default: nested draws, the K=2 examples hold the K=1 "
                             "example within a seed)")
    add_executor_arguments(parser)


def parse_memory(text: str) -> float:
    try:
        gib = float(text)
    except ValueError:
        gib = float("nan")
    if not gib > 0 or gib == float("inf"):
        raise argparse.ArgumentTypeError(f"--memory takes GiB as a positive number (e.g. 4 or 0.5); got {text!r}")
    return gib


def add_memory_argument(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--memory", type=parse_memory, default=None, metavar="GIB",
                        help=f"with --executor ray: the memory each {what}'s Ray task reserves, so Ray places no more "
                             f"of them on a node than its memory holds (default: none reserved; the offline presets' "
                             f"processes peaked at 2 to 4 GiB here, BENCHMARKS.md)")


def add_executor_arguments(parser: argparse.ArgumentParser) -> None:
    """Where a study's cells run (``transferlab.studies.executor``; docs/cluster.md)."""
    parser.add_argument("--executor", choices=("local", "ray"), default="local",
                        help="a study's cells one after the other in this process (local, the default), or as Ray "
                             "tasks on a cluster (ray: each cell asks for --threads CPUs, 1 without, and a GPU when "
                             "its device is cuda; a cell whose worker dies is retried from its checkpoint)")
    parser.add_argument("--ray-address", default=None, metavar="HOST:PORT",
                        help="with --executor ray: the cluster's address (default: RAY_ADDRESS, else a Ray instance "
                             "on this machine); the output folder must be on storage every node mounts")
    add_memory_argument(parser, "cell")
    parser.add_argument("--cell-output", action="store_true",
                        help="show each cell's own output (its notes, the Trainer's log lines) on the console; by "
                             "default it goes to <study>/cells/<cell>.log and the console shows the progress")
