"""Checkpoints in ``<run>/checkpoints/checkpoint-<step>`` and finding the run a ``--resume`` continues."""

from __future__ import annotations

import json
from pathlib import Path

from transferlab.config import load_yaml
from transferlab.errors import TransferlabError
from transferlab.tracking.rundir import CHECKPOINT_INFO, CHECKPOINTS, list_checkpoints  # noqa: F401 (re-exported)

# Settings that do not change what a run computes: a run with only these different is "the same config".
IGNORED_KEYS = ("run_name", "source", "tracking", "resolved", "environment")
# The adapter settings that decide which parameters a checkpoint holds and their shapes (``lora.<key>``).
ADAPTER_SHAPE_KEYS = ("variant", "r", "target_modules", "towers", "layers", "text_layers", "head_modules",
                      "train_projection")
UNRANKED = ("ia3", "ln_tuning")  # variants without a rank


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def checkpoint_step(checkpoint: str | Path) -> int:
    return int(json.loads((Path(checkpoint) / "trainer_state.json").read_text())["global_step"])


def comparable(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in IGNORED_KEYS}


def read_run_config(run_dir: Path) -> dict:
    return load_yaml((run_dir / "config.yaml").read_text()) or {}


def is_completed(run_dir: Path) -> bool:
    return (run_dir / "metrics.json").is_file()


def find_resume_run(output_dir: str | Path, experiment: str, config: dict, target: str) -> Path:
    """The run a ``--resume`` continues: ``target`` is ``latest`` (newest unfinished run of the same config)
    or a run directory. Raises a one-line error when there is nothing to resume."""
    if target != "latest":
        run_dir = Path(target)
        if not (run_dir / "config.yaml").is_file():
            raise TransferlabError(f"--resume {target}: not a transferlab run directory (no config.yaml); "
                                   f"pass a folder printed by a previous run")
        if is_completed(run_dir):
            raise TransferlabError(f"--resume {target}: that run already completed (metrics.json exists); "
                                   f"nothing to resume")
    else:
        root = Path(output_dir) / experiment
        runs = [p for p in root.iterdir() if (p / "config.yaml").is_file()] if root.is_dir() else []
        same = [p for p in runs if comparable(read_run_config(p)) == comparable(config) and not is_completed(p)]
        if not same:
            raise TransferlabError(f"--resume: no unfinished {experiment} run with this config under {root}: "
                                   f"start without --resume, or pass --resume RUN_DIR")
        run_dir = max(same, key=lambda p: (p / "config.yaml").stat().st_mtime)
    if latest_checkpoint(run_dir) is None:
        raise TransferlabError(f"--resume: run {run_dir} has no checkpoint to resume from (it stopped before "
                               f"the first save): start it again without --resume")
    return run_dir


def resume_target(output_dir: str | Path, experiment: str, config: dict, info: dict,
                  resume: str | None) -> tuple[Path | None, Path | None]:
    """(run directory, its newest complete checkpoint) a ``--resume`` continues, the checkpoint checked against
    this run's model, method, adapter and labels (``info``); ``(None, None)`` without ``resume``."""
    if not resume:
        return None, None
    run_dir = find_resume_run(output_dir, experiment, config, resume)
    checkpoint = latest_checkpoint(run_dir)
    check_compatible(checkpoint, info)
    return run_dir, checkpoint


def config_differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """``key: old -> new`` for every setting that differs (nested keys dotted)."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


def checkpoint_info(checkpoint: Path) -> dict:
    """What a checkpoint was trained from (written by ``CheckpointInfoCallback``); ``{}`` if unknown."""
    path = Path(checkpoint) / CHECKPOINT_INFO
    return json.loads(path.read_text()) if path.is_file() else {}


def adapter_info(settings) -> dict:
    """What defines an adapter's parameters (``lora.variant`` and the ``ADAPTER_SHAPE_KEYS`` its settings
    have; no rank for IA3 and LN tuning), for a checkpoint's info and ``check_compatible``."""
    keys = [k for k in ADAPTER_SHAPE_KEYS if hasattr(settings, k) and not (k == "r" and settings.variant in UNRANKED)]
    return json.loads(json.dumps({k: getattr(settings, k) for k in keys}))  # as a checkpoint's JSON holds it


def check_compatible(checkpoint: Path, info: dict) -> None:
    """Refuse a checkpoint of another model, method, adapter or label set before loading it (one-line error).

    ``info`` holds this run's ``model``, ``architecture``, ``method``, ``label_names`` and, for adapters,
    ``adapter`` (``adapter_info``)."""
    saved = checkpoint_info(checkpoint)
    if not saved:
        raise TransferlabError(f"--resume: checkpoint {checkpoint} has no {CHECKPOINT_INFO}, so it was not "
                               f"written by transferlab: start a new run")
    for key in ("model", "architecture", "method"):
        if saved.get(key) != info.get(key):
            fix = f"method={saved.get('method')}" if key == "method" else f"model={saved.get('model')}"
            raise TransferlabError(f"--resume: checkpoint {checkpoint} was trained with {key} {saved.get(key)!r}, "
                                   f"not {info.get(key)!r}: resume with {fix}, or start a new run")
    if "adapter" in saved:  # recorded since adapters were checked (an older checkpoint's is its method alone)
        check_adapter(checkpoint, saved["adapter"], info.get("adapter"))
    if list(saved.get("label_names", [])) != list(info.get("label_names", [])):
        raise TransferlabError(f"--resume: checkpoint {checkpoint} has labels {saved.get('label_names')}, the data "
                               f"has {info.get('label_names')}: resume with the run's data, or start a new run")


def check_adapter(checkpoint: Path, saved: dict | None, wanted: dict | None) -> None:
    """The first adapter setting (variant first) that differs between a checkpoint and this run, as one line."""
    saved, wanted = saved or {}, wanted or {}
    for key in sorted(set(saved) | set(wanted), key=lambda k: (k != "variant", k)):
        if saved.get(key) != wanted.get(key):
            raise TransferlabError(f"--resume: checkpoint {checkpoint} was trained with lora.{key} {saved.get(key)!r}, "
                                   f"not {wanted.get(key)!r}: resume with lora.{key}={saved.get(key)}, or start a new "
                                   f"run")
