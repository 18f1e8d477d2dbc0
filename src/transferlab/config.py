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
import functools
import inspect
import math
import string
import textwrap
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar, get_args, get_origin, get_type_hints

import yaml

from transferlab.errors import TransferlabError

PRESET_DIR = Path(__file__).parent / "configs"
DEFAULT_PRESET = "offline"

T = TypeVar("T")


NOT_PRESETS = ("tasks", "suites")  # folders of configs/ that hold task and suite files, not presets


def available_presets() -> list[str]:
    return sorted(p.name for p in PRESET_DIR.iterdir() if p.is_dir() and p.name not in NOT_PRESETS
                  and not p.name.startswith(("_", ".")))


# Constraints are declared as data on each field (``setting``) and checked in one place (``check_config``),
# which every config dataclass calls from ``__post_init__``: a config is checked wherever it is built, loaded
# or replaced (``dataclasses.replace`` runs ``__post_init__``), not only by ``load_config``.

@dataclasses.dataclass(frozen=True)
class Range:
    """The numbers a setting accepts (``None``: unbounded on that side); ``text`` replaces the generated words,
    ``note`` follows them (e.g. ``(or null for all examples)``). Lists are checked item by item."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    text: str = ""
    note: str = ""

    def contains(self, value: float) -> bool:
        return ((self.low is None or (value > self.low if self.low_open else value >= self.low))
                and (self.high is None or (value < self.high if self.high_open else value <= self.high)))

    def words(self) -> str:
        if self.text:
            return self.text
        if self.high is None:
            return ("positive" if self.low == 0 else f"greater than {self.low}") if self.low_open else \
                f"at least {self.low}"
        if self.low is None:
            return f"less than {self.high}" if self.high_open else f"at most {self.high}"
        return f"in {'(' if self.low_open else '['}{self.low}, {self.high}{')' if self.high_open else ']'}"


def setting(default: Any = dataclasses.MISSING, help: str = "", *, factory: Any = dataclasses.MISSING,
            at_least: float | None = None, above: float | None = None, at_most: float | None = None,
            below: float | None = None, text: str = "", note: str = "", replaces: tuple[str, ...] = ()) -> Any:
    """A config field: its default (or ``factory``), its help (shown by ``--print-config`` and ``--help``) and
    its range, declared once. ``at_least``/``at_most`` are closed bounds, ``above``/``below`` open ones.
    ``replaces``: sibling fields an override of this one clears from the preset (``data.path`` replaces the
    preset's ``data.hub_id``), unless the same overrides set them too."""
    bounded = (at_least, above, at_most, below) != (None,) * 4
    limits = Range(above if above is not None else at_least, below if below is not None else at_most,
                   above is not None, below is not None, text, note) if bounded else None
    return dataclasses.field(default=default, default_factory=factory,
                             metadata={"help": help, "range": limits, "replaces": tuple(replaces)})


def help_of(f: dataclasses.Field) -> str:
    return f.metadata.get("help", "")


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


@functools.cache
def takes_prefix(cls: type) -> bool:
    """Whether ``cls.validate`` (its cross-field checks) takes the key prefix to name settings by."""
    return bool(inspect.signature(cls.validate).parameters.keys() - {"self"})


def check_config(config: Any, prefix: str | None = None) -> None:
    """Check every field of the dataclass ``config`` (nested sections too) against its declared type (choices
    of a ``Literal`` included) and range, every ``seed`` and ``run_name``, then the class's own cross-field
    checks (its ``validate`` method). ``prefix``: the dotted path of ``config`` (default: its ``SECTION``).
    Values are normalised in place as the loader would (ints widen to floats, tuples become lists)."""
    prefix = (getattr(config, "SECTION", "") + "." if getattr(config, "SECTION", "") else "") \
        if prefix is None else prefix
    hints = field_types(type(config))
    for f in dataclasses.fields(config):
        key, value = f"{prefix}{f.name}", getattr(config, f.name)
        if dataclasses.is_dataclass(hints[f.name]) and isinstance(value, hints[f.name]):
            check_config(value, f"{key}.")
            continue
        checked = coerce(value, hints[f.name], key)
        if checked is not value:
            object.__setattr__(config, f.name, checked)
        check_range(checked, f.metadata.get("range"), key)
        if f.name == "seed" and isinstance(checked, int) and not 0 <= checked < 2**32:
            raise TransferlabError(f"config key {key!r} must be from 0 to {2**32 - 1} (the seeds numpy and torch "
                                   f"accept); got {checked}")
        if f.name == "run_name" and checked:
            check_run_name(checked)
    validate = getattr(config, "validate", None)
    if validate is not None:
        validate(prefix.rstrip(".")) if takes_prefix(type(config)) else validate()


def check_range(value: Any, limits: Range | None, key: str) -> None:
    if limits is None or value is None:
        return
    for item in value if isinstance(value, list) else [value]:
        if not limits.contains(item):
            raise TransferlabError(f"{key} must be {limits.words()}{' ' + limits.note if limits.note else ''}; "
                                   f"got {item!r}")


@dataclasses.dataclass
class TrackingConfig:
    """Where a run reports. TensorBoard always; Weights & Biases on request."""

    SECTION: ClassVar[str] = "tracking"
    tensorboard: bool = setting(True, "write TensorBoard event files under the run directory (tb/)")
    wandb: Literal["off", "offline", "online"] = setting("off", "Weights & Biases: off, offline (files only) or "
                                                                "online (needs wandb and a login)")
    wandb_project: str = setting("transferlab", "the Weights & Biases project the runs go to")

    def __post_init__(self) -> None:
        check_config(self)


@dataclasses.dataclass
class EvaluationConfig:
    """How each figure's uncertainty is reported (``transferlab.evaluation.statistics``): a seeded
    percentile bootstrap over test examples; ``calibrate`` adds temperature scaling fitted on validation."""

    SECTION: ClassVar[str] = "evaluation"
    calibrate: bool = setting(False, "also report temperature-scaled probabilities (the temperature fitted on "
                                     "validation)")
    n_resamples: int = setting(2000, "bootstrap resamples of each interval", at_least=100,
                               note="(2000 or more give a stable 95% interval)")
    confidence: float = setting(0.95, "the intervals' confidence level", above=0, below=1,
                                text="strictly between 0 and 1", note="(e.g. 0.95)")
    seed: int = setting(0, "the bootstrap's seed (the same resamples for every run)")

    def __post_init__(self) -> None:
        check_config(self)


@dataclasses.dataclass
class RunConfig:
    """The settings every experiment's config holds (``experiments.protocol.ExperimentConfig``), checked on
    construction: an experiment's config class extends it with its own settings and sections (and may declare
    ``seed`` again for its own default or help; a redeclared field keeps its place)."""

    seed: int = setting(0, "the run's seed (every random choice of the run)")
    run_name: str | None = setting(None, "the run directory's name (null: a timestamp)")
    tracking: TrackingConfig = setting(help="where the run reports", factory=TrackingConfig)
    evaluation: EvaluationConfig = setting(help="how each figure's interval is computed", factory=EvaluationConfig)
    score_test: bool = setting(True, "false: validation only (a search's trials); the search's final run scores "
                                     "test once")
    source: str = setting("", "where the config came from (filled by the loader)")

    def __post_init__(self) -> None:
        check_config(self)


def read_yaml(spec: str | Path | None, experiment: str) -> tuple[dict, str]:
    """The raw mapping for ``experiment`` from a preset name or a YAML file, and where it came from."""
    spec = DEFAULT_PRESET if spec is None else str(spec)
    path = Path(spec)
    if path.suffix in {".yaml", ".yml"} or path.is_file():
        if not path.is_file():
            raise TransferlabError(f"config file {spec!r} does not exist: give an existing YAML file "
                                   f"or a preset ({', '.join(available_presets())})")
        source = str(path)
    elif spec in available_presets():
        path = PRESET_DIR / spec / f"{experiment}.yaml"
        if not path.is_file() and spec == DEFAULT_PRESET:  # the config classes' defaults are the default preset's
            return {}, f"preset:{spec} (the config's defaults)"
        if not path.is_file():
            raise TransferlabError(f"preset {spec!r} has no {experiment} settings ({path} is missing)")
        source = f"preset:{spec}"
    else:
        hint = difflib.get_close_matches(spec, available_presets(), n=1)
        raise TransferlabError(f"unknown preset {spec!r}: "
                               + (f"did you mean {hint[0]!r}? " if hint else "")
                               + f"choose one of {', '.join(available_presets())} or a YAML file path")
    try:
        data = load_yaml(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise TransferlabError(f"config file {path} is not valid YAML{yaml_position(exc)}: fix its syntax") from None
    if not isinstance(data, dict):
        raise TransferlabError(f"config file {path} must hold a mapping of settings, not {type(data).__name__}")
    if experiment in data and isinstance(data[experiment], dict):
        data = data[experiment]
    return data, source


class NoAliasLoader(yaml.SafeLoader):
    """YAML's safe loader without aliases: a few hundred bytes of nested aliases (an "alias bomb" in a received
    task, config or search file) would otherwise expand to gigabytes. Files transferlab writes hold none
    (:func:`dump_yaml`), and no setting needs one."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "an alias (*name): write the value out instead",
                                              self.peek_event().start_mark)
        return super().compose_node(parent, index)


def load_yaml(text: str | bytes):
    """``yaml.safe_load`` without aliases (:class:`NoAliasLoader`); a file that uses one is a ``YAMLError``."""
    try:
        return yaml.load(text, Loader=NoAliasLoader)  # noqa: S506 - a SafeLoader
    except (ValueError, RecursionError) as exc:  # a number of thousands of digits, nesting too deep
        raise yaml.constructor.ConstructorError(None, None, f"a value it cannot read ({exc.__class__.__name__})",
                                                None) from None


class NoAliasDumper(yaml.SafeDumper):
    def ignore_aliases(self, data) -> bool:
        return True


def dump_yaml(data, **kwargs) -> str:
    """``yaml.safe_dump`` writing a value seen twice out twice (no anchors), so :func:`load_yaml` reads it."""
    return yaml.dump(data, Dumper=NoAliasDumper, **kwargs)


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
            value = load_yaml(raw) if raw.strip() else ""
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
    """Instantiate dataclass ``cls`` from ``data``, checking every key and value type. A section given in part
    keeps the other settings of ``cls``'s own default for it, so a key's default is the same whether its
    section is written or not."""
    hints = field_types(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if key not in fields:
            hint = difflib.get_close_matches(str(key), list(fields), n=1)
            suggestion = f"did you mean {prefix + hint[0]!r}?" if hint else f"known keys: {', '.join(fields)}"
            raise TransferlabError(f"unknown config key {name!r}: {suggestion}")
        if dataclasses.is_dataclass(hints[key]) and isinstance(value, dict):
            value = merge(to_dict(default_of(fields[key])), value)
        kwargs[key] = coerce(value, hints[key], name)
    return cls(**kwargs)


def default_of(f: dataclasses.Field) -> Any:
    """A field's default value (its factory called)."""
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


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


def load_config(cls: type[T], experiment: str, spec: str | Path | None = None,
                overrides: list[str] | dict | None = None) -> T:
    """The typed config of ``experiment`` from a preset/file and overrides. Errors are one line."""
    data, source = read_yaml(spec, experiment)
    extra = overrides if isinstance(overrides, dict) else parse_overrides(overrides or [])
    config = build(cls, merge(without_replaced(cls, data, extra), extra))  # checked by its __post_init__
    check_config(config)  # again for a class without one (the sections of models/ have none)
    if hasattr(config, "source"):
        config.source = source
    return config


def without_replaced(cls: type, data: dict, extra: dict) -> dict:
    """The preset's ``data`` with the settings the overrides ``extra`` replace (``setting(replaces=...)``) set to
    null, in every section, unless ``extra`` sets them too: an override of ``data.path`` drops the preset's
    ``data.hub_id``; one of ``classifier.C`` drops the C grid (the preset's or the class default's) that would
    otherwise choose C instead."""
    if not dataclasses.is_dataclass(cls) or not isinstance(data, dict):
        return data
    fields, hints, out = {f.name: f for f in dataclasses.fields(cls)}, field_types(cls), dict(data)
    for key, value in extra.items():
        if key not in fields:
            continue  # build() names the unknown key
        if isinstance(value, dict) and isinstance(out.get(key, {}), dict):
            out[key] = without_replaced(hints[key], out.get(key, {}), value)
        for replaced in fields[key].metadata.get("replaces", ()):
            if replaced not in extra:
                out[replaced] = None
    return out


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


# What --print-config and --help show: every key with its help, the help read from the fields' metadata.

COMMENT_WIDTH = 110  # characters of a --print-config line before its comment wraps


def documented_yaml(config: Any) -> str:
    """The config as YAML with each key's help as a comment after it (``--print-config``); loading the text
    back gives the same config."""
    return "".join(f"{line}\n" for line in yaml_lines(config, ""))


def yaml_lines(config: Any, indent: str) -> list[str]:
    lines = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        nested = dataclasses.is_dataclass(value)
        code = f"{indent}{f.name}:" + ("" if nested else f" {yaml_scalar(value)}")
        lines += commented(code, help_of(f))
        if nested:
            lines += yaml_lines(value, indent + "  ")
    return lines


def yaml_scalar(value: Any) -> str:
    """One value as a YAML flow scalar or list (``null``, ``'off'``, ``[0.3, 0.66]``)."""
    text = dump_yaml(value, default_flow_style=True, width=10**6).strip()
    return text.removesuffix("...").strip()


def commented(code: str, note: str) -> list[str]:
    """``code  # note``, the note wrapped onto comment lines aligned under its first one."""
    if not note:
        return [code]
    column = len(code) + 2
    width = max(COMMENT_WIDTH - column - 2, 40)
    pieces = textwrap.wrap(note, width)
    return [f"{code}  # {pieces[0]}"] + [f"{' ' * column}# {piece}" for piece in pieces[1:]]


def settings_help(cls: type, prefix: str = "") -> list[tuple[str, str]]:
    """``(dotted key, help)`` of every setting of the config class ``cls``, nested sections' keys included."""
    out = []
    hints = field_types(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out += settings_help(hints[f.name], f"{prefix}{f.name}.")
        else:
            out.append((f"{prefix}{f.name}", help_of(f)))
    return out


def settings_text(cls: type, width: int = 100) -> str:
    """The keys of ``cls`` with their help, one wrapped entry each (an experiment command's ``--help``)."""
    entries = settings_help(cls)
    column = min(max(len(key) for key, _ in entries) + 4, 40)
    lines = []
    for key, note in entries:
        wrapped = textwrap.wrap(note or "-", max(width - column, 30))
        first = f"  {key}".ljust(column) if len(key) + 4 <= column else f"  {key}\n" + " " * column
        lines += [first + wrapped[0]] + [" " * column + piece for piece in wrapped[1:]]
    return "\n".join(lines)
