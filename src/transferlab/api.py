"""The public Python API, exported from ``transferlab``: load a config, run an experiment, read the result.

.. code-block:: python

    import transferlab as tl

    config = tl.load_config("features", overrides=["data.limit=200"])   # the offline preset, edited
    result = tl.run("features", config, output_dir="logs")
    print(result.run_dir, result.test_accuracy(), result.metrics["primary"])

``run`` also takes in-memory data for the text experiments (``data=``: a ``datasets.DatasetDict``, or a
mapping of split name to a ``datasets.Dataset`` or a pandas ``DataFrame``): the splits are written as JSON Lines
under ``<output_dir>/inputs/<content hash>/`` and the run reads them as files, so the run directory records
where its data came from and a second run on the same data reuses the same files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from transferlab.config import load_config as load_typed_config
from transferlab.errors import TransferlabError
from transferlab.experiments.registry import EXPERIMENTS, Experiment
from transferlab.tracking.files import write_bytes_new
from transferlab.tracking.rundir import read_run

TEXT_SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class RunResult:
    """A finished run: its directory and, in memory, what its ``metrics.json`` holds."""

    experiment: str
    run_dir: Path
    metrics: dict[str, Any]
    status: str

    @property
    def primary(self) -> str:
        return self.metrics["primary"]

    def accuracy(self, split: str = "test", method: str | None = None) -> float | None:
        """The accuracy of ``method`` (default: the run's primary method) on ``split``; ``None`` where the run
        did not score that split (a search trial never scores test)."""
        methods = self.metrics["methods"]
        name = method or self.primary
        if name not in methods:
            raise TransferlabError(f"method {name!r} is not in this run: choose one of {', '.join(methods)}")
        return methods[name].get(split, {}).get("accuracy")

    def test_accuracy(self, method: str | None = None) -> float | None:
        return self.accuracy("test", method)


def experiment_entry(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise TransferlabError(f"unknown experiment {name!r}: choose one of {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]


def load_config(experiment: str, preset: str | Path | None = None,
                overrides: Sequence[str] | Mapping[str, Any] | None = None):
    """The validated config of ``experiment`` from a preset name (default ``offline``) or YAML file, with dotted
    overrides (``["data.limit=200"]`` or ``{"data": {"limit": 200}}``); errors are one line."""
    entry = experiment_entry(experiment)
    extra = dict(overrides) if isinstance(overrides, Mapping) else list(overrides or [])
    return load_typed_config(entry.config_class(), entry.section, preset, extra)


def load_result(run_dir: str | Path) -> RunResult:
    """A run directory read back (finished or not: ``status`` tells)."""
    config, metrics, status = read_run(run_dir)
    if not metrics:
        raise TransferlabError(f"run {run_dir} has no metrics.json (status: {status.get('status', 'unknown')}): "
                               f"rerun or resume it")
    return RunResult(metrics.get("experiment", ""), Path(run_dir), metrics, status.get("status", "unknown"))


def run(experiment: str, config=None, *, output_dir: str | Path = "logs", preset: str | Path | None = None,
        overrides: Sequence[str] | Mapping[str, Any] | None = None, data: Any = None,
        resume: str | Path | None = None, progress: bool = True) -> RunResult:
    """Run one experiment and return its result. ``config``: a config object (from ``load_config`` or built
    from the dataclasses); without one, ``preset`` and ``overrides`` make it. ``data``: in-memory splits for
    a text experiment (see the module's docstring)."""
    entry = experiment_entry(experiment)
    if config is None:
        config = load_config(experiment, preset, overrides)
    elif preset is not None or overrides:
        raise TransferlabError("give run() either a config or preset/overrides, not both: edit the config with "
                               "dataclasses.replace, or pass overrides to load_config")
    if not isinstance(config, entry.config_class()):
        raise TransferlabError(f"run({experiment!r}) needs a {entry.config_class().__name__}; got "
                               f"{type(config).__name__}: build it with transferlab.load_config({experiment!r})")
    if data is not None:
        config = with_data_files(config, data, Path(output_dir))
    run_dir = entry.run(config, output_dir, resume=str(resume) if resume else None, progress=progress)
    if run_dir is None:  # a non-main process of a multi-process launch
        raise TransferlabError("this process is not the main process of a multi-process launch: read the "
                               "result in the main one")
    return load_result(run_dir)


def split_records(split) -> list[dict]:
    """A ``datasets.Dataset`` or pandas ``DataFrame`` as a list of row dicts."""
    if hasattr(split, "to_dict") and hasattr(split, "columns") and not hasattr(split, "features"):  # DataFrame
        return split.to_dict(orient="records")
    if hasattr(split, "to_list"):  # datasets.Dataset
        return split.to_list()
    raise TransferlabError(f"data splits must be datasets.Dataset or pandas DataFrame objects; got "
                           f"{type(split).__name__}")


def with_data_files(config, data, output_dir: Path):
    """The config reading ``data`` (split name -> rows) from JSON Lines files written under
    ``<output_dir>/inputs/<sha256 of the content>/``."""
    text_data = getattr(config, "data", None)
    if not hasattr(text_data, "train_file"):
        raise TransferlabError("in-memory data is supported for the text experiments (features, finetune, setfit); "
                               "image experiments read an image folder: set data.path")
    splits = {str(name): split_records(split) for name, split in dict(data).items()}
    if "train" not in splits or set(splits) - set(TEXT_SPLITS):
        raise TransferlabError(f"data needs a 'train' split and may add 'validation' and 'test'; got "
                               f"{', '.join(splits) or 'none'}")
    texts = {name: "".join(json.dumps(row, ensure_ascii=False, default=str) + "\n" for row in rows)
             for name, rows in splits.items()}
    digest = hashlib.sha256(json.dumps(texts, sort_keys=True).encode()).hexdigest()[:16]
    folder = output_dir / "inputs" / digest
    files = {}
    for name, text in texts.items():
        files[f"{name}_file"] = str(write_bytes_new(folder, f"{name}.jsonl", text.encode()))
    data_config = dataclasses.replace(text_data, source="files", path=None, **{f"{s}_file": files.get(f"{s}_file")
                                                                            for s in TEXT_SPLITS})
    return dataclasses.replace(config, data=data_config)
