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
        raise TransferlabError(f"config file {path} is not valid YAML ({exc.__class__.__name__}): fix its syntax") from None
    if not isinstance(data, dict):
        raise TransferlabError(f"config file {path} must hold a mapping of settings, not {type(data).__name__}")
    if experiment in data and isinstance(data[experiment], dict):
        data = data[experiment]
    return data, source


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
        if value not in get_args(tp):
            choices = ", ".join(map(str, get_args(tp)))
            raise TransferlabError(f"config key {name!r} must be one of {choices}; got {value!r}")
        return value
    if origin in (list, tuple):
        (item_tp, *_) = get_args(tp) or (Any,)
        if not isinstance(value, (list, tuple)):
            raise TransferlabError(f"config key {name!r} must be a list (e.g. [1, 2]); got {value!r}")
        return [coerce(v, item_tp, f"{name}[{i}]") for i, v in enumerate(value)]
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if tp is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise TransferlabError(f"config key {name!r} has the wrong type: got {value!r} "
                               f"({type(value).__name__}), expected {describe(tp)}")
    return value


def describe(tp: Any) -> str:
    args = get_args(tp)
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(map(str, args))
    if args:
        return " or ".join(describe(a) for a in args if a is not type(None)) + (
            " or null" if type(None) in args else "")
    return getattr(tp, "__name__", str(tp))


def load_config(cls: type[T], experiment: str, spec: str | Path | None = None,
                overrides: list[str] | dict | None = None) -> T:
    """The typed config of ``experiment`` from a preset/file and overrides. Errors are one line."""
    data, source = read_yaml(spec, experiment)
    extra = overrides if isinstance(overrides, dict) else parse_overrides(overrides or [])
    config = build(cls, merge(data, extra))
    if hasattr(config, "source"):
        config.source = source
    validate = getattr(config, "validate", None)
    if validate is not None:
        validate()
    return config


def to_dict(config: Any) -> dict:
    return dataclasses.asdict(config)
