"""Label-budget studies on real data: K-shot draws of the vendored Rotten Tomatoes (exactly K per class, nested,
reproducible, never a test example), and a 2-K x 2-seed study through the CLI that survives a SIGKILL."""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from transferlab.cli.options import parse_shots
from transferlab.cli.study import shots_by_experiment
from transferlab.data.text import TextDataConfig, draw_shots, load_text_data
from transferlab.errors import TransferlabError


@pytest.fixture(scope="module")
def full_rt():
    return load_text_data(TextDataConfig())


@pytest.fixture(scope="module")
def draw(full_rt):
    """``draw(shots, seed, **data settings)``: what load_text_data returns with data.shots (the loading done once)."""
    return lambda shots, seed, **extra: draw_shots(full_rt, TextDataConfig(shots=shots, **extra), seed)


@pytest.mark.slow
def test_the_loader_draws_with_the_run_seed(full_rt, draw):
    loaded = load_text_data(TextDataConfig(shots=4), seed=5)
    assert loaded.splits["train"]["text"] == draw(4, 5).splits["train"]["text"]
    assert loaded.notes[-1].startswith("label budget: 4 training and 4 validation examples per class")


@pytest.mark.slow
def test_a_draw_holds_exactly_k_of_every_class_and_a_small_validation_from_the_train_pool(full_rt, draw):
    data = draw(8, seed=0)
    assert Counter(data.splits["train"]["label"]) == {0: 8, 1: 8}
    assert Counter(data.splits["validation"]["label"]) == {0: 4, 1: 4}  # min(K, 4) per class
    assert draw(2, seed=0).splits["validation"].num_rows == 4  # min(2, 4) = 2 per class
    assert data.splits["test"]["text"] == full_rt.splits["test"]["text"]  # test stays whole
    pool = full_rt.splits["train"]["text"]
    assert data.pool["text"] == pool
    assert [pool[i] for i in data.rows["train"]] == data.splits["train"]["text"]
    assert [pool[i] for i in data.rows["validation"]] == data.splits["validation"]["text"]
    assert not set(data.rows["train"]) & set(data.rows["validation"])  # drawn apart
    assert data.fewshot["shots"] == 8 and data.fewshot["pool"] == len(pool)


@pytest.mark.slow
def test_no_test_or_validation_split_example_reaches_training_or_selection(full_rt, draw):
    test_rows = set(full_rt.splits["test"]["text"])
    validation_rows = set(full_rt.splits["validation"]["text"])
    train_rows = set(full_rt.splits["train"]["text"])
    for seed in (0, 1, 2):
        data = draw(16, seed)
        for split in ("train", "validation"):
            texts = set(data.splits[split]["text"])
            assert texts <= train_rows  # every drawn example is a training-split example
            assert not texts & (test_rows - train_rows) and not texts & (validation_rows - train_rows)


@pytest.mark.slow
def test_draws_are_nested_within_a_seed_and_reproducible(draw):
    small, large = draw(2, seed=3), draw(8, seed=3)
    assert set(small.splits["train"]["text"]) < set(large.splits["train"]["text"])
    assert draw(8, seed=3).splits["train"]["text"] == large.splits["train"]["text"]
    assert draw(8, seed=4).splits["train"]["text"] != large.splits["train"]["text"]
    independent = draw(8, seed=3, nested_shots=False)
    assert Counter(independent.splits["train"]["label"]) == {0: 8, 1: 8}
    assert independent.splits["train"]["text"] != large.splits["train"]["text"]  # drawn anew for K = 8
    assert draw(8, seed=3, nested_shots=False).splits["train"]["text"] == independent.splits["train"]["text"]


@pytest.mark.slow
def test_a_budget_larger_than_a_class_is_one_line_error():
    with pytest.raises(TransferlabError, match=r"data.shots: .*150 needs 154 examples of every class, but class 0 has 100"):
        load_text_data(TextDataConfig(shots=150, limit=200))
    with pytest.raises(TransferlabError, match="data.shots must be at least 1"):
        TextDataConfig(shots=0)


def test_shots_option_parses_lists_full_and_sections():
    assert parse_shots("8,1,full,2") == (None, [1, 2, 8, None])
    assert parse_shots("clip=1,2") == ("clip", [1, 2])
    for bad in ("", "1,1", "0,2", "a,b"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_shots(bad)
    shots = shots_by_experiment([(None, [8, 32]), ("clip", [1, 2])],
                                {"features": "features", "lora": "clip", "zeroshot": "clip"})
    assert shots == {"features": [8, 32], "lora": [1, 2], "zeroshot": [1, 2]}
    with pytest.raises(TransferlabError, match="none of this command's config sections"):
        shots_by_experiment([("images", [1])], {"features": "features"})


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "transferlab.cli", *args]


def study_command(encoder: Path, out: Path, shots: str = "2,4") -> list[str]:
    return cli("features", "--shots", shots, "--seeds", "0,1", "--output-dir", str(out), "--threads", "1",
               f"encoder.model={encoder}", "data.limit=200", "also_classifiers=[logreg]", "tracking.tensorboard=false",
               "run_name=rt")


def wait_for_completed_cell(state_file: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if state_file.is_file():
            try:
                cells = json.loads(state_file.read_text())["cells"]
            except (json.JSONDecodeError, KeyError):
                cells = []
            if any(c["status"] == "completed" for c in cells) and (state_file.parent / "results.csv").is_file():
                return  # a cell recorded, then its rows (results.csv follows study.json after every cell)
        time.sleep(0.05)
    raise AssertionError("no cell completed in time")


@pytest.mark.slow
def test_a_study_writes_every_cell_and_continues_after_a_sigkill(tiny_text_models, tmp_path):
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    study = tmp_path / "study" / "rt"
    proc = subprocess.Popen(study_command(tiny_text_models["bert"], tmp_path), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_completed_cell(study / "study.json", proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = json.loads((study / "study.json").read_text())
    first = next(c for c in killed["cells"] if c["status"] == "completed")
    first_metrics = study / first["run_dir"] / "metrics.json"
    stamp = first_metrics.stat().st_mtime_ns
    with (study / "results.csv").open() as handle:  # rewritten after every cell: the finished ones are there
        seen = {(r["shots"], r["seed"]) for r in csv.DictReader(handle)}
    done = {(str(c["shots"]), str(c["seed"])) for c in killed["cells"] if c["status"] == "completed"}
    assert seen and seen <= done  # finished cells only (the last one's rows may still have been on their way)
    from transferlab.studies.shots import read_study
    from transferlab.tracking.liveness import describe_status

    assert "process gone" in describe_status(study)  # the study's own status.json: dead, not running forever
    _, notes = read_study(study)
    assert [c["run_dir"] for c in killed["cells"] if c["status"] == "running"] == \
        [n.split()[1] for n in notes]  # the cell that was running is named as killed

    done = subprocess.run(study_command(tiny_text_models["bert"], tmp_path), env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    state = json.loads((study / "study.json").read_text())
    assert state["status"] == "completed" and [c["status"] for c in state["cells"]] == ["completed"] * 4
    assert first_metrics.stat().st_mtime_ns == stamp  # the finished cell was not redone
    with (study / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    cells = {(r["method"], r["shots"], r["seed"]) for r in rows if r["split"] == "test" and r["metric"] == "accuracy"}
    assert cells == {(m, k, s) for m in ("features", "features_logreg") for k in ("2", "4") for s in ("0", "1")}
    assert all(r["ci_low"] and float(r["ci_low"]) <= float(r["value"]) <= float(r["ci_high"])
               for r in rows if r["metric"] == "accuracy")
    assert {(r["shots"], r["protocol"]) for r in rows} == {("2", "fewshot_val@2"), ("4", "fewshot_val@4")}
    for cell in state["cells"]:  # each cell trained on 2K examples, chose C on 2 min(K, 4), scored all 200 tests
        metrics = json.loads((study / cell["run_dir"] / "metrics.json").read_text())
        k = cell["shots"]
        assert metrics["n_examples"] == {"train": 2 * k, "validation": 2 * min(k, 4), "test": 200}
        assert "encode_train_s" in metrics["timings"]
    encoded = [json.loads((study / c["run_dir"] / "metrics.json").read_text())["timings"]["encoded_train_texts"]
               for c in state["cells"]]
    assert sum(encoded) <= 200  # the train pool encoded at most once (the killed attempt may have cached it)
    assert (study / "report.md").read_text().count("Learning curve: rotten_tomatoes") == 1
    assert len(list((study / "benchmark").glob("*.json"))) == 4  # 2 methods x 2 K

    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- shots:begin -->\nold\n<!-- shots:end -->\ntail\n")
    made = subprocess.run(cli("report", str(study), "--readme", str(readme)), env=env, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr[-2000:]
    block = readme.read_text()
    assert "old" not in block and block.endswith("tail\n") and "### Learning curve: rotten_tomatoes" in block
    assert "features_logreg" in block and (tmp_path / "figures" / "curve-rotten_tomatoes.png").is_file()
    assert f" {tmp_path}" not in block and " on 20" not in block  # no absolute path, no date in the generated line

    other = subprocess.run(study_command(tiny_text_models["bert"], tmp_path, shots="2,8"), env=env,
                           capture_output=True, text=True)
    assert other.returncode == 2 and "holds a study with other shots" in other.stderr


def test_fine_tuning_at_a_label_budget_trains_with_the_fixed_shots_settings():
    from transferlab.config import load_config
    from transferlab.experiments.finetune import FinetuneConfig

    full = load_config(FinetuneConfig, "finetune", "offline")
    assert full.training_in_force() is full.training  # full data: the preset's training, unchanged
    budget = load_config(FinetuneConfig, "finetune", "offline", ["data.shots=8", "training.eval_steps=50"])
    training = budget.training_in_force()
    assert (training.epochs, training.batch_size, training.learning_rate, training.eval_steps) == (20, 16, 5e-5, None)
    lora = load_config(FinetuneConfig, "finetune", "offline", ["data.shots=8", "method=lora"])
    assert lora.training_in_force().learning_rate == 5e-4
    with pytest.raises(TransferlabError, match="shots_training"):
        load_config(FinetuneConfig, "finetune", "offline", ["data.shots=8", "shots_training.batch_size=0"])


def test_curves_of_two_studies_draw_a_shared_frozen_method_once_and_name_a_differing_one(monkeypatch):
    from transferlab.reporting import curves

    probe = [(1.0, "1", [0.30, 0.32], [(0.29, 0.31), (0.31, 0.33)])]
    by_study = {"lab": {"tiny": {"linear_probe": probe, "lora": [(1.0, "1", [0.35], [(0.34, 0.36)])]}},
                "clip-lora": {"tiny": {"linear_probe": probe, "lora": [(1.0, "1", [0.40], [(0.39, 0.41)])]}}}
    monkeypatch.setattr(curves, "study_curves", lambda d: by_study[d.name])
    merged = curves.merged_curves([Path("lab"), Path("clip-lora")])
    assert sorted(merged["tiny"]) == ["linear_probe", "lora", "lora (clip-lora)"]
    assert merged["tiny"]["lora (clip-lora)"][0][2] == [0.40]


def test_curves_by_data_set_put_every_experiment_of_it_in_one_figure_and_name_a_shared_method():
    from transferlab.reporting.curves import curve_points

    def row(experiment, method, shots, value):
        return {"experiment": experiment, "dataset": "rt", "method": method, "shots": shots, "seed": 0,
                "split": "test", "metric": "accuracy", "value": value, "ci_low": value - 0.01, "ci_high": value + 0.01}

    rows = [row("features", "features", 8, 0.6), row("setfit", "setfit", 8, 0.7), row("other", "features", 8, 0.5),
            {**row("setfit", "setfit", 8, 0.9), "split": "validation"}, row("zeroshot", "zero_shot", 8, 0.2),
            row("lora", "zero_shot", 8, 0.2)]
    xs = {(e, "8"): 8.0 for e in ("features", "setfit", "other", "zeroshot", "lora")}
    curves = curve_points(rows, xs, by="dataset")
    assert sorted(curves["rt"]) == ["features", "features (other)", "setfit", "zero_shot"]  # same line: once
    assert curves["rt"]["setfit"] == [(8.0, "8", [0.7], [(0.69, 0.71)])]
    assert list(curve_points(rows, xs)) == ["features", "setfit", "other", "zeroshot", "lora"]


def test_a_folder_without_a_finished_study_is_refused_in_one_line(tmp_path):
    from transferlab.reporting.curves import study_curves

    with pytest.raises(TransferlabError, match="holds no finished label-budget study"):
        study_curves(tmp_path)
