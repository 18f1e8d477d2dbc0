"""``transferlab run``: the three experiments in order, one directory, one report, resumable.

Stages: features, finetune, zeroshot, lora. Overrides name their stage's config section:
``features.classifier.name=logreg``, ``finetune.training.epochs=2``, ``clip.training.epochs=3``
(``clip`` serves zeroshot and lora). Every stage config is validated before the first stage starts.
``pipeline.json`` records each stage's status and run directory; a failed stage leaves the finished
stages, a report that names the failure, and ``transferlab run --resume DIR`` continues from it.
"""

from __future__ import annotations

import argparse
import gc
import time
import traceback
from pathlib import Path

from transferlab.config import load_config, parse_overrides, to_dict
from transferlab.errors import TransferlabError
from transferlab.runs import Run, read_json, write_json

STAGES = ("features", "finetune", "zeroshot", "lora")


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="All experiments in order (features, finetune, zeroshot, lora) and one report.",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None, metavar="PRESET_OR_FILE",
                   help="preset (offline [default], paper) or a YAML file with features/finetune/clip sections")
    p.add_argument("--output-dir", default="logs", metavar="DIR", help="runs go to DIR/run/<name>/ (default: logs)")
    p.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue a `transferlab run` directory "
                   "from its first unfinished stage (new overrides are applied on top of the stored ones)")
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}")
    p.add_argument("overrides", nargs="*", metavar="section.key=value",
                   help="e.g. features.data.limit=200 finetune.training.epochs=2 clip.lora.r=4")
    p.set_defaults(func=main)


def stage_table() -> dict[str, tuple[str, str, str]]:
    from transferlab.cli import EXPERIMENTS

    return {name: EXPERIMENTS[name][:3] for name in STAGES}


def split_overrides(pairs: list[str], stages: list[str]) -> tuple[dict[str, dict], str | None]:
    """Per-section override trees, and a top-level run_name if given."""
    table = stage_table()
    known = sorted({section for section, _, _ in table.values()})
    tree = parse_overrides(pairs)
    run_name = tree.pop("run_name", None)
    for key in tree:
        if key not in known:
            raise TransferlabError(f"override {key!r}... names no stage section: prefix overrides with one of "
                                   f"{', '.join(known)} (e.g. features.data.limit=200)")
    return {table[s][0]: tree.get(table[s][0], {}) for s in stages}, run_name


def load_stage_configs(spec: str | None, pairs: list[str], stages: list[str]) -> tuple[dict, str | None]:
    from transferlab.cli import load_object

    per_section, run_name = split_overrides(pairs, stages)
    table = stage_table()
    configs = {}
    for stage in stages:
        section, config_spec, _ = table[stage]
        configs[stage] = load_config(load_object(config_spec), section, spec, per_section[section])
    return configs, run_name


def run_stage(stage: str, config, out: Path, previous: dict) -> Path:
    from transferlab.cli import load_object

    runner = load_object(stage_table()[stage][2])
    kwargs = {}
    if stage == "finetune" and previous.get("run_dir") and any(Path(previous["run_dir"]).glob("checkpoints/checkpoint-*")):
        kwargs["resume"] = previous["run_dir"]  # continue its checkpoints rather than start over
    return Path(runner(config, out, **kwargs))


def run_pipeline(spec: str | None, output_dir: str | Path, pairs: list[str], resume: str | None = None,
                 stages: list[str] | None = None) -> Path:
    if resume:
        pipe_dir = Path(resume)
        if not (pipe_dir / "pipeline.json").is_file():
            raise TransferlabError(f"{pipe_dir} is not a `transferlab run` directory (no pipeline.json): "
                                   f"pass the directory an earlier `transferlab run` printed")
        state = read_json(pipe_dir / "pipeline.json")
        spec, pairs = state["config"], state["overrides"] + list(pairs)
        stages = [s["name"] for s in state["stages"]]
        configs, _ = load_stage_configs(spec, pairs, stages)
        run = Run(pipe_dir, "run")
        state["overrides"] = pairs
    else:
        stages = stages or list(STAGES)
        unknown = [s for s in stages if s not in STAGES]
        if unknown:
            raise TransferlabError(f"unknown stage(s) {', '.join(unknown)}: choose from {', '.join(STAGES)}")
        configs, run_name = load_stage_configs(spec, pairs, stages)
        run = Run.create(output_dir, "run", run_name, {s: to_dict(c) for s, c in configs.items()},
                         default_name=Path(spec).stem if spec else "offline")
        state = {"config": spec, "overrides": list(pairs),
                 "stages": [{"name": s, "status": "pending"} for s in stages]}
    write_json(run.path / "pipeline.json", state)
    print(f"pipeline directory: {run.path}")
    run.set_status("running")
    for i, record in enumerate(state["stages"], 1):
        if record["status"] == "completed":
            print(f"== stage {i}/{len(stages)}: {record['name']} already completed ({record['run_dir']})")
            continue
        print(f"== stage {i}/{len(stages)}: {record['name']}", flush=True)
        start = time.perf_counter()
        record.update(status="running", error=None)
        write_json(run.path / "pipeline.json", state)
        try:
            stage_dir = run_stage(record["name"], configs[record["name"]], run.path, record)
        except (Exception, KeyboardInterrupt) as exc:
            record.update(status="failed", error=f"{exc.__class__.__name__}: {exc}",
                          elapsed_s=round(time.perf_counter() - start, 1),
                          run_dir=latest_stage_dir(run.path, record["name"]) or record.get("run_dir"))
            if not isinstance(exc, (TransferlabError, KeyboardInterrupt)):
                (run.path / f"{record['name']}-error.log").write_text(traceback.format_exc())
            fail(run, state, record, exc)
        record.update(status="completed", run_dir=str(stage_dir), elapsed_s=round(time.perf_counter() - start, 1))
        write_json(run.path / "pipeline.json", state)
        gc.collect()
        print(f"== {record['name']} done in {record['elapsed_s']:.1f}s: {record['run_dir']}", flush=True)
    report = write_pipeline_report(run.path, state)
    run.set_status("completed")
    print(f"report: {report}")
    return run.path


def latest_stage_dir(pipe_dir: Path, stage: str) -> str | None:
    folders = sorted((pipe_dir / stage).glob("*/")) if (pipe_dir / stage).is_dir() else []
    return str(folders[-1]) if folders else None


def write_pipeline_report(pipe_dir: Path, state: dict) -> Path:
    from transferlab.reporting.report import write_report

    notes = [f"Stage {s['name']}: {s['status']}" + (f" after {s['elapsed_s']}s" if s.get("elapsed_s") else "")
             + (f". FAILED: {s['error']}" if s["status"] == "failed" else "") for s in state["stages"]]
    if any(s["status"] == "failed" for s in state["stages"]):
        notes.append(f"Continue from the failed stage with: transferlab run --resume {pipe_dir}")
    dirs = [s["run_dir"] for s in state["stages"] if s.get("run_dir") and Path(s["run_dir"]).is_dir()]
    return write_report(dirs, pipe_dir, notes)


def fail(run: Run, state: dict, record: dict, exc: BaseException) -> None:
    """Record the failure, write the report of what finished, and stop with one line (Ctrl-C re-raised)."""
    write_json(run.path / "pipeline.json", state)
    run.set_status("failed", error=f"stage {record['name']}: {record['error']}")
    report = write_pipeline_report(run.path, state)
    if isinstance(exc, KeyboardInterrupt):
        raise exc
    log = run.path / f"{record['name']}-error.log"
    detail = f" (traceback in {log})" if log.is_file() else ""
    raise TransferlabError(f"stage {record['name']} failed: {exc}{detail}. Finished stages and a report are in "
                           f"{report.parent}; continue with: transferlab run --resume {run.path}") from None


def main(args: argparse.Namespace) -> Path:
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    return run_pipeline(args.config, args.output_dir, args.overrides, args.resume, stages)
