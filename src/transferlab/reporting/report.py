"""``report.md`` and a self-contained ``report.html`` from finished run directories, without recomputing.

Top to bottom: a chart of each method's test accuracy with its 95% interval beside the reference lab's
figure, the stage table (for a pipeline), the runs (the model described once per run), the results
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
from typing import Sequence

import yaml

from transferlab.errors import TransferlabError
from transferlab.evaluation import statistics as st
from transferlab.evaluation.calibration import METHOD as CALIBRATION_METHOD
from transferlab.reporting.analysis import error_analysis
from transferlab.reporting.curves import readme_study_blocks, study_blocks
from transferlab.reporting.document import md_code, to_html, to_markdown
from transferlab.reporting.figures import reliability_chart, selection_plot, summary_chart, training_curves
from transferlab.reporting.runs import REFERENCE, RunRecord, load_record
from transferlab.reporting.tables import (CALIBRATION_HEADERS, COMPARISON_HEADERS, LAB_HEADERS, RESULT_HEADERS,
                                          RUN_HEADERS, SEED_HEADERS, STAGE_HEADERS, calibration_gaps, calibration_rows,
                                          comparison_rows, lab_rows, per_class_rows, results_rows, run_rows,
                                          p_text, seed_rows, stage_rows)
from transferlab.reporting.uncertainty import comparisons, method_groups, missing_intervals
from transferlab.studies.shots import STATE as STUDY_STATE
from transferlab.studies.shots import cell_dirs
from transferlab.tracking.files import read_json

INTERVALS_NOTE = (f"Intervals are {st.CONFIDENCE:.0%} {st.METHOD}, {st.N_RESAMPLES:,} resamples, seed {st.SEED} "
                  f"(read from metrics.json, or computed here from the predictions files of runs written before "
                  f"it recorded them). 'ours vs lab' says whether our interval lies above the lab's point "
                  f"figure, below it, or contains it; the lab reported no interval.")
SEEDS_NOTE = (f"Over several seeds: mean ± sd of the seeds' test accuracies, and a {st.CONFIDENCE:.0%} interval "
              f"for seed-to-seed variation and test-set sampling together, from a {st.SEEDS_METHOD} "
              f"({st.N_RESAMPLES:,} replicates; each replicate is the mean accuracy of the drawn seeds on the drawn "
              f"examples).")
COMPARISONS_NOTE = ("Every pair of methods scored on the same test examples (matched by example id; labels and "
                    "examples checked to agree), within a run and across runs of the same split. The difference "
                    "is accuracy(A) − accuracy(B) with a paired-bootstrap interval (the same resampled examples "
                    "for both); McNemar's exact test is scipy.stats.binomtest on the discordant pairs. 'Holm p' "
                    "is Holm-adjusted over the {n} tests in this table. A row over several seeds uses the two-way "
                    "bootstrap (seeds of each method and the shared examples resampled) and has no test. The "
                    "verdict follows the interval: above or below when it excludes 0.")
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
        blocks += [("h2", "Over several seeds"), ("table", SEED_HEADERS, seeds), ("p", SEEDS_NOTE)]
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


def overview_blocks(records: Sequence[RunRecord], assets: Path, notes: Sequence[str], stages: Sequence[dict]):
    groups = method_groups(records)
    blocks: list[tuple] = [("h1", "transferlab report"),
                           ("p", f"Built {datetime.now().isoformat(timespec='seconds')} from {len(records)} run(s). "
                                 "Numbers are read from each run's metrics.json and predictions; curves from its "
                                 "TensorBoard files. Nothing is recomputed by a model.")]
    blocks += figure_blocks(summary_chart(groups, assets / "summary.png"))
    if stages:
        blocks += [("h2", "Stages"), ("table", STAGE_HEADERS, stage_rows(stages))]
    blocks += [("p", note) for note in notes]
    blocks += [("h2", "Runs"), ("table", RUN_HEADERS, run_rows(records)),
               ("h2", "Results"), ("table", RESULT_HEADERS, results_rows(records)), ("p", INTERVALS_NOTE),
               *[("p", sentence) for sentence in missing_intervals(records)],
               ("p", "The reference lab used " + "; ".join(f"{m}: {what}" for m, (what, _) in REFERENCE.items())
                     + ". Where the model used or the class count differs (e.g. the offline stand-ins, the "
                       "20-class demo), the numbers are not comparable one to one.")]
    blocks += uncertainty_blocks(records, groups)
    blocks += [("p", f"FAILED: {r.experiment} / {r.name}: {r.status.get('error', 'unknown error')}")
               for r in records if r.status.get("status") == "failed"]
    return blocks


def run_blocks(r: RunRecord, assets: Path) -> list[tuple]:
    blocks: list[tuple] = [("h2", f"{r.experiment}: {r.name}"), ("p", f"Model: {r.model}. Directory: {r.path}")]
    stem = f"{r.experiment}-{r.name}"
    blocks += figure_blocks(training_curves(r, assets / f"{stem}-curves.png"))
    blocks += figure_blocks(selection_plot(r, assets / f"{stem}-selection.png"))
    blocks += figure_blocks(reliability_chart(r, assets / f"{stem}-reliability.png"))
    for png in sorted(r.path.glob("*.png")):
        blocks.append(("img", png, f"{r.name}: {png.stem.replace('_', ' ')} of "
                                   f"{r.metrics.primary if r.metrics else 'the run'} on the test split"))
    blocks += error_analysis(r, assets)
    for method, m in r.evaluations().items():
        rows = per_class_rows(m)
        if rows:
            blocks += [("h3", f"Per-class accuracy on test ({method})"),
                       ("table", ["", "class", "accuracy (recall)", "F1", "examples"], rows)]
    config = {k: v for k, v in r.config.items() if k != "environment"}
    blocks.append(("details", f"Resolved config of {r.name}", yaml.safe_dump(config, sort_keys=False)))
    return blocks


def build_blocks(records: Sequence[RunRecord], assets: Path, notes: Sequence[str] = (),
                 stages: Sequence[dict] = ()) -> list[tuple]:
    blocks = overview_blocks(records, assets, notes, stages)
    for r in records:
        blocks += run_blocks(r, assets)
    env = next((r.config.get("environment") for r in records if r.config.get("environment")), None)
    if env:
        blocks += [("h2", "Software and hardware"), ("pre", yaml.safe_dump(env, sort_keys=False))]
    return blocks


def write_report(run_dirs: Sequence[str | Path], out_dir: str | Path, notes: Sequence[str] = (),
                 stages: Sequence[dict] = ()) -> Path:
    """Write ``report.md``, ``report.html`` and ``report_assets/`` into ``out_dir``; return the HTML path.
    ``stages``: the pipeline's stage records (stage, status, elapsed_s, run_dir, error), shown as a table."""
    out_dir = Path(out_dir)
    assets = out_dir / "report_assets"
    assets.mkdir(parents=True, exist_ok=True)
    records = [load_record(p) for p in run_dirs]
    blocks = build_blocks(records, assets, notes, stages)
    blocks[2:2] = study_blocks(out_dir, assets)  # a label-budget study's curves, after the title (none otherwise)
    (out_dir / "report.md").write_text(to_markdown(blocks, out_dir))
    html_path = out_dir / "report.html"
    html_path.write_text(to_html(blocks, "transferlab report"))
    return html_path


RELATION = {"above": "lies above", "below": "lies below", "contains": "contains"}


def claim(row: dict, per_seed: Sequence[dict]) -> str:
    """One comparison as the README states it: ``lora − linear_probe: +0.023 [+0.016, +0.030], McNemar
    p = 2e-06, n = 10,000``; over seeds, the seed-average with each seed's Holm-adjusted p."""
    word = "above" if row["ci_low"] > 0 else "below" if row["ci_high"] < 0 else "not distinguishable from"
    head = (f"{row['a']} {word} {row['b']}: {row['difference']:+.4f} [{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]")
    if row["mcnemar_p"] is not None:
        return head + f", McNemar p = {p_text(row['mcnemar_p'])} (Holm {p_text(row['holm_p'])}), n = {row['n']:,}"
    ps = ", ".join(p_text(r["holm_p"]) for r in per_seed)
    return head + f" over {row['seed']} (two-way bootstrap); per seed McNemar p (Holm) {ps}; n = {row['n']:,} each"


def claims(groups: list[dict]) -> list[str]:
    """The README's sentences: each comparison (its seed average where there is one) and each lab figure."""
    found = comparisons(groups)
    out = []
    for row in found:
        pair = [r for r in found if (r["a"], r["b"]) == (row["a"], row["b"])]
        has_average = any(r["mcnemar_p"] is None for r in pair)
        if row["mcnemar_p"] is None or not has_average:
            out.append(claim(row, [r for r in pair if r["mcnemar_p"] is not None]))
    for g in groups:
        lab, found_interval = REFERENCE.get(g["method"]), g["interval"]
        if lab and found_interval and "test/accuracy" in lab[1]:
            relation = st.relation_to(lab[1]["test/accuracy"], found_interval["low"], found_interval["high"])
            low, high = found_interval["low"], found_interval["high"]
            out.append(f"{g['label']} {g['test_mean']:.4f} [{low:.3f}, {high:.3f}]: "
                       f"the interval {RELATION[relation]} the lab's {lab[1]['test/accuracy']} ({lab[0]})")
    return out


def replace_block(readme: Path, name: str, body: str) -> Path:
    """Replace the text between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->`` in ``readme`` with ``body``."""
    text = readme.read_text()
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    if begin not in text or end not in text:
        raise TransferlabError(f"{readme} has no {begin} ... {end} block to fill: add those two lines where the "
                               f"{'results' if name == 'results' else 'curves'} belong")
    head, rest = text.split(begin, 1)
    readme.write_text(f"{head}{begin}\n{body}{end}{rest.split(end, 1)[1]}")
    return readme


def generated_line(command: str, env: dict) -> str:
    return (f"Generated by {md_code(command)} on {datetime.now().date()} "
            f"({env.get('cpu_count', '?')} CPU cores{', ' + env['gpu'] if env.get('gpu') else ''}, "
            f"torch {env.get('packages', {}).get('torch', '?')}, "
            f"transformers {env.get('packages', {}).get('transformers', '?')}).\n\n")


def update_readme(readme: str | Path, run_dirs: Sequence[str | Path], command: str) -> Path:
    """Replace the block between ``<!-- results:begin -->`` and ``<!-- results:end -->`` with the runs and
    results tables (intervals), the seeds table, and the comparisons and lab figures as sentences."""
    readme = Path(readme)
    records = [load_record(p) for p in run_dirs]
    env = next((r.config.get("environment") for r in records if r.config.get("environment")), {}) or {}
    groups = method_groups(records)
    blocks = [("table", RUN_HEADERS, run_rows(records)), ("table", RESULT_HEADERS, results_rows(records)),
              ("p", INTERVALS_NOTE)]
    seeds = seed_rows(groups)
    if seeds:
        blocks += [("table", SEED_HEADERS, seeds), ("p", SEEDS_NOTE)]
    said = claims(groups)
    if said:
        blocks += [("p", "What the figures support (paired on the same test examples; Holm-adjusted p-values):"),
                   ("list", said)]
    return replace_block(readme, "results", generated_line(command, env) + to_markdown(blocks, readme.parent))


def update_study_readme(readme: str | Path, study_dirs: Sequence[str | Path], command: str) -> Path:
    """Replace the ``<!-- shots:begin/end -->`` block with the studies' learning curves (figures saved under
    ``docs/figures/`` beside the README) and their tables per K."""
    readme = Path(readme)
    study_dirs = [Path(d) for d in study_dirs]
    blocks = readme_study_blocks(study_dirs, readme.parent / "docs" / "figures")
    first = cell_dirs(study_dirs[0], read_json(study_dirs[0] / STUDY_STATE, "study state"))[:1]
    env = (load_record(first[0]).config.get("environment") if first else None) or {}
    return replace_block(readme, "shots", generated_line(command, env) + to_markdown(blocks, readme.parent))
