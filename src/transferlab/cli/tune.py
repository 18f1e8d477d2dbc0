"""``transferlab tune EXPERIMENT``: the search (``studies.tune``), then its report (``reporting.tune_report``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from transferlab.cli.options import add_memory_argument, add_threads_argument
from transferlab.errors import TransferlabError
from transferlab.experiments.registry import EXPERIMENTS
from transferlab.reporting.tune_report import write_tune_report


def add_parser(sub) -> None:
    text = "Search an experiment's hyper-parameters with Optuna (validation only), then score the best on test once."
    more = (" Running the same command again continues the study; workers on other machines join it with the same "
            "command and --storage URL.")
    tune = sub.add_parser("tune", help=text, description=text + more)
    experiments = tune.add_subparsers(dest="experiment", metavar="EXPERIMENT", required=True)
    for name in [e.name for e in EXPERIMENTS.values() if e.tunable]:
        add_arguments(experiments.add_parser(name, help=f"search the settings of transferlab {name}",
                                             description=text + more))
    tune.set_defaults(func=main)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trials", type=int, default=20, metavar="N",
                   help="trials this command adds to the study, over all its --jobs (default: 20)")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="stop starting trials after S seconds (each worker)")
    p.add_argument("--storage", default=None, metavar="URL",
                   help="an RDB URL (postgresql://... needs pip install \"transferlab[postgres]\"; mysql://..., "
                        "sqlite:///...) or a journal file, shared by every worker; default: the environment "
                        "variable TRANSFERLAB_TUNE_STORAGE (keeps a password off the command line), else "
                        "<output-dir>/tune/<study>/study.journal. A password is never printed or written")
    p.add_argument("--study-name", default=None, metavar="NAME",
                   help="one folder name (the study is <output-dir>/tune/NAME); default: <experiment>-<preset or "
                        "config file name>")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="workers: processes on this machine, each with threads = cores // N, or with --executor ray "
                        "Ray tasks of --threads CPUs each (default: 1); a killed worker is started again")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="the --jobs workers on this machine (local, the default) or as Ray tasks on a cluster (ray; "
                        "the output folder on storage every node mounts; docs/cluster.md)")
    p.add_argument("--ray-address", default=None, metavar="HOST:PORT",
                   help="with --executor ray: the cluster's address (default: RAY_ADDRESS, else a Ray instance on "
                        "this machine)")
    add_memory_argument(p, "search worker")
    p.add_argument("--heartbeat", type=int, default=10, metavar="S",
                   help="on a database storage, each running trial's heartbeat interval; a trial silent for 3 beats "
                        "(its worker died) is failed and its settings are queued again (default: 10)")
    p.add_argument("--search", default=None, metavar="FILE",
                   help="search space YAML (default: the preset's search/<experiment>.yaml)")
    p.add_argument("--pruner", choices=("median", "hyperband", "none"), default="median",
                   help="stops trials whose intermediate validation accuracy is poor (finetune, lora)")
    p.add_argument("--config", default=None, metavar="PRESET_OR_FILE",
                   help="preset name (offline [default], paper, base) or a YAML file")
    p.add_argument("--output-dir", default="logs", metavar="DIR", help="studies go to DIR/tune/<study>/")
    add_threads_argument(p)
    p.add_argument("--compare", default=None, metavar="RUN_DIR",
                   help="a finished run of the same experiment (e.g. today's preset): the report gives the final "
                        "run's paired difference to it on the same test examples (bootstrap interval, McNemar)")
    p.add_argument("--no-final", action="store_true",
                   help="run trials only: no best.yaml, final run or report (workers on other machines)")
    p.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)  # set by --jobs for its workers
    p.add_argument("--launch", default=None, help=argparse.SUPPRESS)  # a worker's token, the same when restarted
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides for every trial")


def main(args: argparse.Namespace) -> Path | None:
    from transferlab.studies.tune_workers import run_tune
    from transferlab.tracking.rundir import load_run

    if args.ray_address and args.executor != "ray":
        raise TransferlabError("--ray-address goes with --executor ray: add it, or leave the address out")
    if args.memory is not None and args.executor != "ray":
        raise TransferlabError("--memory reserves memory for Ray tasks: add --executor ray, or leave it out")
    if args.compare:
        load_run(args.compare)  # a finished run, or a one-line error before any trial
    outcome = run_tune(args)
    if outcome is None:  # a worker of --jobs: the command that started it reports
        return None
    report = write_tune_report(outcome, Path(args.compare) if args.compare else None)
    print(f"best config: {outcome.best_config}\nreport: {report}")
    return outcome.plan.directory
