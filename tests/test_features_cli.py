"""Experiment 1 end to end through the CLI on a small real slice, and every user error."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from transferlab.evaluation.predictions import read_predictions

from helpers import make_csv
from transferlab.cli import main
from transferlab.models.classifiers import load_classifier_file


def run_cli(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def base_args(tiny_distilbert, tmp_path):
    return ["features", "--output-dir", str(tmp_path / "logs"), f"encoder.model={tiny_distilbert}",
            "encoder.pooling=cls", "data.limit=60", "classifier.C_grid=[0.1,1,10]"]


def event_tags(folder: Path) -> dict[str, list[int]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    steps: dict[str, list[int]] = {}
    for file in folder.glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(file), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            steps.setdefault(tag, []).extend(e.step for e in acc.Scalars(tag))
        for tag in acc.Tags()["images"]:
            steps.setdefault(tag, []).extend(e.step for e in acc.Images(tag))
        for tag in acc.Tags()["tensors"]:
            steps.setdefault(tag, []).extend(e.step for e in acc.Tensors(tag))
    return steps


def hparams_of(folder: Path) -> dict:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    for file in folder.glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(file))
        acc.Reload()
        try:
            contents = acc.PluginTagToContent("hparams").values()
        except KeyError:  # another writer's file (the metrics' own)
            continue
        for content in contents:
            data = plugin_data_pb2.HParamsPluginData.FromString(content)
            if data.HasField("session_start_info"):
                return {k: v.string_value or v.number_value or v.bool_value
                        for k, v in data.session_start_info.hparams.items()}
    return {}


@pytest.mark.slow
def test_end_to_end_run_directory(base_args, capsys, tmp_path):
    code, out, err = run_cli(base_args, capsys)
    assert code == 0, err
    run = Path(out.strip().splitlines()[-1])  # the last line is the run directory
    assert run.parent == tmp_path / "logs" / "features"
    for name in ["config.yaml", "metrics.json", "classification_report.txt", "confusion_matrix.png",
                 "classifier.skops", "status.json"]:
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    for split in ("validation", "test"):
        m = metrics["methods"]["features"][split]
        assert m["n_examples"] == 60
        assert {"accuracy", "precision", "recall", "f1", "per_class"} <= set(m)
        assert set(m["per_class"]) == {"neg", "pos"} and 0 <= m["accuracy"] <= 1
    assert metrics["details"]["selection"]["grid_C"] == [0.1, 1.0, 10.0]
    rows = read_predictions(run, "features")  # every example, and the accuracy they give is the recorded one
    for split in ("validation", "test"):
        mine = [r for r in rows if r["split"] == split]
        assert [r["id"] for r in mine] == list(range(60)) and all(r["example"] and 0.5 <= r["probability"] <= 1
                                                                 for r in mine)
        recomputed = sum(r["label"] == r["prediction"] for r in mine) / len(mine)
        assert recomputed == pytest.approx(metrics["methods"]["features"][split]["accuracy"])
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["encoder"]["pooling"] == "cls" and config["seed"] == 0
    assert "transformers" in config["environment"]["packages"] and "git_commit" in config["environment"]
    assert json.loads((run / "status.json").read_text())["status"] == "completed"
    bundle = load_classifier_file(run / "classifier.skops")  # the fitted classifier reloads (skops, no pickle)
    assert bundle["label_names"] == ["neg", "pos"] and hasattr(bundle["pipeline"], "predict")
    tags = event_tags(run / "tensorboard")
    assert tags["features/test/accuracy"] == [0] and tags["features/validation/f1"] == [0]  # each logged exactly once
    assert tags["features/test/confusion_matrix"] == [0]
    assert tags["selection/validation_accuracy"] == [0, 1, 2]  # one point per C, in grid order
    assert tags["hparam/features/test_accuracy"] == [0]  # TensorBoard's HParams tab compares runs
    assert hparams_of(run / "tensorboard")["encoder.pooling"] == "cls"


@pytest.mark.slow
def test_second_identical_run_hits_the_cache(base_args, capsys, tmp_path):
    _, out1, _ = run_cli(base_args, capsys)
    code, out2, _ = run_cli(base_args, capsys)
    assert code == 0
    assert out1.count("encoded in") == 3 and out2.count("from cache") == 3
    m1 = json.loads((Path(out1.strip().splitlines()[-1]) / "metrics.json").read_text())
    m2 = json.loads((Path(out2.strip().splitlines()[-1]) / "metrics.json").read_text())
    assert m1["methods"] == m2["methods"]
    _, out3, _ = run_cli(base_args + ["encoder.pooling=mean"], capsys)  # a changed setting misses
    assert out3.count("encoded in") == 3


@pytest.mark.slow
def test_wandb_offline_needs_no_network(base_args, capsys, tmp_path):
    code, out, err = run_cli(base_args + ["tracking.wandb=offline", "run_name=wb"], capsys)
    assert code == 0, err
    run = Path(out.strip().splitlines()[-1])
    assert list((run / "wandb").glob("offline-run-*")), "no offline wandb run written"


def error_of(args, capsys):
    code, out, err = run_cli(args, capsys)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.slow
def test_errors_leave_no_run_directory(base_args, capsys, tmp_path, tiny_distilbert):
    logs = tmp_path / "logs"
    csv = make_csv(tmp_path / "d.csv", [{"review": "fine", "y": 1}, {"review": "bad", "y": 0}])
    one_class = make_csv(tmp_path / "one.csv", [{"text": "fine", "label": 1}, {"text": "good", "label": 1}])
    two = make_csv(tmp_path / "two.csv", [{"text": "fine", "label": 1}, {"text": "bad", "label": 0}])
    empty = make_csv(tmp_path / "empty.csv", [{"text": "", "label": 1}, {"text": "ok", "label": 0},
                                              {"text": "fine", "label": 1}])
    cases = [
        (["classifier.nam=svc"], "did you mean 'classifier.name'?"),
        (["encoder.max_length=abc"], "expected int"),
        (["--config", "papr"], "unknown preset 'papr'"),
        (["data.source=files", f"data.train_file={tmp_path}/missing.csv", f"data.test_file={csv}"], "does not exist"),
        (["data.path=/nonexistent/rt"], "lacks rt-polarity.pos"),
        (["data.source=files", f"data.train_file={csv}", f"data.test_file={csv}", f"data.validation_file={csv}"],
         "columns found: review, y"),
        (["encoder.model=distilbert-base-uncased"], "use --config offline"),
        (["data.source=files", f"data.train_file={one_class}", f"data.validation_file={two}",
          f"data.test_file={two}"], "the train split holds one class only (1)"),
        (["data.source=files", f"data.train_file={empty}", f"data.validation_file={empty}",
          f"data.test_file={empty}", "data.empty_texts=error"], "empty or missing texts"),
    ]
    for extra, message in cases:
        assert message in error_of(base_args + extra, capsys), extra
    assert not (logs / "features").exists() or not any((logs / "features").iterdir())


@pytest.mark.slow
def test_real_process_exit_code_and_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "transferlab.cli", "features", "--output-dir", str(tmp_path),
                           "encoder.poolin=cls"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: unknown config key 'encoder.poolin': did you mean 'encoder.pooling'?"
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_help_explains_commands():
    proc = subprocess.run([sys.executable, "-m", "transferlab.cli", "features", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "--config" in proc.stdout and "key=value" in proc.stdout


def test_print_config_shows_resolved_values(capsys):
    code, out, _ = run_cli(["features", "--print-config", "classifier.name=logreg", "--config", "paper"], capsys)
    config = yaml.safe_load(out)
    assert code == 0 and config["classifier"]["name"] == "logreg"
    assert config["encoder"]["model"] == "distilbert-base-uncased" and config["source"] == "preset:paper"


@pytest.mark.slow
def test_threads_option_sets_one_budget_and_records_it(base_args, capsys):
    import torch

    before = torch.get_num_threads()
    try:
        code, out, err = run_cli(base_args[:1] + ["--threads", "1"] + base_args[1:], capsys)
        assert code == 0, err
        env = yaml.safe_load((Path(out.strip().splitlines()[-1]) / "config.yaml").read_text())["environment"]
        assert env["torch_threads"] == 1 and set(env["native_threads"].values()) == {1}
        code, _, err = run_cli(base_args[:1] + ["--threads", "0"] + base_args[1:], capsys)
        assert code == 2 and err.strip() == "error: --threads must be at least 1; got 0"
    finally:
        from transferlab.models.device import set_threads

        set_threads(before)
