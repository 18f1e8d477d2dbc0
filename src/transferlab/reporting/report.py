"""``report.md`` and a self-contained ``report.html`` from finished run directories, without recomputing.

A library call: ``write_report(run_dirs, out_dir, extra_blocks=(), image_roots=())``. What a folder is (a
study, a pipeline, a run) is the caller's knowledge: a study's section (``reporting.study.study_blocks``), a
pipeline's stage table (``reporting.pipeline.pipeline_blocks``) or any other section is handed in as
``extra_blocks`` and placed after the summary chart. Everything written goes through ``reporting.output``
(atomic, never through a link, names from data made safe); ``report.html`` inlines only regular files inside
the reported run folders and the report's own ``report_assets/``.

Top to bottom: a chart of each method's test accuracy with its 95% interval beside the reference lab's
figure, the caller's sections (a pipeline's stages, a study's curves), the runs (the model described once per run), the results
(one row per method with intervals), the seeds summarised (mean ± sd and an interval for seeds and
test sampling together), the paired comparisons between methods, the lab's figures against our
intervals, calibration; then per run: training curves or the C search, the reliability diagram,
confusion plots, error analysis, best and worst classes, the resolved config; at the end, package
versions and hardware. Runs written before metrics.json schema 2 get their intervals and calibration
computed from their predictions files (see ``reporting.uncertainty``).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Iterable, Sequence

import yaml

from transferlab.evaluation import statistics as st
from transferlab.evaluation.calibration import METHOD as CALIBRATION_METHOD
from transferlab.reporting.analysis import error_analysis
from transferlab.reporting.document import to_html, to_markdown
from transferlab.reporting.figures import reliability_chart, selection_plot, summary_chart, training_blocks
from transferlab.reporting.output import asset_name, readable, report_assets, resolved_roots, write_file
from transferlab.reporting.runs import REFERENCE, RunRecord, load_record, on_lab_task
from transferlab.reporting.tables import (CALIBRATION_HEADERS, COMPARISON_HEADERS, LAB_HEADERS, RUN_HEADERS,
                                          calibration_gaps, calibration_rows, comparison_rows, lab_rows,
                                          per_class_rows, results_table, run_rows, seed_rows, seeds_table)
from transferlab.reporting.uncertainty import comparisons, method_groups, missing_intervals

INTERVALS_NOTE = (f"Intervals are {st.CONFIDENCE:.0%} {st.METHOD}, {st.N_RESAMPLES:,} resamples, seed {st.SEED} "
                  f"(read from metrics.json, or computed here from the predictions files of runs written before "
                  f"it recorded them).")
LAB_NOTE = ("'ours vs lab' says whether our interval lies above the lab's point figure, below it, or contains it; "
            "the lab reported no interval.")
SEEDS_NOTE = (f"Over several seeds: mean ± sd of the seeds' test accuracies, and a {st.CONFIDENCE:.0%} interval "
              f"for seed-to-seed variation and test-set sampling together, from a {st.SEEDS_METHOD} "
              f"({st.N_RESAMPLES:,} replicates; each replicate is the mean accuracy of the drawn seeds on the drawn "
              f"examples).")
COMPARISONS_NOTE = ("Every pair of methods scored on the same test examples (matched by example id; labels and "
                    "examples checked to agree), within a run and across runs of the same split. The difference "
                    "is accuracy(A) − accuracy(B) with a paired-bootstrap interval (the same resampled examples "
                    "for both); McNemar's exact test is statsmodels' mcnemar(exact=True) (the binomial test on the "
                    "discordant pairs). 'Holm p' is Holm-adjusted over the {n} tests in this table. A row over "
                    "several seeds uses the two-way bootstrap (seeds of each method and the shared examples "
                    "resampled) and has no test. The verdict follows the interval: above or below when it excludes "
                    "0.")
CALIBRATION_NOTE = (f"Calibration on test: {CALIBRATION_METHOD}. Lower is better for all three. The temperature-"
                    f"scaled column (evaluation.calibrate=true) is fitted on validation only; it never changes a "
                    f"prediction.")


def figure_blocks(made) -> list[tuple]:
    """A figure function's result as blocks: a picture with its caption, a sentence, or nothing."""
    if made is None:
        return []
    if isinstance(made, str):
        return [("p", made)]
    path, caption = made
    return [("img", path, caption)]


def uncertainty_blocks(records: Sequence[RunRecord], groups: list[dict]) -> list[tuple]:
    """Seeds, comparisons, the lab and calibration, each with the method that produced it."""
    blocks: list[tuple] = []
    seeds = seed_rows(groups)
    if seeds:
        blocks += [("h2", "Over several seeds"), seeds_table(groups), ("p", SEEDS_NOTE)]
    found = comparisons(groups)
    if found:
        n_tests = sum(r["mcnemar_p"] is not None for r in found)
        blocks += [("h2", "Comparisons"), ("table", COMPARISON_HEADERS, comparison_rows(found)),
                   ("p", COMPARISONS_NOTE.format(n=n_tests))]
    lab = lab_rows(groups)
    if lab:
        blocks += [("h2", "Against the reference lab"), ("table", LAB_HEADERS, lab),
                   ("p", "The lab's figures are single numbers from its own models (see the runs table for ours); "
                         "where the class count or the model differs, the comparison is loose.")]
    calibrated = calibration_rows(records)
    if calibrated:
        blocks += [("h2", "Calibration"), ("table", CALIBRATION_HEADERS, calibrated), ("p", CALIBRATION_NOTE),
                   *[("p", gap) for gap in calibration_gaps(records)]]
    return blocks


def overview_blocks(records: Sequence[RunRecord], assets: Path, extra_blocks: Sequence[tuple]) -> list[tuple]:
    groups = method_groups(records)
    blocks: list[tuple] = [("h1", "transferlab report"),
                           ("p", f"Built {datetime.now().isoformat(timespec='seconds')} from {len(records)} run(s). "
                                 "Numbers are read from each run's metrics.json and predictions; curves from its "
                                 "TensorBoard files. Nothing is recomputed by a model.")]
    blocks += figure_blocks(summary_chart(groups, assets / "summary.png"))
    blocks += list(extra_blocks)
    blocks += [("h2", "Runs"), ("table", RUN_HEADERS, run_rows(records)),
               ("h2", "Results"), results_table(records), ("p", INTERVALS_NOTE),
               *[("p", sentence) for sentence in missing_intervals(records)]]
    if any(on_lab_task(r) for r in records):  # on any other data the report says nothing about the lab
        blocks += [("p", LAB_NOTE), ("p", "The reference lab used " + "; ".join(f"{m}: {what}" for m, (what, _) in REFERENCE.items())
                         + ". Where the model used differs (e.g. the offline stand-ins), the numbers are not "
                           "comparable one to one.")]
    blocks += uncertainty_blocks(records, groups)
    blocks += [("p", f"FAILED: {r.experiment} / {r.name}: {r.status.get('error', 'unknown error')}")
               for r in records if r.status.get("status") == "failed"]
    return blocks


def run_pictures(r: RunRecord) -> list[tuple]:
    """The run's own PNGs (its confusion matrix): regular files inside its folder only (a link elsewhere is
    never read)."""
    root = resolved_roots([r.path])
    return [("img", png, f"{r.name}: {png.stem.replace('_', ' ')} of "
                         f"{r.metrics.primary if r.metrics else 'the run'} on the test split")
            for png in sorted(r.path.glob("*.png")) if readable(png, root) is not None]


def run_blocks(r: RunRecord, assets: Path, image_roots: Iterable[str | Path] = ()) -> list[tuple]:
    blocks: list[tuple] = [("h2", f"{r.experiment}: {r.name}"), ("p", f"Model: {r.model}. Directory: {r.path}")]
    blocks += [("p", f"Note: {note}") for note in (r.metrics.notes if r.metrics else [])]
    blocks += training_blocks(r, assets / asset_name(r.experiment, r.name, "curves"))
    blocks += figure_blocks(selection_plot(r, assets / asset_name(r.experiment, r.name, "selection")))
    blocks += figure_blocks(reliability_chart(r, assets / asset_name(r.experiment, r.name, "reliability")))
    blocks += run_pictures(r)
    blocks += error_analysis(r, assets, image_roots)
    for method, m in r.evaluations().items():
        rows = per_class_rows(m)
        if rows:
            blocks += [("h3", f"Per-class accuracy on test ({method})"),
                       ("table", ["", "class", "accuracy (recall)", "F1", "examples"], rows)]
    config = {k: v for k, v in r.config.items() if k != "environment"}
    blocks.append(("details", f"Resolved config of {r.name}", yaml.safe_dump(config, sort_keys=False)))
    return blocks


def build_blocks(records: Sequence[RunRecord], assets: Path, extra_blocks: Sequence[tuple] = (),
                 image_roots: Iterable[str | Path] = ()) -> list[tuple]:
    blocks = overview_blocks(records, assets, extra_blocks)
    for r in records:
        blocks += run_blocks(r, assets, image_roots)
    env = next((r.config.get("environment") for r in records if r.config.get("environment")), None)
    if env:
        blocks += [("h2", "Software and hardware"), ("pre", yaml.safe_dump(env, sort_keys=False))]
    return blocks


def write_report(run_dirs: Sequence[str | Path], out_dir: str | Path, extra_blocks: Sequence[tuple] = (),
                 image_roots: Iterable[str | Path] = ()) -> Path:
    """Write ``report.md``, ``report.html`` and ``report_assets/`` into ``out_dir``; return the HTML path.

    ``extra_blocks``: sections the caller builds (a study's, a pipeline's; their figures saved under
    ``report_assets(out_dir)``), placed after the summary chart. ``image_roots``: image folders the caller
    vouches for, from which the error analysis may make thumbnails (see ``reporting.analysis``)."""
    out_dir = Path(out_dir)
    records = [load_record(p) for p in run_dirs]  # a run that cannot be read is refused before anything is written
    assets = report_assets(out_dir)
    blocks = build_blocks(records, assets, extra_blocks, list(image_roots))
    write_file(out_dir / "report.md", to_markdown(blocks, out_dir))
    inside = [assets, *(r.path for r in records)]  # report.html reads pictures from nowhere else
    return write_file(out_dir / "report.html", to_html(blocks, "transferlab report", inside))
