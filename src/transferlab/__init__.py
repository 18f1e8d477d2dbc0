"""transferlab: transfer-learning experiments with pretrained transformers.

The Python API (the command line calls the same functions)::

    import transferlab as tl

    config = tl.load_config("features", overrides=["data.limit=200"])   # the offline preset, edited
    result = tl.run("features", config, output_dir="logs")
    print(result.run_dir, result.test_accuracy())

``load_config(experiment, preset=None, overrides=None)``, ``run(experiment, config=None, *, output_dir,
preset, overrides, data, resume, progress)`` -> :class:`RunResult`, ``load_result(run_dir)``,
``EXPERIMENTS`` (the registry), the config classes, and ``TransferlabError`` (every user error). Names load
on first use, so ``import transferlab`` stays light.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "load_config": "transferlab.api", "run": "transferlab.api", "load_result": "transferlab.api",
    "RunResult": "transferlab.api", "EXPERIMENTS": "transferlab.experiments.registry",
    "Experiment": "transferlab.experiments.registry", "register": "transferlab.experiments.registry",
    "TransferlabError": "transferlab.errors",
    "FeaturesConfig": "transferlab.experiments.features.config", "FinetuneConfig": "transferlab.experiments.finetune.config",
    "SetFitConfig": "transferlab.experiments.setfit.config", "ClipConfig": "transferlab.experiments.clip.config",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'transferlab' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
