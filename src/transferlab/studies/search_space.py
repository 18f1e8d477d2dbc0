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

Every key is checked against the experiment's config before any trial runs, and every parameter is one Optuna
can sample (bounds, ``log``, ``step``, choices): a space that cannot be searched is refused with one line. A
``when`` key names a parameter listed before it (with a value among its choices) or a config key.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from transferlab.config import PRESET_DIR, DEFAULT_PRESET, load_yaml
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
        return load_yaml(value) if self.encoded and isinstance(value, str) else value

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
        data = load_yaml(Path(path).read_text()) or {}
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
        if not isinstance(param.choices, list) or not param.choices or param.low is not None \
                or param.high is not None or param.step is not None or param.log:
            raise TransferlabError(f"{where}: choices must be a non-empty list (and no low/high/step/log beside it)")
    else:
        check_range(where, param)
    if not isinstance(param.when, dict):
        raise TransferlabError(f"{where}: when must map config keys to the values that enable it")
    check_sampleable(where, param)
    return param


def number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_range(where: str, param: Param) -> None:
    """Bounds, ``log`` and ``step`` of a range that Optuna samples from (more than one value)."""
    low, high, step = param.low, param.high, param.step
    if not isinstance(param.log, bool):
        raise TransferlabError(f"{where}: log must be true or false; got {param.log!r}")
    if not number(low) or not number(high) or low >= high or (param.log and low <= 0):
        raise TransferlabError(f"{where}: needs numbers low < high (and low > 0 with log: true); "
                               f"got low={low!r}, high={high!r}")
    if step is None:
        return
    integer = isinstance(low, int) and isinstance(high, int)
    if not number(step) or step <= 0 or (integer and not isinstance(step, int)):
        raise TransferlabError(f"{where}: step must be a positive {'whole ' if integer else ''}number; got {step!r}")
    if param.log:
        raise TransferlabError(f"{where}: step and log: true do not go together (Optuna samples a log range "
                               f"without steps): drop one")
    if step > high - low:
        raise TransferlabError(f"{where}: step {step!r} is larger than the range {low!r} to {high!r}, so only low "
                               f"could ever be drawn: give a smaller step or a wider range")


def check_sampleable(where: str, param: Param) -> None:
    """Build the distribution Optuna will sample, so whatever it refuses is refused here, before any trial."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    try:
        if param.choices is not None:
            CategoricalDistribution([as_label(c) for c in param.choices] if param.encoded else param.choices)
        elif isinstance(param.low, int) and isinstance(param.high, int):
            IntDistribution(param.low, param.high, log=param.log, step=param.step or 1)
        else:
            FloatDistribution(float(param.low), float(param.high), log=param.log, step=param.step)
    except (ValueError, TypeError) as exc:
        raise TransferlabError(f"{where}: Optuna cannot sample it ({exc})") from None


def check_conditions(space: SearchSpace, config_keys: Any) -> None:
    """Each ``when`` key names a parameter listed before it, with a value among its choices, or a key of the
    experiment's config (``config_keys``): a typo would otherwise drop the parameter from every trial."""
    before: dict[str, Param] = {}
    names = [p.name for p in space.params]
    for param in space.params:
        for key, value in param.when.items():
            where = f"search space {space.source}, parameter {param.name!r}: when: {{{key}: {value!r}}}"
            if key in before:
                if before[key].choices is not None and not any(value == c for c in before[key].choices):
                    raise TransferlabError(f"{where} can never hold: {key} is chosen from "
                                           f"{before[key].choices}; fix the value")
            elif key in names:
                raise TransferlabError(f"{where} names a parameter listed after it (or itself): list {key!r} "
                                       f"before {param.name!r}")
            elif key not in config_keys:
                close = difflib.get_close_matches(key, names + sorted(config_keys), n=1)
                raise TransferlabError(f"{where} names {key!r}, neither a parameter of the space nor a config key"
                                       + (f" (did you mean {close[0]!r}?)" if close else "") + ": fix the key")
        before[param.name] = param


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
