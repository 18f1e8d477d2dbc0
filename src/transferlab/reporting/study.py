"""A label-budget study in a report: its section as blocks (:func:`study_blocks`), and the study's own report
(:func:`write_study_report`: the section handed to ``write_report`` over its full-data cells).

The caller says which folder is a study; nothing here guesses it from a folder's contents. The study's state is
read through the studies' ledger (``studies.shots.read_study``: shape checked, every cell's folder inside the
study, cells a killed study left running named dead).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from transferlab.reporting.curves import class_counts, curve_points, curve_section, per_class
from transferlab.reporting.leaderboard import leaderboard_blocks
from transferlab.reporting.model_pairs import model_pair_blocks
from transferlab.reporting.output import report_assets
from transferlab.reporting.report import write_report
from transferlab.studies.results import RESULTS, read_results
from transferlab.studies.shots import STATE, cell_dirs, read_study


def study_blocks(study_dir: str | Path, assets: Path) -> list[tuple]:
    """The report section of the study in ``study_dir`` (curves saved into ``assets``): its cells' progress, a
    learning curve and a table per K for each data set, the failed and dead cells; nothing when it holds no
    study."""
    study_dir = Path(study_dir)
    if not (study_dir / STATE).is_file():
        return []
    state, notes = read_study(study_dir)
    done = sum(c["status"] == "completed" for c in state["cells"])
    blocks: list[tuple] = [("h2", "Label-budget study"),
                           ("p", f"{done} of {len(state['cells'])} cells completed; draws "
                                 f"{'nested' if state.get('nested') else 'independent'}, seeds: {state.get('seeds')}; "
                                 f"every cell scored on the whole test split. Figures: {study_dir / RESULTS}.")]
    if (study_dir / RESULTS).is_file():
        counts = class_counts(study_dir, state)
        curves = curve_points(read_results(study_dir), per_class(study_dir, state), by="dataset")
        for dataset, methods in sorted(curves.items()):
            blocks += curve_section(dataset, methods, assets, counts.get(dataset))
        blocks += model_pair_blocks(study_dir, state)
        blocks += leaderboard_blocks([study_dir])  # across its tasks, or the tied group per K
    else:
        blocks.append(("p", f"No {RESULTS} yet: no cell has completed."))
    blocks += [("p", f"FAILED cell {c['run_dir']}: {c.get('error')}") for c in state["cells"] if c["status"] == "failed"]
    blocks += [("p", f"DEAD {note}") for note in notes]
    return blocks


def write_study_report(study_dir: str | Path, image_roots: Iterable[str | Path] = ()) -> Path:
    """The study's report in its folder: its section, then the usual report of its full-data cells; returns the
    HTML path. ``image_roots``: image folders the caller vouches for (see ``reporting.analysis``)."""
    study_dir = Path(study_dir)
    state, _ = read_study(study_dir)
    section = study_blocks(study_dir, report_assets(study_dir))
    return write_report(cell_dirs(study_dir, state, full_only=True), study_dir, section, image_roots)
