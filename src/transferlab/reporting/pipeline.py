"""A ``transferlab run`` pipeline in a report: its stage table and notes as blocks (:func:`pipeline_blocks`),
and the report the pipeline writes of its own stages (:func:`write_pipeline_report`, the callback
``studies.pipeline.run_pipeline`` is handed)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

from transferlab.config import load_yaml
from transferlab.reporting.analysis import data_folders
from transferlab.reporting.report import write_report
from transferlab.reporting.tables import STAGE_HEADERS, stage_rows
from transferlab.studies.pipeline import pipeline_summary, stage_dirs


def pipeline_blocks(stages: Sequence[dict], notes: Sequence[str] = ()) -> list[tuple]:
    """The stage table (stage, status, elapsed_s, run_dir, error of each) and the notes (the resume hint)."""
    blocks: list[tuple] = [("h2", "Stages"), ("table", STAGE_HEADERS, stage_rows(stages))] if stages else []
    return blocks + [("p", note) for note in notes]


def own_data_folders(pipe_dir: Path) -> list[Path]:
    """The image data folders of the configs this pipeline ran (its ``config.yaml``, written by the process from
    the user's command, one section per stage)."""
    path = pipe_dir / "config.yaml"
    configs = load_yaml(path.read_text()) if path.is_file() and not path.is_symlink() else None
    return data_folders(v for v in configs.values() if isinstance(v, dict)) if isinstance(configs, dict) else []


def write_pipeline_report(pipe_dir: Path, state: dict, image_roots: Iterable[str | Path] | None = None) -> Path:
    """``report.md`` / ``report.html`` in ``pipe_dir`` from its recorded state; returns the HTML path.

    The pipeline's own report, written by the process that ran its stages: with ``image_roots`` ``None`` the
    thumbnails may come from the data folders of the configs it ran (``own_data_folders``). ``transferlab
    report PIPE_DIR`` does not call this: it never vouches for folders a received pipeline names."""
    pipe_dir = Path(pipe_dir)
    stages, notes = pipeline_summary(pipe_dir, state)
    roots = own_data_folders(pipe_dir) if image_roots is None else list(image_roots)
    return write_report(stage_dirs(pipe_dir, state), pipe_dir, pipeline_blocks(stages, notes), roots)
