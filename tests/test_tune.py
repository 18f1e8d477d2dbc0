"""``transferlab tune``: Optuna studies over real small runs. Trials score validation only; the best config is
written and scored on test once; a raising trial is recorded as failed; the pruner stops poor trials; workers
share one storage; a rerun continues the study."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import yaml
from helpers import finetune_overrides
from test_faults import start, wait_for

from transferlab.cli import main
from transferlab.config import load_config
from transferlab.experiments.features import FeaturesConfig
from transferlab.studies.search_space import load_search_space
from transferlab.studies.tune import ReportToTrial

FEATURES = ["--threads", "1", "data.limit=60", "tracking.tensorboard=false"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """One feature cache for every features search here (the encoder runs once per pooling)."""
    return tmp_path_factory.mktemp("feature-cache")


def study_of(folder: Path, name: str) -> optuna.Study:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return optuna.load_study(study_name=name, storage=JournalStorage(JournalFileBackend(str(folder / "study.journal"))))


def count_test_rows(run_dir: Path) -> int:
    from transferlab.evaluation.predictions import read_predictions

    primary = json.loads((run_dir / "metrics.json").read_text())["primary"]
    return sum(row["split"] == "test" for row in read_predictions(run_dir, primary))


def run_dirs(folder: Path, experiment: str) -> list[Path]:
    return sorted(p for p in (folder / experiment).iterdir() if (p / "config.yaml").is_file())


@pytest.mark.slow
def test_search_writes_the_best_config_scores_test_once_and_a_rerun_continues(tmp_path, cache, capsys):
    args = ["tune", "features", "--trials", "3", "--output-dir", str(tmp_path), *FEATURES, f"cache_dir={cache}"]
    assert main(args) == 0
    folder = tmp_path / "tune" / "features-offline"
    study = study_of(folder, "features-offline")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 3
    runs = run_dirs(folder, "features")
    trials = [r for r in runs if r.name.startswith("trial-")]
    assert len(trials) == 3 and [r.name for r in runs if r not in trials] == [f"final-trial-{study.best_trial.number:04d}"]
    for run in trials:  # validation only: no test figure, no test prediction
        metrics = json.loads((run / "metrics.json").read_text())
        assert set(metrics["methods"]["features"]) == {"validation"} and count_test_rows(run) == 0
        assert yaml.safe_load((run / "config.yaml").read_text())["score_test"] is False
    final = folder / "features" / f"final-trial-{study.best_trial.number:04d}"
    assert sum(count_test_rows(r) for r in runs) == count_test_rows(final) == json.loads(
        (final / "metrics.json").read_text())["n_examples"]["test"]  # test scored once, in the final run
    best = load_config(FeaturesConfig, "features", str(folder / "best.yaml"))  # usable with --config
    assert best.score_test and best.classifier.name == study.best_trial.params["classifier.name"]
    assert best.classifier.C == pytest.approx(study.best_trial.params["classifier.C"]) and best.classifier.C_grid is None
    assert json.loads((final / "metrics.json").read_text())["methods"]["features"]["validation"]["accuracy"] == \
        pytest.approx(study.best_value)  # the final run reproduces the best trial
    report = (folder / "report.md").read_text()
    assert "test" in report and "95% interval" in report and (folder / "optimization_history.png").is_file()
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(folder)

    written = (folder / "best.yaml").stat().st_mtime_ns
    assert main(["tune", "features", "--trials", "1", "--no-final", "--output-dir", str(tmp_path), *FEATURES,
                 f"cache_dir={cache}"]) == 0  # the same command again: one more trial in the same study
    study = study_of(folder, "features-offline")
    assert len(study.trials) == 4 and len([r for r in run_dirs(folder, "features") if r.name.startswith("trial-")]) == 4
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 4  # no draw repeated
    assert (folder / "best.yaml").stat().st_mtime_ns == written  # --no-final: trials only
    assert main(["tune", "features", "--trials", "0", "--compare", str(final), "--output-dir", str(tmp_path), *FEATURES,
                 f"cache_dir={cache}"]) == 0  # the result of all four trials; test scored once per best config
    assert f"Against `{final}` on the same 60 test examples: difference" in (folder / "report.md").read_text()
    finals = [r for r in run_dirs(folder, "features") if r.name.startswith("final-")]
    assert [r.name for r in finals if r.name == f"final-trial-{study.best_trial.number:04d}"] and len(finals) <= 2


@pytest.mark.slow
def test_a_trial_that_raises_is_recorded_as_failed_and_the_study_goes_on(tmp_path, cache, monkeypatch):
    import transferlab.experiments.features.runner as features

    real, calls = features.select_classifier, []

    def second_one_raises(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("a scripted failure")
        return real(*args, **kwargs)

    monkeypatch.setattr(features, "select_classifier", second_one_raises)
    assert main(["tune", "features", "--trials", "3", "--output-dir", str(tmp_path), *FEATURES,
                 f"cache_dir={cache}"]) == 0
    folder = tmp_path / "tune" / "features-offline"
    study = study_of(folder, "features-offline")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL", "COMPLETE"]
    failed = folder / study.trials[1].user_attrs["run_dir"]
    status = json.loads((failed / "status.json").read_text())
    assert status["status"] == "failed" and "a scripted failure" in status["error"]
    assert "a scripted failure" in study.trials[1].user_attrs["error"]
    assert (folder / "best.yaml").is_file() and "1 failed" in (folder / "report.md").read_text()


def test_the_pruner_stops_a_trial_reporting_poor_values():
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=2))
    for _ in range(2):
        trial = study.ask()
        for step in (8, 16):
            trial.report(0.9, step)
        study.tell(trial, 0.9)
    good, poor = study.ask(), study.ask()
    ReportToTrial(good).on_evaluate(None, SimpleNamespace(global_step=8), None, metrics={"eval_accuracy": 0.95})
    with pytest.raises(optuna.TrialPruned, match="pruned at step 8"):
        ReportToTrial(poor).on_evaluate(None, SimpleNamespace(global_step=8), None, metrics={"eval_accuracy": 0.2})
    assert poor.storage.get_trial(poor._trial_id).intermediate_values == {8: 0.2}  # reported before the stop


@pytest.mark.slow
def test_a_pruned_finetune_trial_stops_early_and_its_run_says_pruned(tmp_path, tiny_distilbert):
    """Three earlier trials reported 1.0 at every evaluation, so a real run's first evaluation is below the
    median: the pruner stops it at step 8 of 40, and its run directory says ``pruned``."""
    from optuna.distributions import CategoricalDistribution
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    folder = tmp_path / "tune" / "ft"
    folder.mkdir(parents=True)
    (tmp_path / "space.yaml").write_text("params:\n  training.learning_rate: {choices: [0.003]}\n")
    storage = JournalStorage(JournalFileBackend(str(folder / "study.journal")))
    study = optuna.create_study(storage=storage, study_name="ft", direction="maximize")
    for _ in range(3):
        study.add_trial(optuna.trial.create_trial(
            params={"training.learning_rate": 0.003}, value=1.0, intermediate_values={s: 1.0 for s in range(8, 41, 8)},
            distributions={"training.learning_rate": CategoricalDistribution([0.003])}))
    overrides = [o for o in finetune_overrides(tiny_distilbert) if not o.startswith("training.learning_rate")]
    assert main(["tune", "finetune", "--trials", "1", "--study-name", "ft", "--search", str(tmp_path / "space.yaml"),
                 "--output-dir", str(tmp_path), "--threads", "1", *overrides]) == 0
    trial = study_of(folder, "ft").trials[3]
    assert trial.state == optuna.trial.TrialState.PRUNED and list(trial.intermediate_values) == [8]
    status = json.loads((folder / trial.user_attrs["run_dir"] / "status.json").read_text())
    assert status["status"] == "pruned" and "pruned at step 8" in status["reason"]
    assert not (folder / trial.user_attrs["run_dir"] / "metrics.json").exists()


@pytest.mark.slow
def test_two_workers_share_one_storage_and_run_distinct_trials(tmp_path, cache):
    assert main(["tune", "features", "--trials", "4", "--jobs", "2", "--output-dir", str(tmp_path), *FEATURES,
                 f"cache_dir={cache}"]) == 0
    folder = tmp_path / "tune" / "features-offline"
    study = study_of(folder, "features-offline")
    assert sorted(t.number for t in study.trials) == [0, 1, 2, 3]  # 2 + 2: the sum of the workers' trials
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    dirs = {t.user_attrs["run_dir"] for t in study.trials}
    assert len(dirs) == 4 and all((folder / d / "metrics.json").is_file() for d in dirs)
    threads = {yaml.safe_load((folder / d / "config.yaml").read_text())["environment"]["torch_threads"] for d in dirs}
    assert threads == {1}


@pytest.mark.parametrize("space, message", [
    ("params:\n  classifier.nam: {choices: [svc]}\n", "unknown config key 'classifier.nam'"),
    ("params:\n  classifier.C: {low: 1.0, high: 0.1}\n", "needs numbers low < high"),
    ("params:\n  classifier.C: {choices: [svc]}\n", "classifier.C"),
    ("param:\n  classifier.C: {low: 0.1, high: 1.0}\n", "unknown section 'param'"),
    # spaces Optuna cannot sample: refused up front, not by every trial
    ("params:\n  classifier.C: {low: 0.0, high: 1.0, log: true}\n", "low > 0 with log: true"),
    ("params:\n  classifier.C: {choices: []}\n", "choices must be a non-empty list"),
    ("params:\n  classifier.C: {low: 0.1, high: 1.0, step: 2.0}\n", "step 2.0 is larger than the range"),
    ("params:\n  classifier.C: {low: 0.1, high: 1.0, step: 0.1, log: true}\n", "step and log: true"),
    ("params:\n  encoder.batch_size: {low: 8, high: 64, step: 0.5}\n", "step must be a positive whole number"),
    ("params:\n  encoder.batch_size: {low: 8, high: 64, step: -8}\n", "step must be a positive"),
    ("params:\n  classifier.C: {low: 0.1, high: 1.0, log: 'yes'}\n", "log must be true or false"),
    ("params:\n  classifier.C: {low: .nan, high: 1.0}\n", "needs numbers low < high"),
    # a typo in a condition: refused, not a parameter silently dropped from every trial
    ("params:\n  classifier.name: {choices: [svc, logreg]}\n"
     "  classifier.C: {low: 0.1, high: 1.0, when: {classifier.nme: svc}}\n",
     "names 'classifier.nme', neither a parameter of the space nor a config key (did you mean 'classifier.name'?)"),
    ("params:\n  classifier.name: {choices: [svc, logreg]}\n"
     "  classifier.C: {low: 0.1, high: 1.0, when: {classifier.name: svm}}\n", "can never hold"),
    ("params:\n  classifier.C: {low: 0.1, high: 1.0, when: {classifier.name: svc}}\n"
     "  classifier.name: {choices: [svc, logreg]}\n", "names a parameter listed after it"),
])
def test_a_bad_search_space_is_one_line_and_creates_nothing(tmp_path, capsys, space, message):
    (tmp_path / "space.yaml").write_text(space)
    assert main(["tune", "features", "--search", str(tmp_path / "space.yaml"), "--output-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]
    assert not (tmp_path / "o").exists()


def test_a_condition_on_a_config_key_or_an_earlier_parameter_is_accepted(tmp_path):
    from transferlab.studies.search_space import check_conditions

    (tmp_path / "s.yaml").write_text("params:\n  classifier.name: {choices: [svc, logreg]}\n"
                                     "  classifier.C: {low: 0.1, high: 1.0, when: {classifier.name: svc}}\n"
                                     "  classifier.standardize: {choices: [true], when: {encoder.pooling: mean}}\n")
    check_conditions(load_search_space(tmp_path / "s.yaml"), {"encoder.pooling": "mean", "classifier.C": 1.0})


@pytest.mark.slow
def test_a_study_whose_every_trial_fails_names_the_error_not_missing_files(tmp_path, capsys):
    """Each trial fails before its run directory exists (the data file is gone): the one line names the
    trials' error, and no status.json that does not exist."""
    (tmp_path / "space.yaml").write_text("params:\n  classifier.C: {low: 0.1, high: 1.0}\n")
    data = ["data.source=files", f"data.train_file={tmp_path / 'gone.csv'}", f"data.test_file={tmp_path / 'gone.csv'}"]
    assert main(["tune", "features", "--trials", "2", "--search", str(tmp_path / "space.yaml"), "--output-dir",
                 str(tmp_path), *FEATURES, *data]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: no trial of study 'features-offline' completed (2 of 2 trials failed; trial 1: ")
    assert "gone.csv' for the train split does not exist" in err and "status.json" not in err


def test_a_searched_key_given_as_an_override_is_refused(tmp_path, capsys):
    assert main(["tune", "features", "--output-dir", str(tmp_path / "o"), "classifier.C=2"]) == 2
    assert "both overridden and searched" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_conditions_and_list_choices(tmp_path):
    (tmp_path / "s.yaml").write_text("params:\n  method: {choices: [full, lora]}\n"
                                     "  lora.r: {choices: [4, 8], when: {method: lora}}\n"
                                     "  views: {choices: [[], [flip], [flip, crop]]}\n")
    space = load_search_space(tmp_path / "s.yaml")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = []
    for _ in range(20):
        values = space.suggest(study.ask(), base={"method": "full"})
        assert ("lora.r" in values) == (values["method"] == "lora")
        assert values["views"] in ([], ["flip"], ["flip", "crop"])
        seen.append(values["views"])
    assert len({tuple(v) for v in seen}) == 3
    assert space.decode({"views": "[flip, crop]", "method": "lora"}) == {"views": ["flip", "crop"], "method": "lora"}


# --- a trial whose process died -----------------------------------------------------------------------------

SPACE_C = "params:\n  classifier.C: {low: 0.1, high: 10.0, log: true}\nfixed:\n  classifier.C_grid: null\n"


def dead_pid() -> int:
    """The pid of a real process that has ended."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.slow
def test_a_sigkilled_trial_is_marked_failed_retried_and_counted(tmp_path, tiny_distilbert):
    """A worker killed outright (SIGKILL) mid-trial leaves the trial ``running`` in the journal and its run
    ``running`` in status.json; the same command again finds the process gone, marks the trial failed, runs
    its settings again (on top of --trials), and the report counts it."""
    (tmp_path / "space.yaml").write_text(SPACE_C)
    args = ["tune", "features", "--search", tmp_path / "space.yaml", "--output-dir", tmp_path, "--threads", "1",
            f"encoder.model={tiny_distilbert}", "data.limit=600", "encoder.max_length=32", "encoder.batch_size=8",
            "tracking.tensorboard=false", f"cache_dir={tmp_path / 'cache'}"]
    folder = tmp_path / "tune" / "features-offline"
    proc = start(*args, "--trials", "1")
    status_file = wait_for(proc, folder / "features" / "trial-0000" / "status.json", timeout=180)
    while "run_dir" not in study_of(folder, "features-offline").trials[0].user_attrs:  # recorded right after
        assert proc.poll() is None, proc.communicate()[1][-2000:]
    proc.kill()  # SIGKILL: nothing is recorded, by the run or by Optuna
    proc.communicate(timeout=60)
    assert json.loads(status_file.read_text())["status"] == "running"
    killed = study_of(folder, "features-offline").trials[0]
    assert killed.state == optuna.trial.TrialState.RUNNING and killed.user_attrs["run_dir"] == "features/trial-0000"

    assert main([str(a) for a in args] + ["--trials", "1"]) == 0
    trials = study_of(folder, "features-offline").trials
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE", "COMPLETE"]
    assert "features/trial-0000 is dead" in trials[0].user_attrs["error"] and "process gone" in trials[0].user_attrs["error"]
    assert trials[1].user_attrs["retry_of"] == 0 and trials[1].params == killed.params  # the same settings again
    report = (folder / "report.md").read_text()
    assert "3 trials (2 completed, 0 pruned, 1 failed)" in report

    assert main([str(a) for a in args] + ["--trials", "0"]) == 0  # found once: nothing more to retry
    assert len(study_of(folder, "features-offline").trials) == 3


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["journal", "sqlite"])
def test_only_trials_whose_process_is_gone_are_reaped(tmp_path, storage):
    """Journal and RDB storages alike: a running trial whose recorded process ended is failed and queued again;
    one whose process lives (this one), or that ran on another host with no run directory here, is left."""
    import socket

    from optuna.distributions import FloatDistribution

    from transferlab.studies.tune import reap_dead_trials
    from transferlab.tracking.liveness import this_process

    url = f"sqlite:///{tmp_path / 'studies.db'}" if storage == "sqlite" else None
    if url is None:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        backend = JournalStorage(JournalFileBackend(str(tmp_path / "study.journal")))
    study = optuna.create_study(storage=url or backend, study_name="s", direction="maximize")
    processes = [{"pid": dead_pid(), "host": socket.gethostname()}, this_process(),
                 {"pid": dead_pid(), "host": "another-machine"}]
    for i, process in enumerate(processes):
        trial = study.ask({"classifier.C": FloatDistribution(0.1, 10.0)})
        trial.set_user_attr("process", process)
        trial.set_user_attr("run_dir", f"features/trial-{i:04d}")  # no such folder here
    plan = SimpleNamespace(directory=tmp_path, storage_url=url, storage=str(tmp_path / "study.journal"),
                           heartbeats=url is not None, heartbeat=10)  # the fields storage_of reads
    assert reap_dead_trials(study, plan) == 1
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "RUNNING", "RUNNING", "WAITING"]
    assert trials[3].system_attrs["fixed_params"] == trials[0].params  # its settings, queued
    assert "is gone" in trials[0].user_attrs["error"] and trials[3].user_attrs["retry_of"] == 0
    assert reap_dead_trials(study, plan) == 0  # already failed: not queued twice
