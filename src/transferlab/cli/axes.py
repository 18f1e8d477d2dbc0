"""``--models``: the model axis of a study, per experiment (``--models A,B`` or ``--models features=A,B``)."""

from __future__ import annotations

import argparse

from transferlab.config import replace_at
from transferlab.errors import TransferlabError
from transferlab.experiments.registry import EXPERIMENTS
from transferlab.tracking.files import slug


def parse_models(text: str) -> tuple[str | None, list[str]]:
    """``"A,B"`` -> ``(None, ["A", "B"])``; ``"features=A,B"`` -> ``("features", ["A", "B"])`` (one config
    section's models, for ``transferlab run``)."""
    head, sep, rest = text.partition("=")
    section, values = (head.strip(), rest) if sep and head.strip().isidentifier() else (None, text)
    models = [part.strip() for part in values.split(",") if part.strip()]
    if len(models) < 1 or len(set(models)) != len(models):
        raise argparse.ArgumentTypeError(f"--models takes distinct comma-separated model references (Hub ids, "
                                         f"folders or pypi:<package>), e.g. A,B or features=A,B; got {text!r}")
    return section, models


def add_models_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", default=None, action="append", type=parse_models, metavar="A,B,...",
                        help="a study whose axis is the model (crossed with --shots and --seeds, the same draws for "
                             "every model, so differences between models are paired); SECTION=A,B gives one config "
                             "section its own models (transferlab run)")


def models_by_experiment(entries: list[tuple[str | None, list[str]]] | None,
                         sections: dict[str, str]) -> dict[str, list[str]]:
    """``--models`` values per experiment (``sections``: experiment -> its config section)."""
    default, named = None, {}
    for section, models in entries or []:
        if (section is None and default is not None) or section in named:
            raise TransferlabError("--models gives the same list twice: give each section's models once")
        if section is not None and section not in sections.values():
            raise TransferlabError(f"--models {section}=...: {section!r} is none of this command's config sections "
                                   f"({', '.join(sorted(set(sections.values())))})")
        if section is None:
            default = models
        else:
            named[section] = models
    return {e: named.get(s, default) for e, s in sections.items() if named.get(s, default)}


def model_arms(configs: dict[str, object], models: dict[str, list[str]]) -> dict[str, object]:
    """The study's arms: each experiment as it is, or once per model (``<experiment>@<model folder name>``, the
    model set at the experiment's first model key)."""
    arms = {}
    for experiment, config in configs.items():
        if experiment not in models:
            arms[experiment] = config
            continue
        key = EXPERIMENTS[experiment].model_keys[0]
        names = [slug(ref) for ref in models[experiment]]
        if len(set(names)) != len(names):
            raise TransferlabError(f"--models {','.join(models[experiment])}: two models share the folder name "
                                   f"{next(n for n in names if names.count(n) > 1)!r}: give models whose last path "
                                   f"parts differ")
        for ref, name in zip(models[experiment], names):
            arms[f"{experiment}@{name}"] = replace_at(config, key, ref)
    return arms


def add_task_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", default=None, metavar="NAME_OR_FILE",
                        help="the data as a task: a built-in task name (rotten_tomatoes, tiny_imagenet, sst2, ...) or "
                             "a task YAML file (docs/tasks.md); it sets the data section's source settings")
    parser.add_argument("--suite", default=None, metavar="NAME_OR_FILE",
                        help="a study over the tasks of a suite (offline-mixed, setfit-text, coop11, or a suite YAML "
                             "file), crossed with --models, --shots and --seeds; each experiment runs the tasks of "
                             "its modality")


def task_arms(arms: dict[str, object], tasks: list, work_dir) -> dict[str, object]:
    """The arms crossed with the tasks: ``<arm>#<task>`` for every task of the arm's modality (text or image);
    an arm with no task of its modality is left out, and none at all is one line."""
    from transferlab.data.tasks import apply_task, modality_of

    out = {}
    for arm, config in arms.items():
        for task in tasks:
            if task.modality == modality_of(config):
                out[f"{arm}#{task.name}"] = apply_task(config, task, work_dir)
    if not out:
        modalities = sorted({modality_of(c) for c in arms.values()})
        raise TransferlabError(f"the suite has no {' or '.join(modalities)} task: give a suite with tasks of this "
                               f"experiment's modality")
    return out
