"""``transferlab run``: the experiments in order, one directory, one report, resumable.

Stages: features, finetune, zeroshot, lora. Overrides name their stage's config section:
``features.classifier.name=logreg``, ``finetune.training.epochs=2``, ``clip.training.epochs=3``
(``clip`` serves zeroshot and lora). Every stage config is validated before the first stage starts.
``pipeline.json`` records each stage's status and run directory (relative to the pipeline directory);
a failed stage leaves the finished stages, a report that names the failure, and ``transferlab run
--resume DIR`` continues from it. A resume may add overrides only for stages that have not completed.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import time
import traceback
from pathlib import Path

from transferlab.cli_options import add_seeds_argument, add_threads_argument
from transferlab.config import load_config, parse_overrides, to_dict
from transferlab.errors import TransferlabError
from transferlab.experiments.lifecycle import sigterm_as_interrupt, sigterm_held
from transferlab.experiments.registry import EXPERIMENTS
from transferlab.tracking.rundir import COMPLETED, FAILED, RUNNING, Run, read_json, write_json

STAGES = ("features", "finetune", "zeroshot", "lora")
STATE = "pipeline.json"


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="All experiments in order (features, finetune, zeroshot, lora) and one report.",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None, metavar="PRESET_OR_FILE",
                   help="preset (offline [default], paper) or a YAML file with features/finetune/clip sections")
    p.add_argument("--output-dir", default="logs", metavar="DIR", help="runs go to DIR/run/<name>/ (default: logs)")
    p.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue a `transferlab run` directory "
                   "from its first unfinished stage (new overrides may only touch unfinished stages)")
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}")
    add_threads_argument(p)
    add_seeds_argument(p, "run every stage once per seed (into <stage>/seed<N>/); the report gives mean ± sd")
    p.add_argument("overrides", nargs="*", metavar="section.key=value",
                   help="e.g. features.data.limit=200 finetune.training.epochs=2 clip.lora.r=4")
    p.set_defaults(func=main)


def split_overrides(pairs: list[str], stages: list[str]) -> tuple[dict[str, dict], str | None]:
    """Per-section override trees, and a top-level run_name if given."""
    known = sorted({EXPERIMENTS[s].section for s in STAGES})
    tree = parse_overrides(pairs)
    run_name = tree.pop("run_name", None)
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


def check_stages(stages: list[str]) -> list[str]:
    unknown = [s for s in stages if s not in STAGES]
    if unknown or not stages:
        raise TransferlabError(f"unknown stage(s) {', '.join(unknown) or '(none given)'}: choose from "
                               f"{', '.join(STAGES)}")
    return stages


def start(spec: str | None, output_dir, pairs: list[str], stages: list[str],
          seeds: list[int] | None = None) -> tuple[Run, dict, dict]:
    configs, run_name = load_stage_configs(spec, pairs, check_stages(stages))
    run = Run.create(output_dir, "run", run_name, {s: to_dict(c) for s, c in configs.items()},
                     default_name=Path(spec).stem if spec else "offline")
    records = [{"name": s, "status": "pending"} for s in stages] if not seeds else \
        [{"name": s, "seed": seed, "status": "pending"} for s in stages for seed in seeds]
    state = {"config": spec, "overrides": list(pairs), "seeds": seeds, "stages": records}
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
    state = read_json(pipe_dir / STATE, "pipeline state")
    stages = [s["name"] for s in state["stages"]]
    touched = {section for section, tree in split_overrides(pairs, stages)[0].items() if tree}
    done = [s["name"] for s in state["stages"] if s["status"] == COMPLETED and EXPERIMENTS[s["name"]].section in touched]
    if done:
        raise TransferlabError(f"--resume: the new overrides change the config of completed stage(s) "
                               f"{', '.join(done)}: resume without them, or start a new `transferlab run`")
    state["overrides"] = state["overrides"] + list(pairs)
    configs, _ = load_stage_configs(state["config"], state["overrides"], stages)
    run = Run(pipe_dir, "run")
    if pairs:
        run.write_config({s: to_dict(c) for s, c in configs.items()})
        for record in state["stages"]:  # a changed stage starts afresh rather than resume another config
            if record["status"] != COMPLETED and EXPERIMENTS[record["name"]].section in touched:
                record.pop("run_dir", None)
    return run, state, configs


def run_pipeline(spec: str | None, output_dir: str | Path, pairs: list[str], resume: str | None = None,
                 stages: list[str] | None = None, seeds: list[int] | None = None) -> Path:
    if resume and seeds:
        raise TransferlabError("--seeds cannot change on --resume: the run keeps the seeds it started with")
    with sigterm_as_interrupt(), sigterm_held() as release:  # status.json never says "running" unguarded
        run, state, configs = reopen(Path(resume), pairs) if resume else start(spec, output_dir, pairs,
                                                                              stages or list(STAGES), seeds)
        write_json(run.path / STATE, state)
        print(f"pipeline directory: {run.path}")
        run.set_status(RUNNING)
        try:
            release()
            for i, record in enumerate(state["stages"], 1):
                if record["status"] == COMPLETED:
                    print(f"== stage {i}/{len(state['stages'])}: {label(record)} already completed "
                          f"({record['run_dir']})")
                    continue
                print(f"== stage {i}/{len(state['stages'])}: {label(record)}", flush=True)
                run_stage(run, state, record, stage_config(configs, record))
                print(f"== {label(record)} done in {record['elapsed_s']:.1f}s: {record['run_dir']}", flush=True)
            report = write_pipeline_report(run.path, state)
            run.set_status(COMPLETED)
        except KeyboardInterrupt as exc:  # between stages or in the report (a stage records its own)
            if run.status().get("status") == RUNNING:
                run.set_status(FAILED, error=f"{exc.__class__.__name__}: {exc}")
            raise
    print(f"report: {report}")
    return run.path


def run_stage(run: Run, state: dict, record: dict, config) -> None:
    """One stage; its run directory comes from the runner (or, on failure, from the exception it raised)."""
    experiment = EXPERIMENTS[record["name"]]
    previous = run.path / record["run_dir"] if record.get("run_dir") else None
    resume = previous if experiment.resumable and previous and any(previous.glob("checkpoints/checkpoint-*")) else None
    if previous is not None and resume is None and previous.is_dir():
        set_aside(previous)  # a failed attempt that cannot be continued: kept, and its name freed for the new one
    begin = time.perf_counter()
    record.update(status=RUNNING, error=None)
    write_json(run.path / STATE, state)
    try:
        stage_dir = experiment.run(config, run.path, resume=str(resume) if resume else None)
    except (Exception, KeyboardInterrupt) as exc:
        stage_dir = getattr(exc, "run_dir", None)
        record.update(status=FAILED, error=f"{exc.__class__.__name__}: {exc}",
                      elapsed_s=round(time.perf_counter() - begin, 1))
        if stage_dir is not None:
            record["run_dir"] = relative(stage_dir, run.path)
        if not isinstance(exc, (TransferlabError, KeyboardInterrupt)):
            (run.path / f"{record['name']}-error.log").write_text(traceback.format_exc())
        fail(run, state, record, exc)
    record.update(status=COMPLETED, run_dir=relative(stage_dir, run.path),
                  elapsed_s=round(time.perf_counter() - begin, 1))
    write_json(run.path / STATE, state)
    gc.collect()


def set_aside(folder: Path) -> Path:
    """Rename a failed stage's directory to ``<name>.failed`` (``.failed-2``, ...) and say so."""
    target = folder.with_name(folder.name + ".failed")
    for i in range(2, 1000):
        if not target.exists():
            break
        target = folder.with_name(f"{folder.name}.failed-{i}")
    folder.rename(target)
    print(f"note: the failed attempt {folder.name} is kept as {target.name}; starting the stage afresh")
    return target


def relative(path: str | Path, root: Path) -> str:
    return Path(path).resolve().relative_to(root.resolve()).as_posix()


def stage_dirs(pipe_dir: Path, state: dict) -> list[Path]:
    """The stage run directories recorded in a pipeline's state, inside ``pipe_dir``."""
    return [pipe_dir / s["run_dir"] for s in state["stages"] if s.get("run_dir") and (pipe_dir / s["run_dir"]).is_dir()]


def write_pipeline_report(pipe_dir: Path, state: dict) -> Path:
    from transferlab.reporting.report import write_report

    stages = [{"stage": label(s), "status": s["status"], "elapsed_s": s.get("elapsed_s"),
               "run_dir": s.get("run_dir"), "error": s.get("error")} for s in state["stages"]]
    notes = []
    if any(s["status"] == FAILED for s in state["stages"]):
        notes.append(f"Continue from the failed stage with: transferlab run --resume {pipe_dir}")
    return write_report(stage_dirs(pipe_dir, state), pipe_dir, notes, stages=stages)


def fail(run: Run, state: dict, record: dict, exc: BaseException) -> None:
    """Record the failure, write the report of what finished, and stop with one line (Ctrl-C re-raised)."""
    write_json(run.path / STATE, state)
    run.set_status(FAILED, error=f"stage {record['name']}: {record['error']}")
    report = write_pipeline_report(run.path, state)
    if isinstance(exc, KeyboardInterrupt):
        raise exc
    log = run.path / f"{record['name']}-error.log"
    detail = f" (traceback in {log})" if log.is_file() else ""
    raise TransferlabError(f"stage {record['name']} failed: {exc}{detail}. Finished stages and a report are in "
                           f"{report.parent}; continue with: transferlab run --resume {run.path}") from None


def main(args: argparse.Namespace) -> Path:
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    return run_pipeline(args.config, args.output_dir, args.overrides, args.resume, stages, args.seeds)
