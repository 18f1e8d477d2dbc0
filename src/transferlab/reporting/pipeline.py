"""The report of a ``transferlab run`` directory: its stages' runs, the stage table and the resume hint."""

from __future__ import annotations

from pathlib import Path

from transferlab.reporting.report import write_report
from transferlab.studies.pipeline import pipeline_summary, stage_dirs


def write_pipeline_report(pipe_dir: Path, state: dict) -> Path:
    """``report.md`` / ``report.html`` in ``pipe_dir`` from its recorded state (``pipeline.json``)."""
    stages, notes = pipeline_summary(pipe_dir, state)
    return write_report(stage_dirs(pipe_dir, state), pipe_dir, notes, stages=stages)
