"""The contract every experiment meets, written down (``typing.Protocol``: no base class to inherit).

An experiment is a config dataclass and a runner function, registered with one entry in
``experiments.registry``. Everything above the experiments (the pipeline, studies, searches, the report and
the command line) talks to an experiment only through this contract and its registry entry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable


@runtime_checkable
class ExperimentConfig(Protocol):
    """A dataclass of settings (nested dataclasses for its sections), validated on construction.

    ``seed`` drives every random choice of a run; ``run_name`` names its folder (``None``: a timestamp);
    ``score_test`` is false for search trials, which never see test. A config that can run at a label
    budget has ``data.shots`` and ``data.nested_shots``.
    """

    __dataclass_fields__: ClassVar[dict[str, Any]]
    seed: int
    run_name: str | None


class Runner(Protocol):
    """``runner(config, output_dir, *, resume=None, progress=True)``: one run in
    ``<output_dir>/<experiment>/<run_name>/`` (``metrics.json``, ``predictions/``, ``status.json``, ...).

    Returns the run directory (``None`` on the non-main processes of a multi-process launch). A failure
    leaves ``status.json`` at ``failed`` and raises; ``resume`` names a run directory to continue (only for
    experiments registered ``resumable``). ``progress=False`` keeps the console quiet (studies).
    """

    def __call__(self, config: Any, output_dir: str | Path, *, resume: str | None = None,
                 progress: bool = True) -> Path | None: ...
