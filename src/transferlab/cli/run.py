"""``transferlab run``: the experiments in order, one directory, one report, resumable (``studies.pipeline``).

Stages: features, finetune, zeroshot, lora (setfit when asked for). Overrides name their stage's config
section: ``features.classifier.name=logreg``, ``finetune.training.epochs=2``, ``clip.training.epochs=3``
(``clip`` serves zeroshot and lora). Every stage config is validated before the first stage starts; a failed
stage leaves the finished stages and a report, and ``transferlab run --resume DIR`` continues from it.
``--shots`` makes the stages the arms of one label-budget study.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from transferlab.cli.axes import add_models_argument, model_arms, models_by_experiment, task_arms
from transferlab.cli.options import add_seeds_argument, add_shots_argument, add_threads_argument
from transferlab.cli.study import executor_choice, is_study, run_study, shots_by_experiment
from transferlab.errors import TransferlabError
from transferlab.reporting import pipeline as pipeline_report
from transferlab.experiments.registry import EXPERIMENTS, default_stages, stages
from transferlab.studies.pipeline import load_stage_configs, parse_stages, run_pipeline


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="All experiments in order (features, finetune, zeroshot, lora) and one report.",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None, metavar="PRESET_OR_FILE",
                   help="preset (offline [default], paper) or a YAML file with features/finetune/clip sections")
    p.add_argument("--output-dir", default="logs", metavar="DIR", help="runs go to DIR/run/<name>/ (default: logs)")
    p.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue a `transferlab run` directory "
                   "from its first unfinished stage (new overrides may only touch unfinished stages)")
    p.add_argument("--stages", default=",".join(default_stages()),
                   help=f"comma-separated subset of {','.join(stages())} (default: %(default)s)")
    add_threads_argument(p)
    add_seeds_argument(p, "run every stage once per seed (into <stage>/seed<N>/); the report gives mean ± sd")
    add_models_argument(p)
    p.add_argument("--suite", default=None, metavar="NAME_OR_FILE",
                   help="a study over a suite's tasks (a built-in suite or a suite YAML file): each stage runs the "
                        "tasks of its modality, crossed with --models, --shots and --seeds")
    add_shots_argument(p, "a label-budget study of the stages: one run per K examples per class and seed (full: all "
                          "the data) in DIR/study/<run_name or PRESET-shots>/; SECTION=K1,K2 gives one config "
                          "section its own values (e.g. --shots clip=1,2,4,8,full --shots 8,32,full)")
    p.add_argument("overrides", nargs="*", metavar="section.key=value",
                   help="e.g. features.data.limit=200 finetune.training.epochs=2 clip.lora.r=4")
    p.set_defaults(func=main)


def run_shots(args: argparse.Namespace) -> Path:
    """``transferlab run --shots``: every stage as one arm of a label-budget study (``studies/shots.py``)."""
    if args.resume:
        raise TransferlabError("--shots and --resume do not go together: run the same --shots command again to "
                               "continue a study")
    stages = parse_stages(args.stages)
    configs, run_name = load_stage_configs(args.config, args.overrides, stages)
    sections = {s: EXPERIMENTS[s].section for s in stages}
    shots = shots_by_experiment(args.shots, sections) if args.shots else {s: [None] for s in stages}
    arms = model_arms(configs, models_by_experiment(args.models, sections))
    if args.suite:
        from transferlab.data.tasks import load_suite

        arms = task_arms(arms, load_suite(args.suite), Path(args.output_dir) / "tasks")
    what = Path(args.suite).stem if args.suite else "shots" if args.shots else "models"
    name = run_name or f"{Path(args.config).stem if args.config else 'offline'}-{what}"
    return run_study(arms, shots, args.seeds, args.output_dir, name, nested=not args.independent_shots,
                     executor=executor_choice(args))


def main(args: argparse.Namespace) -> Path:
    if is_study(args):
        return run_shots(args)
    return run_pipeline(args.config, args.output_dir, args.overrides, args.resume, parse_stages(args.stages),
                        args.seeds, report=lambda pipe_dir, state: pipeline_report.write_pipeline_report(pipe_dir, state))
