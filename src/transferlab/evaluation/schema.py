"""The one shape of ``metrics.json``, for every experiment. The report and ``predict`` read it as is.

.. code-block:: text

    {
      "schema_version": 2,
      "experiment": "lora",                      # the registry name of the experiment
      "model": {"name": "...", ...},             # the model actually used (name required)
      "primary": "lora",                         # the method that is this run's headline result
      "methods": {                               # one entry per evaluated method
        "zero_shot": {"validation": SPLIT, "test": SPLIT},
        "linear_probe": {...}, "lora": {...}
      },
      "n_classes": 200,
      "n_examples": {"train": 19000, "validation": 1000, "test": 10000},
      "parameters": {"total": ..., "trainable": ..., ...},   # {} where nothing is trained
      "timings": {"encode_s": 12.3, ...},        # wall seconds per phase
      "details": {...},                          # the experiment's own records (C search, history, ...)
      "notes": ["..."]
    }

``SPLIT`` is what :func:`transferlab.evaluation.metrics.classification_metrics` returns: ``accuracy``,
macro ``precision`` / ``recall`` / ``f1``, ``n_examples``, optional ``top{k}_accuracy``, ``per_class``;
since version 2 also

.. code-block:: text

      "intervals": {"accuracy": [lo, hi], "f1": [lo, hi], "top5_accuracy": [lo, hi],   # top-5 where scored
                    "confidence": 0.95, "method": "percentile bootstrap ...", "n_resamples": 2000, "seed": 0},
      "calibration": {"ece": ..., "brier": ..., "nll": ..., "n_bins": 15, "method": "..."},  # with scores
      "calibrated": {"temperature": ..., "ece": ..., "nll": ..., "brier": ..., "fitted_on": "validation"}
                                                  # only with evaluation.calibrate=true

Version 1 files (no ``intervals`` or ``calibration``) stay readable: the report computes both from the
run's ``predictions/<method>.jsonl``. Every method has a ``validation`` split; ``test`` is absent from
every method of a run told not to score it (``score_test=false``, a search's trials).
A record made here (not one read back) adds to ``notes`` what its figures imply and a reader must know
(:func:`evaluation_notes`): classes absent from a scored split, a temperature fitted at its bound.
Method names in use: ``features``, ``finetune``, ``zero_shot``, ``linear_probe``, ``lora``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from transferlab.errors import TransferlabError

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
SPLITS = ("validation", "test")


@dataclass
class RunMetrics:
    experiment: str
    model: dict[str, Any]
    primary: str
    methods: dict[str, dict[str, dict]]
    n_classes: int
    n_examples: dict[str, int]
    parameters: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        self.check()
        self.notes = list(self.notes) + [n for n in evaluation_notes(self.methods, self.notes) if n not in self.notes]

    def check(self, source: str = "metrics") -> None:
        """Raise a one-line error naming what is wrong with this record."""
        if self.schema_version not in READABLE_VERSIONS:
            raise TransferlabError(f"{source} has schema_version {self.schema_version!r}, this transferlab reads "
                                   f"{', '.join(map(str, READABLE_VERSIONS))}: rerun the experiment with this version")
        if not isinstance(self.model, dict) or not self.model.get("name"):
            raise TransferlabError(f"{source}: 'model' must be a mapping with a 'name'")
        if not isinstance(self.methods, dict) or self.primary not in self.methods:
            raise TransferlabError(f"{source}: primary method {self.primary!r} is not among its methods "
                                   f"{sorted(self.methods) if isinstance(self.methods, dict) else self.methods!r}")
        # Test is scored by every method or by none (a run with score_test=false, e.g. a search's trial).
        scored = SPLITS if any(isinstance(r, dict) and "test" in r for r in self.methods.values()) else SPLITS[:1]
        for name, result in self.methods.items():
            for split in scored:
                if not isinstance(result, dict) or not isinstance(result.get(split), dict) \
                        or not isinstance(result[split].get("accuracy"), (int, float)):
                    raise TransferlabError(f"{source}: method {name!r} has no {split} accuracy")
                accuracy = result[split]["accuracy"]
                if isinstance(accuracy, bool) or not 0.0 <= accuracy <= 1.0:  # NaN fails both comparisons
                    raise TransferlabError(f"{source}: method {name!r} has {split} accuracy {accuracy!r}, not a "
                                           f"fraction from 0 to 1: the file was edited or damaged")

    @property
    def result(self) -> dict[str, dict]:
        """The primary method's ``{"validation": ..., "test": ...}``."""
        return self.methods[self.primary]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any, source: str = "metrics.json") -> "RunMetrics":
        """A checked record, or a one-line error naming the file and what is missing or malformed."""
        if not isinstance(data, dict):
            raise TransferlabError(f"{source} must hold a JSON object, not {type(data).__name__}: "
                                   f"rerun the experiment to rewrite it")
        required = {f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        missing = sorted(required - set(data))
        if missing:
            raise TransferlabError(f"{source} lacks {', '.join(missing)}: it was not written by this transferlab "
                                   f"version (or was edited); rerun the experiment")
        record = cls.__new__(cls)
        for f in dataclasses.fields(cls):
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            setattr(record, f.name, data.get(f.name, default))
        record.check(source)
        return record


def evaluation_notes(methods: dict[str, dict], existing: list[str] = ()) -> list[str]:
    """Notes the figures imply: per split, the classes it has no example of (its macro scores average over the
    classes present; unless a note on that split's missing classes is there already), and per method a
    temperature fitted at the bound of its range."""
    from transferlab.evaluation.calibration import temperature_note

    notes, missing = [], {}
    for result in methods.values():
        for split in SPLITS:
            missing.setdefault(split, [])
            names = (result.get(split) or {}).get("missing_classes") or []
            missing[split] += [n for n in names if n not in missing[split]]
    for split, names in missing.items():
        said = any(str(n).startswith(f"the {split} split has no example of") for n in existing)
        if names and not said:
            notes.append(f"the {split} split has no example of {len(names)} class(es) ({', '.join(names)}): its "
                         f"macro precision, recall and F1 average over the classes present")
    for method, result in methods.items():
        calibrated = (result.get("validation") or {}).get("calibrated") or {}
        if calibrated.get("at_bound") is not None:
            notes.append(temperature_note(method, calibrated["temperature"],
                                          result["validation"].get("n_examples")))
    return notes
