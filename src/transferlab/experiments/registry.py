"""The experiments transferlab runs: the one table of facts about each, read by every layer above.

One ``Experiment`` entry per experiment holds everything the pipeline, studies, searches, reports and
commands need to know of it: its command name and config section, its config class and runner (imported
lazily, so ``transferlab --help`` stays fast), whether it is a default stage of ``transferlab run``, whether
it resumes from checkpoints, uses labels at all, can be searched and pruned, which settings name files and
models, and which cache its runs may share. A new experiment is a folder (config + runner) plus one
``register(Experiment(...))`` call; the order of registration is the order of ``transferlab run``'s stages.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from transferlab.config import check_config
from transferlab.experiments.protocol import Runner

DATA_FILES = ("data.path", "data.train_file", "data.validation_file", "data.test_file", "data.manifest")


@dataclass(frozen=True)
class Experiment:
    name: str  # the command, the run directory's parent folder and the metrics' ``experiment``
    section: str  # the config section (preset file) it reads; zeroshot and lora share ``clip``
    config: str  # "module:Class", a dataclass meeting ``protocol.ExperimentConfig``
    runner: str  # "module:function", meeting ``protocol.Runner``
    help: str
    default_stage: bool = True  # run by `transferlab run` unless --stages says otherwise
    resumable: bool = False  # continues from checkpoints with --resume
    training_free: bool = False  # uses no labels: a study runs it once, whatever the K
    tunable: bool = False  # `transferlab tune` searches it (a preset's search/<name>.yaml is its space)
    prunable: bool = False  # reports validation during training, so a search may stop it early
    path_keys: tuple[str, ...] = ()  # settings naming files or folders (resolved against where they were given)
    model_keys: tuple[str, ...] = ()  # settings naming a model (a local folder is resolved; a Hub id is kept)
    shared_cache: tuple[str, str] | None = None  # (setting, folder): a cache that runs of one study/search share

    def config_class(self) -> type:
        return load_object(self.config)

    def runner_function(self) -> Runner:
        return load_object(self.runner)

    def run(self, config, output_dir, *, resume=None, progress: bool = True):
        """The runner on ``config``, checked again first: a setting assigned in place since the config was
        built (which no ``__post_init__`` sees) is refused with the same one line."""
        check_config(config)
        return self.runner_function()(config, output_dir, resume=resume, progress=progress)


def load_object(spec: str):
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


EXPERIMENTS: dict[str, Experiment] = {}


def register(experiment: Experiment) -> Experiment:
    """Add an experiment to the table (a name already there is refused, so two cannot shadow each other)."""
    if experiment.name in EXPERIMENTS:
        raise ValueError(f"an experiment named {experiment.name!r} is already registered")
    EXPERIMENTS[experiment.name] = experiment
    return experiment


def unregister(name: str) -> None:
    """Remove an experiment (tests that register a tiny one clean up with this)."""
    EXPERIMENTS.pop(name, None)


def stages() -> tuple[str, ...]:
    """Every experiment, in the order `transferlab run` runs them."""
    return tuple(EXPERIMENTS)


def default_stages() -> tuple[str, ...]:
    return tuple(name for name, e in EXPERIMENTS.items() if e.default_stage)


def sections() -> dict[str, str]:
    """Experiment -> its config section."""
    return {name: e.section for name, e in EXPERIMENTS.items()}


register(Experiment(
    "features", "features", "transferlab.experiments.features.config:FeaturesConfig",
    "transferlab.experiments.features.runner:run_features",
    "Experiment 1: frozen encoder features + SVC / linear SVC / logistic regression.",
    tunable=True, path_keys=DATA_FILES + ("cache_dir",), model_keys=("encoder.model",),
    shared_cache=("cache_dir", "features")))
register(Experiment(
    "finetune", "finetune", "transferlab.experiments.finetune.config:FinetuneConfig",
    "transferlab.experiments.finetune.runner:run_finetune",
    "Experiment 2: fine-tune a text encoder for sequence classification (Trainer; full or LoRA).",
    resumable=True, tunable=True, prunable=True, path_keys=DATA_FILES, model_keys=("model",)))
register(Experiment(
    "setfit", "setfit", "transferlab.experiments.setfit.config:SetFitConfig",
    "transferlab.experiments.setfit.runner:run_setfit",
    "SetFit: contrastive fine-tuning of a sentence encoder + logistic regression (the few-shot baseline).",
    default_stage=False, path_keys=DATA_FILES, model_keys=("model",)))
register(Experiment(
    "zeroshot", "clip", "transferlab.experiments.clip.config:ClipConfig",
    "transferlab.experiments.clip.zeroshot:run_zeroshot",
    "Experiment 3a: CLIP-style zero-shot classification on Tiny ImageNet.",
    training_free=True, path_keys=("data.path", "data.class_names_file", "data.manifest", "model.feature_cache"),
    model_keys=("model.name", "model.text_model")))
register(Experiment(
    "lora", "clip", "transferlab.experiments.clip.config:ClipConfig",
    "transferlab.experiments.clip.lora:run_lora",
    "Experiment 3b: LoRA fine-tuning of a dual encoder, against zero-shot and a linear probe.",
    resumable=True, tunable=True, prunable=True,
    path_keys=("data.path", "data.class_names_file", "data.manifest", "model.feature_cache"),
    model_keys=("model.name", "model.text_model"), shared_cache=("model.feature_cache", "images")))
