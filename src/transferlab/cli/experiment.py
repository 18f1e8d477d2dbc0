"""One experiment command (``transferlab features`` etc.): one run, one run per seed, or a label-budget study."""

from __future__ import annotations

import argparse
from pathlib import Path

from transferlab.cli.axes import model_arms, models_by_experiment, task_arms
from transferlab.cli.study import executor_choice, is_study, run_study, shots_by_experiment
from transferlab.errors import TransferlabError
from transferlab.experiments.registry import EXPERIMENTS


def run_experiment(args: argparse.Namespace) -> Path | None:
    from transferlab.config import load_config

    experiment = EXPERIMENTS[args.command]
    resume = getattr(args, "resume", None)
    if resume and "=" in resume and not Path(resume).exists():  # `--resume key=value`: the value is an override
        args.overrides.insert(0, resume)
        resume = "latest"
    config = load_config(experiment.config_class(), experiment.section, args.config, args.overrides)
    config = with_task(config, args)
    if args.print_config:
        from transferlab.config import documented_yaml

        print(documented_yaml(config), end="")  # every key, its value and its help
        return None
    if is_study(args):
        return run_shots(experiment, config, args, resume)
    if args.seeds:
        if resume:
            raise TransferlabError("--seeds and --resume do not go together: resume each seed's run on its own")
        return run_seeds(experiment, config, args.output_dir, args.seeds)
    return experiment.run(config, args.output_dir, resume=resume)


def run_shots(experiment, config, args: argparse.Namespace, resume) -> Path:
    """``--shots`` / ``--models``: the experiment's study (see ``transferlab.studies.shots``)."""
    if resume:
        raise TransferlabError("--shots/--models and --resume do not go together: run the same command again to "
                               "continue a study")
    sections = {experiment.name: experiment.section}
    shots = shots_by_experiment(args.shots or [], sections) or {experiment.name: [None]}
    arms = model_arms({experiment.name: config}, models_by_experiment(args.models, sections))
    if args.suite or args.task:
        arms = task_arms(arms, selected_tasks(args), Path(args.output_dir) / "tasks")
    what = Path(args.suite).stem if args.suite else "shots" if args.shots else "models"
    name = config.run_name or f"{experiment.name}-{what}"
    return run_study(arms, shots, args.seeds, args.output_dir, name, nested=not args.independent_shots,
                     executor=executor_choice(args))


def selected_tasks(args: argparse.Namespace) -> list:
    """``--suite``'s tasks, or ``--task``'s one (refused together)."""
    from transferlab.data.tasks import load_suite, load_task

    if args.suite and args.task:
        raise TransferlabError("--task and --suite do not go together: list the task in a suite file instead")
    return load_suite(args.suite) if args.suite else [load_task(args.task)]


def with_task(config, args: argparse.Namespace):
    """The config with ``--task``'s data section (a data override of a source setting beside it is refused)."""
    if not getattr(args, "task", None) or getattr(args, "suite", None):
        return config
    from transferlab.config import parse_overrides
    from transferlab.data.tasks import apply_task, check_overrides, load_task

    task = load_task(args.task)
    check_overrides(parse_overrides([o for o in args.overrides if "=" in o]), config, task)
    return apply_task(config, task, Path(args.output_dir) / "tasks")


def run_seeds(experiment, config, output_dir: str, seeds: list[int]) -> Path | None:
    """One run per seed, side by side (``<name>-seed<N>``), and a report over them in ``<name>-seeds/``."""
    import dataclasses
    from datetime import datetime

    from transferlab.reporting.analysis import data_folders
    from transferlab.reporting.report import write_report

    base = config.run_name or datetime.now().strftime("%Y%m%d-%H%M%S")
    runs = [experiment.run(dataclasses.replace(config, seed=seed, run_name=f"{base}-seed{seed}"), output_dir)
            for seed in seeds]
    if any(r is None for r in runs):  # a non-main process of a multi-process launch
        return None
    report = write_report(runs, Path(output_dir) / experiment.name / f"{base}-seeds",
                          image_roots=data_folders([config]))
    print(f"report over {len(seeds)} seeds: {report}")
    return report.parent
