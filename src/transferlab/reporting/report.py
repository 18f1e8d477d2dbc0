"""``report.md`` and a self-contained ``report.html`` from finished run directories, without recomputing.

Top to bottom: a chart of each method's test accuracy beside the reference lab's figure, the stage
table (for a pipeline), the results table (one row per method, grouped by run, with class and test
counts), mean ± sd over seeds where runs differ only in their seed, then per run: training curves
or the C search, confusion plots, error analysis, best and worst classes, the resolved config; at
the end, package versions and hardware.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Sequence

import yaml

from transferlab.errors import TransferlabError
from transferlab.reporting.analysis import error_analysis
from transferlab.reporting.document import to_html, to_markdown
from transferlab.reporting.figures import selection_plot, summary_chart, training_curves
from transferlab.reporting.runs import RunRecord, load_record
from transferlab.reporting.tables import (RESULT_HEADERS, SEED_HEADERS, STAGE_HEADERS, method_groups, per_class_rows,
                                          results_rows, seed_rows, stage_rows)


def figure_blocks(made) -> list[tuple]:
    """A figure function's result as blocks: a picture with its caption, a sentence, or nothing."""
    if made is None:
        return []
    if isinstance(made, str):
        return [("p", made)]
    path, caption = made
    return [("img", path, caption)]


def overview_blocks(records: Sequence[RunRecord], assets: Path, notes: Sequence[str], stages: Sequence[dict]):
    groups = method_groups([r for r in records if r.metrics is not None])
    blocks: list[tuple] = [("h1", "transferlab report"),
                           ("p", f"Built {datetime.now().isoformat(timespec='seconds')} from {len(records)} run(s). "
                                 "Numbers are read from each run's metrics.json; curves from its TensorBoard files.")]
    blocks += figure_blocks(summary_chart(groups, assets / "summary.png"))
    if stages:
        blocks += [("h2", "Stages"), ("table", STAGE_HEADERS, stage_rows(stages))]
    blocks += [("p", note) for note in notes]
    blocks += [("h2", "Results"), ("table", RESULT_HEADERS, results_rows(records)),
               ("p", "The reference lab used DistilBERT and CLIP ViT-B/16 on 200 Tiny ImageNet classes; where the "
                     "model used or the class count differs (e.g. the offline stand-ins, the 20-class demo), the "
                     "numbers are not comparable one to one.")]
    seeds = seed_rows(groups)
    if seeds:
        blocks += [("h2", "Over several seeds"), ("table", SEED_HEADERS, seeds)]
    blocks += [("p", f"FAILED: {r.experiment} / {r.name}: {r.status.get('error', 'unknown error')}")
               for r in records if r.status.get("status") == "failed"]
    return blocks


def run_blocks(r: RunRecord, assets: Path) -> list[tuple]:
    blocks: list[tuple] = [("h2", f"{r.experiment}: {r.name}"), ("p", f"Model: {r.model}. Directory: {r.path}")]
    stem = f"{r.experiment}-{r.name}"
    blocks += figure_blocks(training_curves(r, assets / f"{stem}-curves.png"))
    blocks += figure_blocks(selection_plot(r, assets / f"{stem}-selection.png"))
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
    (out_dir / "report.md").write_text(to_markdown(blocks, out_dir))
    html_path = out_dir / "report.html"
    html_path.write_text(to_html(blocks, "transferlab report"))
    return html_path


def update_readme(readme: str | Path, run_dirs: Sequence[str | Path], command: str) -> Path:
    """Replace the block between ``<!-- results:begin -->`` and ``<!-- results:end -->`` with the results table
    (and, where runs differ only in their seed, the mean ± sd table)."""
    readme = Path(readme)
    text = readme.read_text()
    begin, end = "<!-- results:begin -->", "<!-- results:end -->"
    if begin not in text or end not in text:
        raise TransferlabError(f"{readme} has no {begin} ... {end} block to fill: add those two lines where the "
                               f"results belong")
    records = [load_record(p) for p in run_dirs]
    env = next((r.config.get("environment") for r in records if r.config.get("environment")), {}) or {}
    blocks = [("table", RESULT_HEADERS, results_rows(records))]
    seeds = seed_rows(method_groups([r for r in records if r.metrics is not None]))
    if seeds:
        blocks.append(("table", SEED_HEADERS, seeds))
    block = (f"{begin}\nGenerated by `{command}` on {datetime.now().date()} "
             f"({env.get('cpu_count', '?')} CPU cores{', ' + env['gpu'] if env.get('gpu') else ''}, "
             f"torch {env.get('packages', {}).get('torch', '?')}, "
             f"transformers {env.get('packages', {}).get('transformers', '?')}).\n\n"
             f"{to_markdown(blocks, readme.parent)}{end}")
    head, rest = text.split(begin, 1)
    readme.write_text(head + block + rest.split(end, 1)[1])
    return readme
