"""``transferlab`` command line: one subcommand per experiment, shared config conventions.

Every experiment command takes ``--config PRESET_OR_FILE`` (presets: ``offline``, the default, and
``paper``), ``--output-dir DIR`` (default ``logs``) and dotted ``key=value`` overrides, and prints
the run directory as its last line. User errors print one ``error:`` line and exit with code 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import sys
from pathlib import Path
from typing import Callable

from transferlab.errors import TransferlabError
from transferlab.experiments.registry import EXPERIMENTS
from transferlab.cli.axes import add_models_argument, add_task_arguments
from transferlab.cli.experiment import run_experiment
from transferlab.cli.options import add_seeds_argument, add_shots_argument, add_threads_argument

EPILOG = """config overrides: any field as a dotted key=value, e.g.
  transferlab features classifier.name=logreg classifier.C_grid=[0.1,1,10] data.limit=500
--print-config lists every key with its resolved value and its help.
Presets live in src/transferlab/configs/<preset>/; a YAML file may be given instead of a preset."""


class OneLineParser(argparse.ArgumentParser):
    """argparse with its errors in one line, as every other error of the command line (exit code 2)."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


class CommandParser(OneLineParser):
    """A command's parser; an experiment command's ``--help`` ends with its config keys and their help (the
    config class is imported only then, so ``transferlab --help`` stays fast)."""

    config_class: Callable[[], type] | None = None

    def format_help(self) -> str:
        text = super().format_help()
        if self.config_class is None:
            return text
        from transferlab.config import settings_text

        width = shutil.get_terminal_size().columns - 2
        return f"{text}\nconfig keys (key=value):\n{settings_text(self.config_class(), width)}\n"


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, metavar="PRESET_OR_FILE",
                        help="preset name (offline [default], paper) or a YAML file")
    parser.add_argument("--output-dir", default="logs", metavar="DIR",
                        help="where run directories go: DIR/<experiment>/<run-name>/ (default: logs)")
    add_threads_argument(parser)
    add_seeds_argument(parser, "one run per seed (<run-name>-seed<N>), then one report over them with mean ± sd")
    add_models_argument(parser)
    add_task_arguments(parser)
    add_shots_argument(parser, "a label-budget study: one run per K examples per class and seed (full: all the "
                               "data) in DIR/study/<run_name or EXPERIMENT-shots>/, then results.csv and learning "
                               "curves; the same command again continues a killed study")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config (every key with its value) as YAML and exit")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="transferlab", description="Transfer-learning experiments with pretrained transformers.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=CommandParser)
    for experiment in EXPERIMENTS.values():
        p = sub.add_parser(experiment.name, help=experiment.help, description=experiment.help, epilog=EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.config_class = experiment.config_class
        add_config_arguments(p)
        if experiment.resumable:
            p.add_argument("--resume", nargs="?", const="latest", default=None, metavar="RUN_DIR",
                           help="continue the latest run of this config (or RUN_DIR) from its last checkpoint")
    for extra in EXTRA_COMMANDS:
        importlib.import_module(extra).add_parser(sub)
    return parser


# Commands that are not one-experiment runs register themselves: module with add_parser(sub) and main(args).
EXTRA_COMMANDS: list[str] = ["transferlab.cli.run", "transferlab.cli.predict", "transferlab.cli.report",
                             "transferlab.cli.tune", "transferlab.cli.leaderboard", "transferlab.cli.manifest"]


# Commands that read folders and files someone may have sent (run and study folders, a CoOp split): what a
# damaged or hand-made file makes the code trip over is one line naming it, not a traceback.
READERS = ("report", "leaderboard", "predict", "manifest")
DAMAGED = (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError, OverflowError)


def damaged_input(command: str, exc: BaseException) -> str | None:
    """The one line for an exception a damaged received file caused in a reading command (``None``: not one;
    ``TRANSFERLAB_DEBUG=1`` keeps the traceback)."""
    import yaml

    if command not in READERS or os.environ.get("TRANSFERLAB_DEBUG") or not isinstance(exc, (*DAMAGED, yaml.YAMLError)):
        return None
    said = " ".join(str(exc).split())[:200] or "no message"
    return (f"{command} could not read what it was given ({exc.__class__.__name__}: {said}): a file of it is damaged "
            f"or was not written by transferlab; TRANSFERLAB_DEBUG=1 shows where")


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        from transferlab.models.device import set_threads

        set_threads(getattr(args, "threads", None))
        if args.command in EXPERIMENTS:
            result = run_experiment(args)
        else:
            result = args.func(args)
    except TransferlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - only a reading command's damaged input (damaged_input); else raised
        line = damaged_input(args.command, exc)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        return 2
    if result is not None:
        print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
