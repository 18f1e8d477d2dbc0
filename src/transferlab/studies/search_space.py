"""The search space of ``transferlab tune``: one YAML file per preset and experiment,
``configs/<preset>/search/<experiment>.yaml`` (``--search FILE`` gives another). Its shape:

.. code-block:: yaml

    fixed:                       # every trial and the final run (dotted config keys)
      classifier.C_grid: null
    trials:                      # the trials only: what makes them cheaper without changing the result
      tracking.tensorboard: false
    params:                      # what Optuna chooses, one entry per dotted config key
      classifier.C: {low: 0.01, high: 100.0, log: true}   # float (int when both bounds are ints; step optional)
      classifier.name: {choices: [svc, logreg]}            # categorical (a choice may be a list)
      lora.r: {low: 4, high: 32, log: true, when: {method: lora}}   # only when those keys have those values

Every key is checked against the experiment's config before any trial runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from transferlab.config import PRESET_DIR, DEFAULT_PRESET
from transferlab.errors import TransferlabError

SECTIONS = ("fixed", "trials", "params")
PARAM_KEYS = {"low", "high", "log", "step", "choices", "when"}


@dataclass
class Param:
    name: str  # the dotted config key, also Optuna's parameter name
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: list | None = None
    when: dict[str, Any] = field(default_factory=dict)

    @property
    def encoded(self) -> bool:
        """Choices that are lists or mappings go to Optuna as their YAML text (it takes scalars only)."""
        return bool(self.choices) and any(isinstance(c, (list, dict)) for c in self.choices)

    def suggest(self, trial) -> Any:
        if self.choices is not None:
            labels = [as_label(c) for c in self.choices] if self.encoded else self.choices
            return self.decode(trial.suggest_categorical(self.name, labels))
        if isinstance(self.low, int) and isinstance(self.high, int):
            return trial.suggest_int(self.name, self.low, self.high, step=self.step or 1, log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), step=self.step, log=self.log)

    def decode(self, value: Any) -> Any:
        """A value as Optuna stores it -> the config value."""
        return yaml.safe_load(value) if self.encoded and isinstance(value, str) else value

    def example(self) -> Any:
        return self.choices[0] if self.choices is not None else self.low


@dataclass
class SearchSpace:
    params: list[Param]
    fixed: dict[str, Any] = field(default_factory=dict)
    trials: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def suggest(self, trial, base: dict) -> dict[str, Any]:
        """``{dotted key: value}`` for one trial; ``base`` is the flattened config the ``when`` conditions read."""
        chosen: dict[str, Any] = {}
        for param in self.params:
            if all(chosen.get(k, base.get(k)) == v for k, v in param.when.items()):
                chosen[param.name] = param.suggest(trial)
        return chosen

    def decode(self, params: dict[str, Any]) -> dict[str, Any]:
        """A finished trial's ``params`` as config values."""
        by_name = {p.name: p for p in self.params}
        return {k: by_name[k].decode(v) if k in by_name else v for k, v in params.items()}


def as_label(choice: Any) -> str:
    return yaml.safe_dump(choice, default_flow_style=True).strip().removesuffix("...").strip()


def search_file(search: str | None, config: str | None, experiment: str) -> Path:
    """``--search FILE``, else the preset's ``search/<experiment>.yaml`` (a config file: the default preset's)."""
    if search:
        path = Path(search)
        if not path.is_file():
            raise TransferlabError(f"search space file {search!r} does not exist: give an existing YAML file")
        return path
    preset = config if config and (PRESET_DIR / config).is_dir() else DEFAULT_PRESET
    path = PRESET_DIR / preset / "search" / f"{experiment}.yaml"
    if not path.is_file():
        raise TransferlabError(f"preset {preset!r} declares no search space for {experiment} ({path} is missing): "
                               f"give one with --search FILE")
    return path


def load_search_space(path: Path) -> SearchSpace:
    """The checked search space of one file, or a one-line error naming the entry at fault."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as exc:
        raise TransferlabError(f"search space {path} is not valid YAML ({exc.__class__.__name__}): fix its syntax") \
            from None
    unknown = [k for k in data if k not in SECTIONS] if isinstance(data, dict) else ["(not a mapping)"]
    if unknown:
        raise TransferlabError(f"search space {path}: unknown section {unknown[0]!r}; use {', '.join(SECTIONS)}")
    for section in ("fixed", "trials"):
        if not isinstance(data.get(section) or {}, dict):
            raise TransferlabError(f"search space {path}: {section!r} must map dotted config keys to values")
    params = data.get("params") or {}
    if not isinstance(params, dict) or not params:
        raise TransferlabError(f"search space {path}: 'params' must map at least one dotted config key to a range "
                               f"({{low: .., high: ..}}) or {{choices: [..]}}")
    return SearchSpace([parse_param(path, k, v) for k, v in params.items()], dict(data.get("fixed") or {}),
                       dict(data.get("trials") or {}), str(path))


def parse_param(path: Path, name: str, spec: Any) -> Param:
    where = f"search space {path}, parameter {name!r}"
    if not isinstance(spec, dict) or not spec.keys() <= PARAM_KEYS:
        raise TransferlabError(f"{where}: give {{low: .., high: ..[, log: true][, step: ..]}} or {{choices: [..]}} "
                               f"(optionally when: {{key: value}})")
    param = Param(name, **spec)
    if param.choices is not None:
        if not isinstance(param.choices, list) or not param.choices or param.low is not None:
            raise TransferlabError(f"{where}: choices must be a non-empty list (and no low/high beside it)")
    elif not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (param.low, param.high)) \
            or param.low >= param.high or (param.log and param.low <= 0):
        raise TransferlabError(f"{where}: needs numbers low < high (and low > 0 with log: true); "
                               f"got low={param.low!r}, high={param.high!r}")
    if not isinstance(param.when, dict):
        raise TransferlabError(f"{where}: when must map config keys to the values that enable it")
    return param


def nest(flat: dict[str, Any]) -> dict:
    """``{"a.b": 1}`` -> ``{"a": {"b": 1}}`` (the form ``load_config`` takes as overrides)."""
    tree: dict = {}
    for key, value in flat.items():
        node = tree
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return tree


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
