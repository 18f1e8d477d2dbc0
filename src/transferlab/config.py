"""Typed experiment configs: dataclasses filled from a preset or YAML file plus ``key=value`` overrides.

A preset is a folder ``configs/<preset>/`` inside the package holding one YAML file per experiment
(``features.yaml``, ``finetune.yaml``, ``clip.yaml``). A user file is one YAML mapping for that
experiment; a file with a top-level section named after the experiment (as ``transferlab run``
takes) uses that section. Every key is checked against the dataclass: unknown keys suggest the
nearest known one, values must have the declared type.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import string
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

import yaml

from transferlab.errors import TransferlabError

PRESET_DIR = Path(__file__).parent / "configs"
DEFAULT_PRESET = "offline"

T = TypeVar("T")


def available_presets() -> list[str]:
    return sorted(p.name for p in PRESET_DIR.iterdir() if p.is_dir())


@dataclasses.dataclass
class TrackingConfig:
    """Where a run reports. TensorBoard always; Weights & Biases on request."""

    tensorboard: bool = True
    wandb: Literal["off", "offline", "online"] = "off"
    wandb_project: str = "transferlab"


@dataclasses.dataclass
class EvaluationConfig:
    """How each figure's uncertainty is reported (``transferlab.evaluation.statistics``): a seeded
    percentile bootstrap over test examples; ``calibrate`` adds temperature scaling fitted on validation."""

    calibrate: bool = False
    n_resamples: int = 2000
    confidence: float = 0.95
    seed: int = 0

    def validate(self) -> None:
        if not 0 < self.confidence < 1:
            raise TransferlabError(f"evaluation.confidence must lie strictly between 0 and 1, got {self.confidence}: "
                                   f"use e.g. 0.95")
        if self.n_resamples < 100:
            raise TransferlabError(f"evaluation.n_resamples must be at least 100, got {self.n_resamples}: "
                                   f"use 2000 or more for a stable 95% interval")


def read_yaml(spec: str | Path | None, experiment: str) -> tuple[dict, str]:
    """The raw mapping for ``experiment`` from a preset name or a YAML file, and where it came from."""
    spec = DEFAULT_PRESET if spec is None else str(spec)
    path = Path(spec)
    if path.suffix in {".yaml", ".yml"} or path.is_file():
        if not path.is_file():
            raise TransferlabError(f"config file {spec!r} does not exist: give an existing YAML file "
                                   f"or a preset ({', '.join(available_presets())})")
        source = str(path)
    elif (PRESET_DIR / spec).is_dir():
        path = PRESET_DIR / spec / f"{experiment}.yaml"
        if not path.is_file():
            raise TransferlabError(f"preset {spec!r} has no {experiment} settings ({path} is missing)")
        source = f"preset:{spec}"
    else:
        hint = difflib.get_close_matches(spec, available_presets(), n=1)
        raise TransferlabError(f"unknown preset {spec!r}: "
                               + (f"did you mean {hint[0]!r}? " if hint else "")
                               + f"choose one of {', '.join(available_presets())} or a YAML file path")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise TransferlabError(f"config file {path} is not valid YAML{yaml_position(exc)}: fix its syntax") from None
    if not isinstance(data, dict):
        raise TransferlabError(f"config file {path} must hold a mapping of settings, not {type(data).__name__}")
    if experiment in data and isinstance(data[experiment], dict):
        data = data[experiment]
    return data, source


def yaml_position(exc: yaml.YAMLError) -> str:
    """`` at line L, column C (problem)`` for a YAML syntax error, as far as the parser says."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or exc.__class__.__name__
    return f"{where} ({problem})"


def parse_overrides(pairs: list[str]) -> dict:
    """``["a.b=1", "c=x"]`` -> ``{"a": {"b": 1}, "c": "x"}``; values are parsed as YAML scalars/lists."""
    tree: dict = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise TransferlabError(f"override {pair!r} is not of the form key=value (e.g. classifier.name=logreg)")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = tree
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise TransferlabError(f"override {pair!r} conflicts with another override of {part!r}")
        node[parts[-1]] = value
    return tree


def merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def build(cls: type[T], data: dict, prefix: str = "") -> T:
    """Instantiate dataclass ``cls`` from ``data``, checking every key and value type."""
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if key not in fields:
            hint = difflib.get_close_matches(str(key), list(fields), n=1)
            suggestion = f"did you mean {prefix + hint[0]!r}?" if hint else f"known keys: {', '.join(fields)}"
            raise TransferlabError(f"unknown config key {name!r}: {suggestion}")
        kwargs[key] = coerce(value, hints[key], name)
    return cls(**kwargs)


def coerce(value: Any, tp: Any, name: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (with int->float widening); nested dataclasses recurse."""
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise TransferlabError(f"config key {name!r} must be a mapping of settings, got {value!r}")
        return build(tp, value, prefix=f"{name}.")
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, name)
            except TransferlabError as exc:
                errors.append(str(exc))
        raise TransferlabError(errors[0] if len(errors) == 1 else
                               f"config key {name!r} has the wrong type: got {value!r}, expected {describe(tp)}")
    if origin is Literal:
        return check_choice(value, get_args(tp), name)
    if origin in (list, tuple):
        (item_tp, *_) = get_args(tp) or (Any,)
        if not isinstance(value, (list, tuple)):
            raise TransferlabError(f"config key {name!r} must be a list (e.g. [1, 2]); got {value!r}")
        return [coerce(v, item_tp, f"{name}[{i}]") for i, v in enumerate(value)]
    if tp is Any:
        return value
    if tp is float:
        return coerce_float(value, name)
    if tp is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise TransferlabError(f"config key {name!r} has the wrong type: got {value!r} "
                               f"({type(value).__name__}), expected {describe(tp)}")
    return value


def coerce_float(value: Any, name: str) -> float:
    """A finite float: ints widen, strings such as ``1e-3`` (YAML 1.1 reads them as text) parse; NaN and
    infinity are refused, as no setting means them and every comparison with NaN is false."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TransferlabError(f"config key {name!r} has the wrong type: got {value!r} "
                               f"({type(value).__name__}), expected float")
    if not math.isfinite(value):
        raise TransferlabError(f"config key {name!r} must be a finite number; got {value!r}")
    return float(value)


def check_choice(value: Any, choices: tuple, name: str) -> Any:
    """``value`` if it is one of ``choices``, else a one-line error with the nearest choice."""
    if value in choices:
        return value
    hint = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
    raise TransferlabError(f"config key {name!r} must be one of {', '.join(map(str, choices))}; got {value!r}"
                           + (f" (did you mean {hint[0]!r}?)" if hint else ""))


def check_template_fields(templates: list[str], allowed: tuple[str, ...], name: str,
                          required: str | None = None) -> None:
    """Every ``{field}`` of every template is one of ``allowed`` (and ``required`` appears in each): a
    template with ``{place}`` would otherwise fail with a KeyError in the middle of a run."""
    fields = ", ".join("{" + a + "}" for a in allowed)
    if not templates:
        raise TransferlabError(f"config key {name!r} must be a non-empty list of prompts using {fields}")
    for template in templates:
        try:
            used = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
        except ValueError as exc:
            raise TransferlabError(f"config key {name!r}: template {template!r} is malformed ({exc}); "
                                   f"write {{{{ and }}}} for literal braces") from None
        unknown = [f for f in used if f not in allowed]
        if unknown:
            raise TransferlabError(f"config key {name!r}: template {template!r} uses unknown field "
                                   f"{{{unknown[0]}}}; the allowed fields are {fields}")
        if required and required not in used:
            raise TransferlabError(f"config key {name!r}: template {template!r} lacks {{{required}}}; "
                                   f"every prompt needs it")


def describe(tp: Any) -> str:
    args = get_args(tp)
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(map(str, args))
    if args:
        return " or ".join(describe(a) for a in args if a is not type(None)) + (
            " or null" if type(None) in args else "")
    return getattr(tp, "__name__", str(tp))


NAME_MAX = 100  # characters of a name that becomes a folder (run_name; the pipeline adds -seed<N> suffixes)


def check_run_name(name: str, what: str = "run_name", limit: int = NAME_MAX) -> str:
    """``name`` if it can be one folder's name: one path component (no ``/`` or ``\\``, not ``.`` or ``..``),
    printable (no newline: a command's last line is its run directory), at most ``NAME_MAX`` characters."""
    problem = ("holds a path separator" if "/" in name or "\\" in name else
               "holds a newline or another unprintable character" if not name.isprintable() else
               f"is longer than {limit} characters" if len(name) > limit else
               "is not a folder name" if name.strip() in (".", "..") else None)
    if problem:
        raise TransferlabError(f"{what} {name!r} {problem}: give one folder name of printable characters "
                               f"(e.g. {what}=baseline-1)")
    return name


def check_seeds(config: Any, prefix: str = "") -> None:
    """Every ``seed`` setting (nested too) within 0..2**32 - 1, the seeds numpy and torch accept."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            check_seeds(value, f"{prefix}{f.name}.")
        elif f.name == "seed" and isinstance(value, int) and not 0 <= value < 2**32:
            raise TransferlabError(f"config key '{prefix}seed' must be from 0 to {2**32 - 1} (the seeds numpy and "
                                   f"torch accept); got {value}")


def load_config(cls: type[T], experiment: str, spec: str | Path | None = None,
                overrides: list[str] | dict | None = None) -> T:
    """The typed config of ``experiment`` from a preset/file and overrides. Errors are one line."""
    data, source = read_yaml(spec, experiment)
    extra = overrides if isinstance(overrides, dict) else parse_overrides(overrides or [])
    config = build(cls, merge(data, extra))
    if getattr(config, "run_name", None):
        check_run_name(config.run_name)
    check_seeds(config)
    if hasattr(config, "source"):
        config.source = source
    validate = getattr(config, "validate", None)
    if validate is not None:
        validate()
    if isinstance(getattr(config, "evaluation", None), EvaluationConfig):
        config.evaluation.validate()
    return config


def to_dict(config: Any) -> dict:
    return dataclasses.asdict(config)


def value_at(config, dotted: str):
    """The setting at a dotted key of a config (``None`` where a part is missing)."""
    for part in dotted.split("."):
        config = getattr(config, part, None)
    return config


def replace_at(config, dotted: str, value):
    """A copy of the config with the setting at a dotted key replaced (validated as any replace is)."""
    head, _, rest = dotted.partition(".")
    return dataclasses.replace(config, **{head: replace_at(getattr(config, head), rest, value) if rest else value})
