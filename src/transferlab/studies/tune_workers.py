"""``transferlab tune``'s command (:func:`run_tune`): where a search's trials run, and what the command shows
meanwhile; the plan, the objective and the result are ``studies.tune``'s.

- ``--jobs 1`` (the default): in the command's own process.
- ``--jobs N``: N processes of the same command (``--worker I``) on this machine, each with ``cores // N``
  threads and its output in ``<study>/workers/worker-I.log``. A worker killed by a signal (SIGKILL, the
  out-of-memory killer) is started again, at most ``MAX_RESTARTS`` times, for the trials it had left.
- ``--executor ray``: N Ray tasks of ``--threads`` CPUs each (1 without; a GPU when the config's device asks
  for one) on the cluster at ``--ray-address`` or ``RAY_ADDRESS`` (else a Ray instance on this machine), after
  the check that every node sees the study folder (``studies.executor``). Ray runs a task again when its worker
  or node dies; the new attempt runs the trials the task had left.

All of them share the one Optuna storage. Each trial records its worker's launch token (``launch``), so a
worker started again knows what it already ran, and the command knows its own trials. A trial whose worker
died stays ``running`` until Optuna's heartbeat finds it stale (RDB storages; ``studies.tune``): a live worker
fails it before its next trial, or the command does once its workers ended, waiting out the grace period; with a
journal the process check (``reap_dead_trials``) fails it. Its settings are queued again, and the command runs
what is still queued at the end (locally, or as one more Ray task), on top of ``--trials``.

The progress (``studies.progress.SearchProgress``) reads the storage: trials of this command done of the total,
the best validation accuracy so far, elapsed and ETA; a bar on a terminal, one line per trial when piped.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from transferlab.errors import TransferlabError
from transferlab.studies import tune_storage
from transferlab.studies.executor import RayConnection, ray_error
from transferlab.studies.progress import SearchProgress
from transferlab.studies.tune import (GRACE_BEATS, Outcome, Plan, fail_stale_trials, finish, open_study,
                                      plan_study, queued, reap_dead_trials, shares, work)

MAX_RESTARTS = 3  # a local worker killed by a signal is started again at most this often; Ray's retries alike
POLL_S = 1.0


def run_tune(args: argparse.Namespace) -> Outcome | None:
    """The command: plan, trials (here, in ``--jobs`` worker processes, or as Ray tasks; with the progress
    display), then the best config and its test run. A worker (``--worker I``) or ``--no-final`` runs trials
    only and returns ``None``. Trials found dead are failed and queued again first; queued trials run on top
    of ``--trials``."""
    plan = plan_study(args)
    if args.worker is not None:
        work(plan, args.trials, getattr(args, "launch", None) or f"worker-{os.getpid()}", args.timeout,
             worker=args.worker)
        return None
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    study = open_study(plan)  # created once, before any worker joins it
    reap_dead_trials(study, plan)
    run_trials(plan, args, study)
    study = open_study(plan)
    if args.no_final:  # trials only (a worker machine): another command writes the result
        done = [t.value for t in study.trials if t.value is not None]
        print(f"study {plan.name}: {len(study.trials)} trials; best validation accuracy "
              + (f"{max(done):.4f}" if done else "none yet"))
        return None
    return finish(plan, study)


class TrialWatch:
    """Feeds the progress from the storage: each trial of this command (its launch token starts with
    ``command``) once when it starts and once when it ends; a retry of a trial whose heartbeat stopped adds one
    to the total; the best completed value of the study."""

    def __init__(self, progress: SearchProgress, command: str, study, heartbeat: bool):
        self.progress, self.command, self.heartbeat = progress, command, heartbeat
        self.started: set[int] = set()
        self.ended: set[int] = set()
        self.retries = {t.number for t in study.get_trials(deepcopy=False) if "failed_trial" in t.system_attrs}

    def __call__(self, study) -> None:
        trials = study.get_trials(deepcopy=False)
        complete = [t for t in trials if t.state.name == "COMPLETE" and t.value is not None]
        if complete:
            best = max(complete, key=lambda t: t.value)
            self.progress.best = (best.value, best.number)
        for t in trials:
            if "failed_trial" in t.system_attrs and t.number not in self.retries:
                self.retries.add(t.number)  # queued by Optuna's retry callback: runs on top of --trials
                self.progress.grow(1)
            if not str(t.user_attrs.get("launch", "")).startswith(self.command + "-"):
                continue
            if t.number not in self.started:
                self.started.add(t.number)
                self.progress.started({"run_dir": f"#{t.number}"})
            if t.state.is_finished() and t.number not in self.ended:
                self.ended.add(t.number)
                self.progress.finished(self.row(t))

    def row(self, t) -> dict:
        error = t.user_attrs.get("error")
        if error is None and t.state.name == "FAIL" and self.heartbeat:
            error = "no heartbeat: its worker died"
        return {"run_dir": f"#{t.number}", "status": t.state.name.lower(), "value": t.value, "error": error,
                "elapsed_s": t.duration.total_seconds() if t.duration else None, "settings": dict(t.params)}


def run_trials(plan: Plan, args: argparse.Namespace, study) -> None:
    """This command's trials (here, in worker processes, or as Ray tasks), then the trials its dead workers
    left (failed and queued again), with the progress display."""
    from optuna.trial import TrialState

    command = secrets.token_hex(4)
    slots = args.jobs if getattr(args, "executor", "local") == "ray" or args.jobs > 1 else 1
    times = [t.duration.total_seconds() for t in study.get_trials(deepcopy=False)
             if t.duration and t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    progress = SearchProgress(args.trials + queued(study), times, slots=slots)
    watch = TrialWatch(progress, command, study, plan.heartbeats)
    with progress, progress.above():
        watch(study)
        if getattr(args, "executor", "local") == "ray":
            with RayTrials(plan, args, command) as ray_trials:
                ray_trials.run(watch, study)
                settle(plan, study, command, watch)
                if queued(study):
                    ray_trials.drain(watch, study)
        else:
            if args.jobs > 1:
                run_processes(plan, args, command, watch, study)
            else:
                work(plan, args.trials, f"{command}-0", args.timeout, study=study, watch=watch)
            settle(plan, study, command, watch)
            work(plan, 0, f"{command}-drain", study=study, watch=watch, drain=True)
        watch(study)


def orphans(study, command: str) -> list:
    """This command's trials still running once its workers ended: their workers died."""
    from optuna.trial import TrialState

    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if str(t.user_attrs.get("launch", "")).startswith(command + "-")]


def settle(plan: Plan, study, command: str, watch) -> None:
    """The trials this command's dead workers left running: with a heartbeat, failed by Optuna once the grace
    period has passed since their last beat (their settings queued again); with a journal, or when the beats
    never stop (a worker this command cannot see), by the process check where it can tell."""
    if not orphans(study, command):
        return
    grace = GRACE_BEATS * plan.heartbeat
    deadline = time.monotonic() + (grace + 2 * plan.heartbeat + 5 if plan.heartbeats else 0)
    if plan.heartbeats:
        print(f"waiting up to {grace} s for the heartbeat of {len(orphans(study, command))} trial(s) whose worker "
              f"ended", flush=True)
    while orphans(study, command) and time.monotonic() < deadline:
        time.sleep(POLL_S)
        fail_stale_trials(study)
        watch(study)
    if orphans(study, command):
        reap_dead_trials(study, plan)
    watch(study)


# --jobs N on this machine -------------------------------------------------------------------------------------

def worker_command(plan: Plan, args: argparse.Namespace, threads: int) -> list[str]:
    command = [sys.executable, "-m", "transferlab.cli", "tune", args.experiment, "--study-name", plan.name,
               "--output-dir", str(plan.output_dir), "--threads", str(threads), "--search", plan.space.source,
               "--pruner", plan.pruner, "--heartbeat", str(plan.heartbeat)]
    command += (["--config", args.config] if args.config else []) + \
               (["--timeout", str(args.timeout)] if args.timeout else [])
    return command


def run_processes(plan: Plan, args: argparse.Namespace, command: str, watch, study) -> None:
    """``--jobs N``: N processes of this same command (``--worker I``, their share of the trials and of the
    threads) against the one storage, each writing to ``<study>/workers/worker-I.log``; a worker killed by a
    signal is started again for what it had left; fails (naming the logs) if any worker failed."""
    from transferlab.models.device import available_cores

    threads = max(1, (args.threads or available_cores()) // args.jobs)
    env = dict(os.environ, **{tune_storage.ENV: plan.storage_url})  # the storage (and any password) off argv
    logs = plan.directory / "workers"
    logs.mkdir(parents=True, exist_ok=True)
    argv = {i: worker_command(plan, args, threads) + ["--worker", str(i), "--trials", str(n), "--launch",
                                                      f"{command}-{i}", *args.overrides]
            for i, n in enumerate(shares(args.trials, args.jobs)) if n}

    def start(i: int) -> subprocess.Popen:
        with open(logs / f"worker-{i}.log", "a") as log:
            return subprocess.Popen(argv[i], env=env, stdout=log, stderr=subprocess.STDOUT)

    procs, restarts, failed = {i: start(i) for i in argv}, dict.fromkeys(argv, 0), {}
    try:
        while procs:
            time.sleep(POLL_S)
            watch(study)
            for i, proc in list(procs.items()):
                code = proc.poll()
                if code is None:
                    continue
                del procs[i]
                if code < 0 and code != -signal.SIGINT and restarts[i] < MAX_RESTARTS:
                    restarts[i] += 1
                    print(f"worker {i} (pid {proc.pid}) was killed ({signal.Signals(-code).name}); started again "
                          f"for the trials it had left", flush=True)
                    procs[i] = start(i)
                elif code:
                    failed[i] = code
    except BaseException:
        for proc in procs.values():  # ours alone, by their own handles
            with contextlib.suppress(OSError):
                proc.terminate()
        raise
    if failed:
        raise TransferlabError(f"{len(failed)} of {len(argv)} workers failed (exit codes {sorted(failed.values())}): "
                               f"see {logs}/worker-{min(failed)}.log; rerun the command to continue the study")


# --executor ray -------------------------------------------------------------------------------------------------

def task_options(plan: Plan, args: argparse.Namespace) -> dict:
    """The command's settings as a worker task needs them: paths made absolute, the storage left to the
    environment (``TRANSFERLAB_TUNE_STORAGE``), one worker's settings."""
    options = {k: v for k, v in vars(args).items() if k != "func"}
    config = args.config
    if config and Path(config).is_file():
        config = str(Path(config).absolute())
    options.update(storage=None, output_dir=str(Path(plan.output_dir).absolute()), config=config, jobs=1,
                   search=str(Path(plan.space.source).absolute()), executor="local", ray_address=None,
                   memory=None, compare=None, no_final=True)
    return options


def ray_trials(options: dict, worker: int, share: int, launch: str, threads: int, env: dict, cwd: str,
               drain: bool = False) -> dict:
    """A Ray task: one worker's trials (``studies.tune.work``) with the driver's offline settings, storage,
    working directory (where the node has it) and thread budget; what it ran and where."""
    from transferlab.models.device import set_threads
    from transferlab.studies.executor import this_node
    from transferlab.studies.tune import launched

    logging.getLogger("ray").setLevel(logging.WARNING)
    os.environ.update(env)
    if os.path.isdir(cwd):
        os.chdir(cwd)
    set_threads(threads)
    plan = plan_study(argparse.Namespace(**dict(options, worker=worker)))
    study = work(plan, share, launch, options.get("timeout"), drain=drain, worker=worker)
    return {"node": this_node(), "trials": launched(study, launch)}


class RayTrials(RayConnection):
    """The workers as Ray tasks (see the module's help); a context that connects to the cluster and checks that
    every node able to run a worker sees the study folder."""

    def __init__(self, plan: Plan, args: argparse.Namespace, command: str):
        from transferlab.studies.executor import import_ray

        self.plan, self.args, self.command = plan, args, command
        self.cpus, self.memory_gib = args.threads or 1, getattr(args, "memory", None)
        self.ray = import_ray()

    def __enter__(self) -> "RayTrials":
        self.plan.directory.mkdir(parents=True, exist_ok=True)
        self.open(getattr(self.args, "ray_address", None), False, "a search worker", self.plan.directory.absolute())
        return self

    def submit(self, worker: int, share: int, drain: bool = False):
        from transferlab.studies.executor import forwarded_env

        config = self.plan.config({}, trial=True, run_name=None)
        env = dict(forwarded_env(), **{tune_storage.ENV: self.plan.storage_url})
        launch = f"{self.command}-{'drain' if drain else worker}"
        options = {**self.resources(config), "retry_exceptions": False, "max_retries": MAX_RESTARTS,
                   "name": f"transferlab tune {self.plan.name} {launch}"}
        return self.ray.remote(ray_trials).options(**options).remote(
            task_options(self.plan, self.args), worker, share, launch, self.cpus, env, os.getcwd(), drain)

    def run(self, watch, study) -> None:
        refs = {self.submit(i, n): i for i, n in enumerate(shares(self.args.trials, self.args.jobs)) if n}
        self.wait(refs, watch, study)

    def drain(self, watch, study) -> None:
        self.wait({self.submit(self.args.jobs, 0, drain=True): "drain"}, watch, study)

    def wait(self, refs: dict, watch, study) -> None:
        failed = []
        try:
            while refs:
                done, _ = self.ray.wait(list(refs), num_returns=1, timeout=POLL_S)
                watch(study)
                for ref in done:
                    worker = refs.pop(ref)
                    try:
                        self.ray.get(ref)
                    except self.ray.exceptions.RayError as exc:
                        failed.append(f"worker {worker}: {ray_error(exc)}")
        except BaseException:
            for ref in refs:
                with contextlib.suppress(Exception):
                    self.ray.cancel(ref, force=True)
            raise
        if failed:
            raise TransferlabError(f"{len(failed)} Ray worker(s) failed ({failed[0]}): rerun the command to continue "
                                   f"the study")
