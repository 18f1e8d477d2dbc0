"""One experiment command (``transferlab features`` etc.): one run, one run per seed, or a label-budget study."""

from __future__ import annotations

import argparse
from pathlib import Path

from transferlab.cli.axes import model_arms, models_by_experiment
from transferlab.cli.study import run_study, shots_by_experiment
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
    if args.print_config:
        from transferlab.config import documented_yaml

        print(documented_yaml(config), end="")  # every key, its value and its help
        return None
    if args.shots or args.models:
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
    name = config.run_name or f"{experiment.name}-{'shots' if args.shots else 'models'}"
    return run_study(arms, shots, args.seeds, args.output_dir, name, nested=not args.independent_shots)


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
