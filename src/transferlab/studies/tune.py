"""Hyper-parameter search: one Optuna study (TPE, seeded; median or Hyperband pruning) over an experiment's
search space, each trial a normal run directory, validation accuracy the only objective.

``transferlab tune EXPERIMENT --trials N [--timeout S] [--storage URL] [--study-name NAME] [--jobs N]``.
The study lives in ``<output-dir>/tune/<study>/``: its journal file (Optuna's file storage, safe for several
processes; ``--storage`` names an RDB URL instead, e.g. ``postgresql://...``, for workers on many machines),
one run directory per trial (``<experiment>/trial-0003``; test is never scored: ``score_test=false``), and,
at the end, ``best.yaml`` (the experiment's full config with the best trial's settings, for ``--config``) and
its one run that scores test (``<experiment>/final-trial-0003``). Running the same command again adds
``--trials`` more trials to the same study. ``--jobs N`` runs N workers (``studies.tune_workers``): processes of
the same command (``--worker I``) on this machine, each with its share of the threads, or with ``--executor ray``
Ray tasks of ``--threads`` CPUs each on a cluster; a killed worker is started again for the trials it had left.

The study name is one folder name (the check run names get), so nothing is written outside ``--output-dir``;
the storage is checked and opened with one-line errors, and a database URL's password is never printed or
written (``studies.tune_storage``). A trial whose process died (SIGKILL, a lost machine) stays ``running`` in
Optuna's storage: when the study is continued or finished, a running trial whose run directory's liveness
record (``status.json``: pid, host, heartbeat), or the process the trial recorded on this host, reads as dead
is marked failed, and its settings are queued again. On an RDB storage every trial also beats Optuna's
heartbeat (``--heartbeat S``): a trial silent for three beats is failed by whichever worker asks for a trial
next (or by the command once its workers ended), and Optuna's ``RetryHeartbeatStaleTrialCallback`` queues its
settings again (the new trial names the dead one in its ``failed_trial`` system attribute and in ``retry_of``).
A queued trial runs before any new one and on top of ``--trials``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from transferlab.config import check_run_name, dump_yaml, load_config, merge, parse_overrides, to_dict
from transferlab.errors import TransferlabError
from transferlab.experiments.lifecycle import announce_runs
from transferlab.experiments.registry import EXPERIMENTS, Experiment
from transferlab.studies import tune_storage
from transferlab.studies.executor import this_node
from transferlab.studies.search_space import (SearchSpace, check_conditions, flatten, load_search_space, nest,
                                              search_file)
from transferlab.tracking.files import read_json
from transferlab.tracking.liveness import RUNNING, describe_status, is_dead, process_alive, this_process
from transferlab.tracking.rundir import Run, load_run
from transferlab.training.callbacks import extra_callbacks

JOURNAL = "study.journal"
BEST = "best.yaml"
PRUNED = "pruned"
HEARTBEAT_S = 10  # Optuna's heartbeat on an RDB storage; a trial silent for GRACE_BEATS beats is failed
GRACE_BEATS = 3
MAX_RETRY = 3  # retries of one trial whose worker died, after which its settings are not queued again


@dataclass
class Plan:
    """Everything a study needs, checked before anything is written."""

    experiment: Experiment
    config_spec: str | None
    overrides: dict  # the user's overrides (nested)
    space: SearchSpace
    name: str
    directory: Path
    storage: str  # what is shown of the storage: a journal file path, or an RDB URL with its password as ***
    output_dir: Path
    pruner: str
    base: dict  # the flattened base config (fixed settings and overrides applied), read by ``when`` conditions
    storage_url: str = ""  # the storage itself (an RDB URL with its password): opened, never printed
    heartbeat: int = HEARTBEAT_S  # seconds between a trial's heartbeats on an RDB storage

    @property
    def heartbeats(self) -> bool:
        """Whether running trials beat (an RDB storage: ``storage_of`` turns its heartbeat on; a journal has none)."""
        return tune_storage.is_url(self.storage_url or self.storage)

    def config(self, values: dict, *, trial: bool, run_name: str | None, caches: bool = True):
        """The experiment's config with ``values`` applied: a trial's (validation only) or the final one."""
        extra = merge(nest(self.space.fixed), nest(self.space.trials) if trial else {})
        extra = merge(merge(extra, self.overrides), nest(values))
        extra = merge(extra, {"run_name": run_name, "score_test": not trial})
        if caches and self.experiment.shared_cache:  # what trials may share (filled in only when unset)
            key, folder = self.experiment.shared_cache
            if self.base.get(key) is None:
                extra = merge(extra, nest({key: str(self.output_dir / "cache" / folder)}))
        return load_config(self.experiment.config_class(), self.experiment.section, self.config_spec, extra)


def plan_study(args: argparse.Namespace) -> Plan:
    """The checked plan: arguments, search space and every searched key against the config (one-line errors)."""
    heartbeat = getattr(args, "heartbeat", HEARTBEAT_S)
    for flag, value, least in (("--trials", args.trials, 0), ("--jobs", args.jobs, 1), ("--heartbeat", heartbeat, 1)):
        if value < least:
            raise TransferlabError(f"{flag} must be at least {least}; got {value}")
    if args.timeout is not None and args.timeout <= 0:
        raise TransferlabError(f"--timeout must be positive (seconds); got {args.timeout}")
    experiment = EXPERIMENTS[args.experiment]
    space = load_search_space(search_file(args.search, args.config, args.experiment))
    overrides = parse_overrides(args.overrides)
    clash = sorted(set(flatten(overrides)) & {p.name for p in space.params})
    if clash:
        raise TransferlabError(f"{clash[0]!r} is both overridden and searched: drop the override, or give a search "
                               f"space without it (--search FILE)")
    spec = args.config
    name = check_run_name(args.study_name or f"{args.experiment}-{Path(spec).stem if spec else 'offline'}",
                          "--study-name")
    directory = study_directory(Path(args.output_dir), name)
    storage = checked_storage(args.storage or os.environ.get(tune_storage.ENV) or str(directory / JOURNAL))
    plan = Plan(experiment, spec, overrides, space, name, directory, shown_storage(storage), Path(args.output_dir),
                args.pruner, {}, storage_url=storage, heartbeat=heartbeat)
    plan.base = flatten(to_dict(plan.config({}, trial=True, run_name=None, caches=False)))
    for param in space.params:  # each key known and each bound of the right type, before any trial runs
        for value in param.choices if param.choices is not None else (param.low, param.high):
            plan.config({param.name: value}, trial=True, run_name=None)
    check_conditions(space, plan.base)
    return plan


def study_directory(output_dir: Path, name: str) -> Path:
    """``<output-dir>/tune/<name>``: inside ``--output-dir`` (no link on the way leads elsewhere)."""
    directory = output_dir / "tune" / name
    for path in (output_dir / "tune", directory):
        if path.is_symlink():
            raise TransferlabError(f"{path} is a symbolic link: a study is written inside --output-dir only; "
                                   f"remove the link or choose another --output-dir")
    return directory


def checked_storage(storage: str) -> str:
    """``storage`` (a database URL or a journal path) once it passed its checks (``studies.tune_storage``)."""
    if tune_storage.is_url(storage):
        tune_storage.check_url(storage)
    else:
        tune_storage.check_journal(Path(storage))
    return storage


def shown_storage(storage: str) -> str:
    return tune_storage.redact_url(storage) if tune_storage.is_url(storage) else storage


def storage_of(plan: Plan):
    """Optuna's storage: an RDB URL's (its tables created when new), with the heartbeat and the retry of a trial
    whose heartbeat stopped; otherwise a journal file (its lock makes local processes safe; no heartbeat)."""
    storage = plan.storage_url or plan.storage
    if plan.heartbeats:  # an RDB URL
        from optuna.storages import RDBStorage

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna marks the heartbeat and its retry callback experimental
            return RDBStorage(storage, heartbeat_interval=plan.heartbeat, grace_period=GRACE_BEATS * plan.heartbeat,
                              heartbeat_stale_trial_callback=RetryStale(MAX_RETRY, GRACE_BEATS * plan.heartbeat))
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    Path(storage).parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(storage))


def open_study(plan: Plan, worker: int = 0):
    """The study (created, or loaded to continue), with a TPE sampler seeded by the config's seed, the worker
    and the trials already run (so a continued study or a second worker does not repeat the first draws).
    A storage that cannot be opened is one line (its password never shown)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruners = {"median": optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0),
               "hyperband": optuna.pruners.HyperbandPruner(min_resource=1, max_resource="auto"),
               "none": optuna.pruners.NopPruner()}
    try:
        study = optuna.create_study(storage=storage_of(plan), study_name=plan.name, direction="maximize",
                                    load_if_exists=True, pruner=pruners[plan.pruner])
        recorded = study.user_attrs.get("experiment")
    except TransferlabError:
        raise
    except Exception as exc:  # noqa: BLE001 - a driver's, SQLAlchemy's or the journal's own: one line
        raise tune_storage.open_error(exc, plan.storage_url or plan.storage) from None
    if recorded not in (None, plan.experiment.name):
        raise TransferlabError(f"study {plan.name!r} searches {recorded}, not {plan.experiment.name}: "
                               f"choose another --study-name")
    if recorded is None:
        study.set_user_attr("experiment", plan.experiment.name)
    seed = int(plan.base.get("seed", 0)) + 1000 * worker + len(study.trials)
    study.sampler = optuna.samplers.TPESampler(seed=seed)
    return study


class RetryStale:
    """Optuna's ``RetryHeartbeatStaleTrialCallback``, called once a trial's heartbeat stopped and it was failed:
    its settings queued again as a new trial linked by Optuna's system attributes (``failed_trial``: the first
    of the series, ``retry_history``), at most ``max_retry`` times. The new trial takes none of the dead one's
    user attributes (its run directory, process, error) but ``retry_of``, the trial it repeats."""

    def __init__(self, max_retry: int, grace_s: int):
        from optuna.storages import RetryHeartbeatStaleTrialCallback

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.retry = RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
        self.grace_s = grace_s

    def __call__(self, study, trial) -> None:
        print(f"trial {trial.number}: fail (no heartbeat for {self.grace_s} s: its worker died); its settings are "
              f"queued again", flush=True)
        trial.user_attrs = {"retry_of": trial.number}  # a copy of the stored trial (fail_stale_trials')
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.retry(study, trial)


def fail_stale_trials(study) -> None:
    """Optuna's own check (what a worker does before each trial): running trials whose heartbeat stopped are
    failed and their retries queued (nothing on a storage without heartbeats)."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # experimental in Optuna
        optuna.storages.fail_stale_trials(study)


def reap_dead_trials(study, plan: Plan) -> int:
    """Mark failed each running trial whose process is gone (:func:`trial_death`), with the reason in its
    ``error``, and queue its settings again (``retry_of``); how many were queued. Works for every storage."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    storage = storage_of(plan)  # the study's own is private to Optuna: the same journal or database, opened again
    study_id = storage.get_study_id_from_name(study.study_name)
    queued = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        death = trial_death(trial, plan)
        if death is None:
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        try:
            storage.set_trial_user_attr(trial_id, "error", death)
            if not storage.set_trial_state_values(trial_id, TrialState.FAIL):
                continue
        except UpdateFinishedTrialError:  # another process finished (or reaped) it meanwhile
            continue
        study.enqueue_trial(dict(trial.params), user_attrs={"retry_of": trial.number})
        print(f"trial {trial.number}: fail ({death}); its settings are queued again", flush=True)
        queued += 1
    return queued


def trial_death(trial, plan: Plan) -> str | None:
    """Why a running trial is dead, or ``None`` while it may be alive (or cannot be judged from here): its run
    directory's ``status.json`` read as dead, else the process the trial recorded, on this host, gone."""
    run_dir = trial.user_attrs.get("run_dir")
    folder = (plan.directory / run_dir).resolve() if isinstance(run_dir, str) else None
    inside = folder is not None and folder.is_relative_to(plan.directory.resolve())  # a path from storage: checked
    status_file = folder / "status.json" if inside else None
    if status_file is not None and status_file.is_file():
        with contextlib.suppress(TransferlabError):
            status = read_json(status_file, "status file")
            if status.get("status") == RUNNING:
                return f"its run {run_dir} is dead: {describe_status(status)}" if is_dead(status) else None
    process = trial.user_attrs.get("process") or {}
    if process.get("pid") and process.get("host") == socket.gethostname() \
            and not process_alive(int(process["pid"]), process.get("pid_start")):
        return f"its process {process['pid']} on {process['host']} is gone"
    return None


class ReportToTrial(TrainerCallback):
    """Each validation evaluation goes to the trial (``trial.report(value, step)``); when the pruner says so,
    the run stops with ``optuna.TrialPruned`` (the objective then marks its run directory ``pruned``)."""

    def __init__(self, trial, metric: str = "eval_accuracy"):
        self.trial, self.metric = trial, metric

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        import optuna

        value = float(metrics[self.metric])
        self.trial.report(value, state.global_step)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {state.global_step} (validation accuracy {value:.4f})")


def objective(trial, plan: Plan) -> float:
    """One trial: the suggested settings, one run (validation only), its validation accuracy. The trial
    records its run directory and its process first, so a trial whose process dies can be told dead."""
    import optuna

    trial.set_user_attr("process", this_process())
    trial.set_user_attr("node", this_node())  # on Ray: the node's id and address too
    callbacks = [] if plan.experiment.name == "features" else [ReportToTrial(trial)]
    try:
        values = plan.space.suggest(trial, plan.base)
        cfg = plan.config(values, trial=True, run_name=f"trial-{trial.number:04d}")
        with extra_callbacks(*callbacks), announce_runs(lambda path: trial.set_user_attr(
                "run_dir", str(Path(path).relative_to(plan.directory)))):  # recorded the moment it exists
            run_dir = plan.experiment.run(cfg, plan.directory, progress=False)
    except optuna.TrialPruned as exc:
        where = getattr(exc, "run_dir", None)
        if where is not None:  # the lifecycle recorded "failed: TrialPruned"; the truth is "pruned"
            Run(Path(where), plan.experiment.name).set_status(PRUNED, reason=str(exc))
            trial.set_user_attr("run_dir", str(Path(where).relative_to(plan.directory)))
            drop_checkpoints(Path(where))
        raise
    except Exception as exc:
        if getattr(exc, "run_dir", None) is not None:
            trial.set_user_attr("run_dir", str(Path(exc.run_dir).relative_to(plan.directory)))
        trial.set_user_attr("error", f"{exc.__class__.__name__}: {exc}")
        raise
    trial.set_user_attr("run_dir", str(Path(run_dir).relative_to(plan.directory)))
    drop_checkpoints(Path(run_dir))
    _, metrics = load_run(run_dir)
    return float(metrics["methods"][metrics["primary"]]["validation"]["accuracy"])


def drop_checkpoints(run_dir: Path) -> None:
    """A finished trial keeps its metrics, predictions and model; its resume checkpoints go (disk)."""
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)


def work(plan: Plan, share: int, launch: str, timeout: float | None = None, *, study=None, watch=None,
         drain: bool = False, worker: int = 0):
    """A worker's trials: ``share`` new ones, counted in the storage by its ``launch`` token (each trial records
    it), so that a worker started again after it was killed (or Ray's new attempt of its task) runs only what
    it had left; queued trials (retries of dead ones) that it is handed run on top. ``drain``: the queued
    trials only. A trial that raises is recorded as failed and the worker goes on; ``watch(study)`` is told
    when a trial starts and ends (the progress display)."""
    study = study if study is not None else open_study(plan, worker)
    begin = time.monotonic()

    def run(trial):
        trial.set_user_attr("launch", launch)
        if watch is not None:
            watch(study)
        return objective(trial, plan)

    callbacks = [lambda s, _: watch(s)] if watch is not None else []
    while queued(study) if drain else launched(study, launch) < share:
        if timeout is not None and time.monotonic() - begin >= timeout:
            break
        study.optimize(run, n_trials=1, catch=(Exception,), callbacks=callbacks, gc_after_trial=True)
    return study


def launched(study, launch: str) -> int:
    """New trials (not retries) that the worker ``launch`` started, whatever their state."""
    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.user_attrs.get("launch") == launch and "retry_of" not in t.user_attrs)


def queued(study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def shares(total: int, jobs: int) -> list[int]:
    """``total`` trials over ``jobs`` workers, as evenly as possible."""
    return [total // jobs + (i < total % jobs) for i in range(jobs)]


@dataclass
class Outcome:
    study: Any  # optuna.Study
    plan: Plan
    best_config: Path
    final_run: Path


def finish(plan: Plan, study) -> Outcome:
    """``best.yaml`` (the full config with the best trial's settings) and its one run scoring test."""
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise TransferlabError(f"no trial of study {plan.name!r} completed ({failure_cause(study, plan)}): fix the "
                               f"cause, then run the command again")
    best = study.best_trial
    values = plan.space.decode(best.params)
    path = write_best_config(plan, values, best)
    final = final_run(plan, best.number, path)
    study.set_user_attr("final_run", str(final.relative_to(plan.directory)))
    return Outcome(study, plan, path, final)


def failure_cause(study, plan: Plan) -> str:
    """Where to look for why no trial completed: the last failed trial's error, and its run's status.json
    where that run directory exists."""
    failed = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("error")]
    if not failed:
        return f"{len(study.trials)} trials, none failed with an error"
    last = failed[-1]
    error = " ".join(str(last.user_attrs["error"]).split())[:300]
    run_dir = last.user_attrs.get("run_dir")
    status = plan.directory / run_dir / "status.json" if isinstance(run_dir, str) else None
    where = f"; see {status}" if status is not None and status.is_file() else ""
    return f"{len(failed)} of {len(study.trials)} trials failed; trial {last.number}: {error}{where}"


def write_best_config(plan: Plan, values: dict, best) -> Path:
    config = to_dict(plan.config(values, trial=False, run_name=None, caches=False))
    config.pop("source", None)
    config.pop("run_name", None)
    header = (f"# transferlab {plan.experiment.name}: the best of study {plan.name!r} (trial {best.number}, "
              f"validation accuracy {best.value:.4f}).\n# Searched: "
              + ", ".join(f"{k}={v!r}" for k, v in values.items())
              + f"\n# Use: transferlab {plan.experiment.name} --config {plan.directory / BEST}\n")
    path = plan.directory / BEST
    path.write_text(header + dump_yaml({plan.experiment.section: config}, sort_keys=False))
    return path


def final_run(plan: Plan, number: int, best_config: Path) -> Path:
    """The best config's run that scores test: reused when it already completed (test is scored once)."""
    base = f"final-trial-{number:04d}"
    for i in range(1, 100):
        name = base if i == 1 else f"{base}-{i}"
        folder = plan.directory / plan.experiment.name / name
        if (folder / "metrics.json").is_file():
            print(f"final run of trial {number} already scored: {folder}")
            return folder
        if not folder.exists():
            break
    cfg = load_config(plan.experiment.config_class(), plan.experiment.section, str(best_config),
                      {"run_name": name, **cache_override(plan)})
    return Path(plan.experiment.run(cfg, plan.directory, progress=False))


def cache_override(plan: Plan) -> dict:
    if not plan.experiment.shared_cache or plan.base.get(plan.experiment.shared_cache[0]):
        return {}
    key, folder = plan.experiment.shared_cache
    return nest({key: str(plan.output_dir / "cache" / folder)})


def trial_rows(study) -> list[dict]:
    """One row per trial: number, state, validation accuracy, last reported step, settings, run directory, the
    error (for a trial failed by the heartbeat: its worker died, and the trial that repeats it), ``retry_of``."""
    trials = study.get_trials(deepcopy=False)
    retried_as = {t.user_attrs["retry_of"]: t.number for t in trials if isinstance(t.user_attrs.get("retry_of"), int)}
    rows = []
    for t in trials:
        error = t.user_attrs.get("error")
        if error is None and t.state.name == "FAIL" and t.number in retried_as:
            error = f"its worker died (no heartbeat); retried as trial {retried_as[t.number]}"
        rows.append({"number": t.number, "state": t.state.name.lower(), "value": t.value,
                     "last_step": max(t.intermediate_values) if t.intermediate_values else None,
                     "seconds": t.duration.total_seconds() if t.duration else None,
                     "params": dict(t.params), "run_dir": t.user_attrs.get("run_dir"), "error": error,
                     "retry_of": t.user_attrs.get("retry_of")})
    return rows
