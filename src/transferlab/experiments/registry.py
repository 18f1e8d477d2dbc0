"""The experiments transferlab runs: one table that the CLI and the pipeline both read.

Every runner has one signature, ``runner(config, output_dir, *, resume=None, progress=True)``, and
returns its run directory (``None`` on the non-main processes of a multi-process launch). Configs
and runners are imported lazily, so ``transferlab --help`` stays fast.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Experiment:
    name: str  # the command, the run directory's parent folder and the metrics' ``experiment``
    section: str  # the config section (preset file) it reads; zeroshot and lora share ``clip``
    config: str  # "module:Class"
    runner: str  # "module:function"
    help: str
    resumable: bool = False  # continues from checkpoints with --resume

    def config_class(self) -> type:
        return load_object(self.config)

    def run(self, config, output_dir, *, resume=None, progress: bool = True):
        return load_object(self.runner)(config, output_dir, resume=resume, progress=progress)


def load_object(spec: str):
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


EXPERIMENTS = {e.name: e for e in (
    Experiment("features", "features", "transferlab.experiments.features:FeaturesConfig",
               "transferlab.experiments.features:run_features",
               "Experiment 1: frozen encoder features + SVC / linear SVC / logistic regression."),
    Experiment("finetune", "finetune", "transferlab.experiments.finetune.config:FinetuneConfig",
               "transferlab.experiments.finetune.runner:run_finetune",
               "Experiment 2: fine-tune a text encoder for sequence classification (Trainer; full or LoRA).",
               resumable=True),
    Experiment("setfit", "setfit", "transferlab.experiments.setfit:SetFitConfig",
               "transferlab.experiments.setfit:run_setfit",
               "SetFit: contrastive fine-tuning of a sentence encoder + logistic regression (the few-shot baseline)."),
    Experiment("zeroshot", "clip", "transferlab.experiments.clip.config:ClipConfig",
               "transferlab.experiments.clip.zeroshot:run_zeroshot",
               "Experiment 3a: CLIP-style zero-shot classification on Tiny ImageNet."),
    Experiment("lora", "clip", "transferlab.experiments.clip.config:ClipConfig",
               "transferlab.experiments.clip.lora:run_lora",
               "Experiment 3b: LoRA fine-tuning of a dual encoder, against zero-shot and a linear probe."),
)}
