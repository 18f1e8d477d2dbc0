"""``transferlab run``: the experiments in order, one directory, one report, resumable.

Stages: features, finetune, zeroshot, lora. Overrides name their stage's config section:
``features.classifier.name=logreg``, ``finetune.training.epochs=2``, ``clip.training.epochs=3``
(``clip`` serves zeroshot and lora). Every stage config is validated before the first stage starts.
``pipeline.json`` records each stage's status and run directory (relative to the pipeline directory);
a failed stage leaves the finished stages, a report that names the failure, and ``transferlab run
--resume DIR`` continues from it. A resume may add overrides only for stages that have not completed.

One process at a time works on a pipeline directory (a lock on ``pipeline.lock``). A stage's run directory
is recorded the moment it exists, so a run killed outright (SIGKILL, a lost machine) resumes its fine-tune
stage from the last complete checkpoint, and the killed stage is marked ``failed: killed``. Data and model
paths are recorded resolved (``paths`` in ``pipeline.json`` keeps the form given), so a resume from another
working directory reads the same files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
import time
import traceback
from pathlib import Path
from typing import Callable

from transferlab.config import check_run_name, load_config, parse_overrides, replace_at, to_dict, value_at
from transferlab.errors import TransferlabError
from transferlab.experiments.lifecycle import announce_runs, sigterm_as_interrupt, sigterm_held
from transferlab.experiments.registry import EXPERIMENTS, default_stages, stages as registered_stages
from transferlab.tracking.ledger import Ledger, next_attempt
from transferlab.tracking.liveness import Heartbeat
from transferlab.tracking.rundir import COMPLETED, FAILED, RUNNING, Run

STATE = "pipeline.json"
Reporter = Callable[[Path, dict], Path]  # (pipeline directory, its state) -> the report written


def split_overrides(pairs: list[str], stages: list[str]) -> tuple[dict[str, dict], str | None]:
    """Per-section override trees, and a top-level run_name if given."""
    known = sorted({EXPERIMENTS[s].section for s in registered_stages()})
    tree = parse_overrides(pairs)
    run_name = tree.pop("run_name", None)
    if run_name is not None:
        run_name = check_run_name(str(run_name))
    for key in tree:
        if key not in known:
            raise TransferlabError(f"override {key!r}... names no stage section: prefix overrides with one of "
                                   f"{', '.join(known)} (e.g. features.data.limit=200)")
    return {EXPERIMENTS[s].section: tree.get(EXPERIMENTS[s].section, {}) for s in stages}, run_name


def load_stage_configs(spec: str | None, pairs: list[str], stages: list[str]) -> tuple[dict, str | None]:
    """Every stage's typed, validated config, before any stage starts."""
    per_section, run_name = split_overrides(pairs, stages)
    configs = {}
    for stage in stages:
        experiment = EXPERIMENTS[stage]
        configs[stage] = load_config(experiment.config_class(), experiment.section, spec, per_section[experiment.section])
    return configs, run_name


def parse_stages(text: str) -> list[str]:
    """``--stages features,lora`` -> ``["features", "lora"]``; empty, unknown or repeated names are refused."""
    stages = [s.strip() for s in text.split(",")]
    unknown = list(dict.fromkeys(s or "(an empty name)" for s in stages if s not in EXPERIMENTS))
    if unknown:
        raise TransferlabError(f"--stages {text!r}: unknown stage(s) {', '.join(unknown)}: give a comma-separated "
                               f"subset of {','.join(registered_stages())}")
    repeated = sorted({s for s in stages if stages.count(s) > 1})
    if repeated:
        raise TransferlabError(f"--stages {text!r} names {', '.join(repeated)} more than once: give each stage once "
                               f"(--seeds runs a stage several times)")
    return stages


def check_stages(stages: list[str]) -> list[str]:
    return parse_stages(",".join(stages))


def resolve_path(value: str | None, base: Path, model: bool = False) -> str | None:
    """``value`` as an absolute path against ``base``; a model reference only when it names an existing folder
    there (else it is a Hub id or ``pypi:`` reference, kept as is)."""
    if not value or ":" in value.split("/")[0]:
        return value
    path = Path(value).expanduser()
    target = path if path.is_absolute() else base / path
    if model and not target.exists():
        return value
    return os.path.normpath(target)


def absolute_paths(configs: dict, base: Path) -> tuple[dict, dict]:
    """Every stage config with its path settings resolved against ``base``, and ``{stage: {key: {"given",
    "resolved"}}}`` for the ones that changed."""
    out, record = {}, {}
    for stage, config in configs.items():
        experiment = EXPERIMENTS[stage]
        for key in experiment.path_keys + experiment.model_keys:
            given = value_at(config, key)
            resolved = resolve_path(given, base, model=key in experiment.model_keys)
            if resolved != given:
                config = replace_at(config, key, resolved)
                record.setdefault(stage, {})[key] = {"given": given, "resolved": resolved}
        out[stage] = config
    return out, record


def absolute_overrides(pairs: list[str]) -> list[str]:
    """``section.key=relative/path`` overrides of path settings made absolute against the working directory."""
    out = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        section, _, rest = key.strip().partition(".")
        keys = {k: model for e in EXPERIMENTS.values() if e.section == section
                for model, group in ((False, e.path_keys), (True, e.model_keys)) for k in group}
        if sep and rest in keys:
            value = resolve_path(value, Path.cwd(), model=keys[rest]) or value
        out.append(f"{key}{sep}{value}")
    return out


def start(spec: str | None, output_dir, pairs: list[str], stages: list[str],
          seeds: list[int] | None = None) -> tuple[Run, dict, dict]:
    configs, run_name = load_stage_configs(spec, pairs, check_stages(stages))
    configs, paths = absolute_paths(configs, Path.cwd())
    run = Run.create(output_dir, "run", run_name, {s: to_dict(c) for s, c in configs.items()},
                     default_name=Path(spec).stem if spec else "offline")
    records = [{"name": s, "status": "pending"} for s in stages] if not seeds else \
        [{"name": s, "seed": seed, "status": "pending"} for s in stages for seed in seeds]
    config_file = spec and (Path(spec).suffix in (".yaml", ".yml") or Path(spec).is_file())
    state = {"config": str(Path(spec).resolve()) if config_file else spec, "config_given": spec,
             "cwd": str(Path.cwd()), "overrides": list(pairs), "seeds": seeds, "stages": records, "paths": paths}
    return run, state, configs


def stage_config(configs: dict, record: dict):
    """The stage's config; with ``--seeds``, its seed and the run name ``seed<N>``."""
    config = configs[record["name"]]
    if "seed" not in record:
        return config
    return dataclasses.replace(config, seed=record["seed"], run_name=f"seed{record['seed']}")


def label(record: dict) -> str:
    return record["name"] + (f" (seed {record['seed']})" if "seed" in record else "")


def reopen(pipe_dir: Path, pairs: list[str]) -> tuple[Run, dict, dict]:
    """The stored state and configs, with new overrides only where no finished stage would change."""
    if not (pipe_dir / STATE).is_file():
        raise TransferlabError(f"{pipe_dir} is not a `transferlab run` directory (no {STATE}): "
                               f"pass the directory an earlier `transferlab run` printed")
    state = ledger(pipe_dir).read()
    stages = [s["name"] for s in state["stages"]]
    touched = {section for section, tree in split_overrides(pairs, stages)[0].items() if tree}
    done = [s["name"] for s in state["stages"] if s["status"] == COMPLETED and EXPERIMENTS[s["name"]].section in touched]
    if done:
        raise TransferlabError(f"--resume: the new overrides change the config of completed stage(s) "
                               f"{', '.join(done)}: resume without them, or start a new `transferlab run`")
    state["overrides"] = state["overrides"] + absolute_overrides(pairs)  # new ones are the new directory's
    configs, _ = load_stage_configs(state["config"], state["overrides"], stages)
    configs, _ = absolute_paths(configs, Path(state.get("cwd") or Path.cwd()))  # old ones, where they were given
    run = Run(pipe_dir, "run")
    if pairs:
        run.write_config({s: to_dict(c) for s, c in configs.items()})
        for record in state["stages"]:  # a changed stage starts afresh rather than resume another config
            if record["status"] != COMPLETED and EXPERIMENTS[record["name"]].section in touched:
                record.pop("run_dir", None)
    return run, state, configs


def run_pipeline(spec: str | None, output_dir: str | Path, pairs: list[str], resume: str | None = None,
                 stages: list[str] | None = None, seeds: list[int] | None = None, *,
                 report: Reporter) -> Path:
    """Run (or ``resume``) a pipeline; ``report(pipe_dir, state)`` writes its report after the last stage and
    after a failed one (the reporting layer's ``write_pipeline_report``, handed in from above)."""
    if resume and seeds:
        raise TransferlabError("--seeds cannot change on --resume: the run keeps the seeds it started with")
    with contextlib.ExitStack() as stack:
        stack.enter_context(sigterm_as_interrupt())
        release = stack.enter_context(sigterm_held())  # status.json never says "running" unguarded
        if resume:
            stack.enter_context(locked(Path(resume)))
            run, state, configs = reopen(Path(resume), pairs)
            ledger(run.path).take_over(run, state)
        else:
            run, state, configs = start(spec, output_dir, pairs, stages or list(default_stages()), seeds)
            ledger(run.path).write(state)
            stack.enter_context(locked(run.path))
        ledger(run.path).write(state)
        print(f"pipeline directory: {run.path}")
        run.set_status(RUNNING)
        stack.enter_context(Heartbeat(run))
        try:
            release()
            report_file = run_stages(run, state, configs, report)
            run.set_status(COMPLETED)
        except KeyboardInterrupt as exc:  # between stages or in the report (a stage records its own)
            if run.status().get("status") == RUNNING:
                run.set_status(FAILED, error=f"{exc.__class__.__name__}: {exc}")
            raise
    print(f"report: {report_file}")
    return run.path


def run_stages(run: Run, state: dict, configs: dict, report: Reporter) -> Path:
    for i, record in enumerate(state["stages"], 1):
        if record["status"] == COMPLETED:
            print(f"== stage {i}/{len(state['stages'])}: {label(record)} already completed ({record['run_dir']})")
            continue
        print(f"== stage {i}/{len(state['stages'])}: {label(record)}", flush=True)
        run_stage(run, state, record, stage_config(configs, record), report)
        print(f"== {label(record)} done in {record['elapsed_s']:.1f}s: {record['run_dir']}", flush=True)
    return report(run.path, state)


def ledger(pipe_dir: Path) -> Ledger:
    return Ledger(Path(pipe_dir), "pipeline", "stages", EXPERIMENTS, "pipeline directory")


@contextlib.contextmanager
def locked(pipe_dir: Path):
    """Inside: this process alone works on ``pipe_dir``; a second ``transferlab run --resume`` of it is refused
    with one line."""
    book = ledger(pipe_dir)
    if not book.exists():  # not a pipeline directory (yet): nothing to lock, reopen says so
        yield
        return
    holder = Run(pipe_dir, "run").status()
    with book.locked(f"{pipe_dir} is in use by another `transferlab run` (pid {holder.get('pid', '?')} on "
                     f"{holder.get('host', '?')}): wait for it to finish, then resume"):
        yield


def run_stage(run: Run, state: dict, record: dict, config, report: Reporter) -> None:
    """One stage; its run directory is recorded as soon as the runner creates it (see ``announce_runs``)."""
    experiment = EXPERIMENTS[record["name"]]
    previous = run.path / record["run_dir"] if record.get("run_dir") else None
    resume = next_attempt(previous, experiment.resumable) if previous is not None else None
    begin = time.perf_counter()
    record.update(status=RUNNING, error=None)
    ledger(run.path).write(state)

    def created(path: Path) -> None:
        record["run_dir"] = relative(path, run.path)
        ledger(run.path).write(state)

    try:
        with announce_runs(created):
            stage_dir = experiment.run(config, run.path, resume=resume)
    except (Exception, KeyboardInterrupt) as exc:
        stage_dir = getattr(exc, "run_dir", None)
        record.update(status=FAILED, error=f"{exc.__class__.__name__}: {exc}",
                      elapsed_s=round(time.perf_counter() - begin, 1))
        if stage_dir is not None:
            record["run_dir"] = relative(stage_dir, run.path)
        if not isinstance(exc, (TransferlabError, KeyboardInterrupt)):
            (run.path / f"{record['name']}-error.log").write_text(traceback.format_exc())
        fail(run, state, record, exc, report)
    record.update(status=COMPLETED, run_dir=relative(stage_dir, run.path),
                  elapsed_s=round(time.perf_counter() - begin, 1))
    ledger(run.path).write(state)
    gc.collect()


def relative(path: str | Path, root: Path) -> str:
    return Path(path).resolve().relative_to(root.resolve()).as_posix()


def stage_dirs(pipe_dir: Path, state: dict) -> list[Path]:
    """The stage run directories recorded in a pipeline's state, inside ``pipe_dir``."""
    return [pipe_dir / s["run_dir"] for s in state["stages"] if s.get("run_dir") and (pipe_dir / s["run_dir"]).is_dir()]


def pipeline_summary(pipe_dir: Path, state: dict) -> tuple[list[dict], list[str]]:
    """The stage table and the notes (the resume hint) of a pipeline's report; ``transferlab report
    PIPELINE_DIR`` rebuilds the same from pipeline.json."""
    stages = [{"stage": label(s), "status": s["status"], "elapsed_s": s.get("elapsed_s"),
               "run_dir": s.get("run_dir"), "error": s.get("error")} for s in state["stages"]]
    notes = []
    if any(s["status"] == FAILED for s in state["stages"]):
        notes.append(f"Continue from the failed stage with: transferlab run --resume {pipe_dir}")
    return stages, notes


def fail(run: Run, state: dict, record: dict, exc: BaseException, report: Reporter) -> None:
    """Record the failure, write the report of what finished, and stop with one line (Ctrl-C re-raised)."""
    ledger(run.path).write(state)
    run.set_status(FAILED, error=f"stage {record['name']}: {record['error']}")
    report_file = report(run.path, state)
    if isinstance(exc, KeyboardInterrupt):
        raise exc
    log = run.path / f"{record['name']}-error.log"
    detail = f" (traceback in {log})" if log.is_file() else ""
    raise TransferlabError(f"stage {record['name']} failed: {exc}{detail}. Finished stages and a report are in "
                           f"{report_file.parent}; continue with: transferlab run --resume {run.path}") from None
