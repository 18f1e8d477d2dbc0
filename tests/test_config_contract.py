"""The config contract every registered experiment meets: checked wherever a config is built, every setting
documented, the defaults equal to the offline preset, and a config that survives its own round trips."""

import dataclasses
import typing

import pytest
import yaml

from transferlab.config import (Range, documented_yaml, field_types, load_config, replace_at, settings_help,
                                to_dict, value_at)
from transferlab.errors import TransferlabError
from transferlab.experiments.registry import EXPERIMENTS

NAMES = list(EXPERIMENTS)

# Where a config class's defaults may differ from configs/offline/<section>.yaml: only the keys named here. The CLIP classes keep their generic defaults (CLIP's own LoRA targets,
# one template, the lab's training settings) while the offline preset sets the stand-in's; owned by the CLIP
# experiment, they wait for it to adopt the preset's values.
OFFLINE_DIFFERENCES = {"zeroshot": {
    "model.templates", "lora.target_modules", "lora.layers", "lora.train_projection", "training.epochs",
    "training.batch_size", "training.learning_rate", "training.eval_steps", "training.logging_steps",
    "objective.loss", "objective.projection_learning_rate", "objective.train_views", "probe.c_grid",
    "probe.max_iter"}}  # objective.loss: auto, which is class_ce (the preset's) for the stand-in
OFFLINE_DIFFERENCES["lora"] = OFFLINE_DIFFERENCES["zeroshot"]

UNDOCUMENTED: dict[str, set[str]] = {}  # settings allowed without help: none


def config_class(name):
    return EXPERIMENTS[name].config_class()


def offline(name):
    return load_config(config_class(name), EXPERIMENTS[name].section, "offline")


def flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        out.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


def declared(cls, prefix: str = ""):
    """``(dotted key, type, field)`` of every setting of ``cls``."""
    hints = field_types(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            yield from declared(hints[f.name], f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", hints[f.name], f


def out_of_range(limits: Range):
    if limits.low is not None:
        return limits.low - 1 if not limits.low_open else limits.low
    return limits.high + 1 if not limits.high_open else limits.high


def refused(config, key: str, value) -> str:
    with pytest.raises(TransferlabError) as err:
        replace_at(config, key, value)
    message = str(err.value)
    assert "\n" not in message and key in message, message
    return message


@pytest.mark.parametrize("name", NAMES)
def test_round_trip_through_a_dict_and_through_print_config(name, tmp_path):
    config = offline(name)
    values = {k: v for k, v in to_dict(config).items() if k != "source"}
    assert load_config(type(config), EXPERIMENTS[name].section, "offline", values) == config
    text = documented_yaml(config)
    assert yaml.safe_load(text) == to_dict(config)  # the comments change nothing
    (tmp_path / "printed.yaml").write_text(text)
    again = load_config(type(config), EXPERIMENTS[name].section, tmp_path / "printed.yaml")
    assert dataclasses.replace(again, source=config.source) == config


@pytest.mark.parametrize("name", NAMES)
def test_a_bad_choice_set_in_python_fails_with_one_line_naming_the_field(name):
    config = offline(name)
    choices = [(key, tp) for key, tp, _ in declared(type(config)) if typing.get_origin(tp) is typing.Literal]
    assert choices, f"{name} has no setting with fixed choices"
    for key, tp in choices:
        message = refused(config, key, "forest")
        assert message.startswith(f"config key '{key}' must be one of {', '.join(typing.get_args(tp))}; got 'forest'")
    assert refused(config, "seed", -1).startswith("config key 'seed' must be from 0")
    with pytest.raises(TransferlabError, match="config key 'seed' has the wrong type"):
        type(config)(seed="zero")


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_every_declared_range_is_checked_wherever_the_config_is_built(name):
    config = offline(name)
    ranged = [(key, f.metadata["range"]) for key, _, f in declared(type(config)) if f.metadata.get("range")]
    assert ranged
    for key, limits in ranged:
        bad = out_of_range(limits)
        if isinstance(value_at(config, key), list):
            bad = [bad]
        assert f"{key} must be {limits.words()}" in refused(config, key, bad)
        overrides = {key: bad}
        with pytest.raises(TransferlabError, match=f"^{key} must be"):
            load_config(type(config), EXPERIMENTS[name].section, "offline", [f"{k}={v}" for k, v in overrides.items()])


@pytest.mark.parametrize("name", NAMES)
def test_defaults_equal_the_offline_preset(name):
    cls = config_class(name)
    defaults, preset = flat(to_dict(cls())), flat(to_dict(offline(name)))
    differing = {key for key in defaults if defaults[key] != preset[key]} - {"source"}
    assert differing <= OFFLINE_DIFFERENCES.get(name, set()), differing - OFFLINE_DIFFERENCES.get(name, set())


@pytest.mark.parametrize("name", NAMES)
def test_every_setting_has_help(name):
    undocumented = {key for key, text in settings_help(config_class(name)) if not text.strip()}
    assert undocumented <= UNDOCUMENTED.get(name, set()), undocumented - UNDOCUMENTED.get(name, set())


def test_a_section_given_in_part_keeps_its_other_defaults(tmp_path):
    from transferlab.experiments.features import FeaturesConfig

    path = tmp_path / "mine.yaml"
    path.write_text("encoder:\n  pooling: cls\n")
    loaded = load_config(FeaturesConfig, "features", path)
    assert loaded.encoder == dataclasses.replace(FeaturesConfig().encoder, pooling="cls")


def test_cross_field_checks_run_on_replace_too():
    from transferlab.experiments.features import FeaturesConfig

    config = FeaturesConfig()
    with pytest.raises(TransferlabError, match="also_classifiers=.*repeats a classifier"):
        dataclasses.replace(config, also_classifiers=["svc"])
    with pytest.raises(TransferlabError, match="classifier.warm_start applies to logreg only"):
        replace_at(config, "classifier.warm_start", True)
    assert dataclasses.replace(config, classifier={"name": "logreg"}).classifier.name == "logreg"  # a mapping is built


def test_print_config_and_help_show_each_settings_help(capsys):
    from transferlab.cli.main import main

    assert main(["finetune", "--print-config", "training.epochs=3"]) == 0
    printed = capsys.readouterr().out
    assert "  epochs: 3.0  # passes over the training data" in printed
    assert yaml.safe_load(printed)["training"]["epochs"] == 3.0
    with pytest.raises(SystemExit):
        main(["finetune", "--help"])
    shown = capsys.readouterr().out
    assert "config keys (key=value):" in shown and "shots_training.lora_learning_rate" in shown
    assert "method=lora: the peak learning rate" in " ".join(shown.split())
