"""A README's generated blocks: the results (``<!-- results:begin/end -->``) and the label-budget curves with
the studies' leaderboard (``<!-- shots:begin/end -->``, figures under ``figures/`` beside the README).

The README is the user's file: it must be a regular, writable file (not a link) holding each marker once, the
begin marker before the end marker; anything else is a one-line error and the file is left as it was. It is
replaced atomically (``reporting.output.write_file``); the figure folder is one the report owns
(``reporting.output.owned_folder``).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Sequence

from transferlab.errors import TransferlabError
from transferlab.reporting.curves import class_counts, curve_section, finished_study, merged_curves
from transferlab.reporting.document import md_code, to_markdown
from transferlab.reporting.leaderboard import leaderboard_blocks
from transferlab.reporting.model_pairs import model_pair_claims
from transferlab.reporting.output import owned_folder, write_file
from transferlab.reporting.report import INTERVALS_NOTE, LAB_NOTE, SEEDS_NOTE
from transferlab.reporting.runs import REFERENCE, load_record, on_lab_task
from transferlab.reporting.tables import RUN_HEADERS, p_text, results_table, run_rows, seed_rows, seeds_table
from transferlab.reporting.uncertainty import comparisons, lab_figure, method_groups, relation
from transferlab.studies.shots import cell_dirs

RELATION = {"above": "lies above", "below": "lies below", "contains": "contains"}
WORD = {"above": "above", "below": "below", "contains": "not distinguishable from"}  # an interval against 0


def claim(row: dict, per_seed: Sequence[dict]) -> str:
    """One comparison as the README states it: ``lora − linear_probe: +0.023 [+0.016, +0.030], McNemar
    p = 2e-06, n = 10,000``; over seeds, the seed-average with each seed's Holm-adjusted p."""
    word = WORD[relation(0.0, row["ci_low"], row["ci_high"])]
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
        if lab and found_interval and lab_figure(g["method"], g["runs"]) is not None:
            low, high = found_interval["low"], found_interval["high"]
            said = relation(lab[1]["test/accuracy"], low, high)
            out.append(f"{g['label']} {g['test_mean']:.4f} [{low:.3f}, {high:.3f}]: "
                       f"the interval {RELATION[said]} the lab's {lab[1]['test/accuracy']} ({lab[0]})")
    return out


def readme_text(readme: Path) -> str:
    """The README's text, or a one-line error when it is not a regular, writable UTF-8 file."""
    if readme.is_symlink() or not readme.is_file():
        raise TransferlabError(f"--readme {readme}: not a regular file (missing, a folder or a link): give the "
                               f"README file itself")
    writable = readme.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)  # marked read-only: even
    if not writable or not os.access(readme, os.W_OK) or not os.access(readme.parent, os.W_OK):  # root keeps off
        raise TransferlabError(f"--readme {readme}: the file (or its folder) is read-only: make it writable, or "
                               f"leave out --readme")
    try:
        return readme.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TransferlabError(f"--readme {readme}: cannot read it as UTF-8 text ({exc.__class__.__name__})") from None


def checked_readme(readme: Path, name: str) -> str:
    """The README's text when it can take the ``NAME`` block (see the module docstring); else a one-line error."""
    text = readme_text(readme)
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    if begin not in text or end not in text:
        raise TransferlabError(f"{readme} has no {begin} ... {end} block to fill: add those two lines where the "
                               f"{'results' if name == 'results' else 'curves'} belong")
    if text.count(begin) > 1 or text.count(end) > 1 or text.index(end) < text.index(begin):
        raise TransferlabError(f"{readme} must hold {begin} once and then {end} once (found the end marker before "
                               f"the begin marker, or a marker twice): fix the markers and run again")
    return text


def replace_block(readme: Path, name: str, body: str) -> Path:
    """Replace the text between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->`` in ``readme`` with ``body``."""
    text = checked_readme(readme, name)
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    head, rest = text.split(begin, 1)
    mode = stat.S_IMODE(readme.stat().st_mode)
    write_file(readme, f"{head}{begin}\n{body}{end}{rest.split(end, 1)[1]}")
    os.chmod(readme, mode)  # the new file keeps the README's permissions
    return readme


def generated_line(command: str, env: dict) -> str:
    return (f"Generated by {md_code(command)} "
            f"({env.get('cpu_count', '?')} CPU cores{', ' + env['gpu'] if env.get('gpu') else ''}, "
            f"torch {env.get('packages', {}).get('torch', '?')}, "
            f"transformers {env.get('packages', {}).get('transformers', '?')}).\n\n")


def update_readme(readme: str | Path, run_dirs: Sequence[str | Path], command: str) -> Path:
    """Replace the block between ``<!-- results:begin -->`` and ``<!-- results:end -->`` with the runs and
    results tables (intervals), the seeds table, and the comparisons and lab figures as sentences."""
    readme = Path(readme)
    checked_readme(readme, "results")  # refused before anything is computed
    records = [load_record(p) for p in run_dirs]
    env = next((r.config.get("environment") for r in records if r.config.get("environment")), {}) or {}
    groups = method_groups(records)
    lab = any(on_lab_task(r) for r in records)
    blocks = [("table", RUN_HEADERS, run_rows(records)), results_table(records),
              ("p", INTERVALS_NOTE + (" " + LAB_NOTE if lab else ""))]
    seeds = seed_rows(groups)
    if seeds:
        blocks += [seeds_table(groups), ("p", SEEDS_NOTE)]
    said = claims(groups)
    if said:
        blocks += [("p", "What the figures support (paired on the same test examples; Holm-adjusted p-values):"),
                   ("list", said)]
    return replace_block(readme, "results", generated_line(command, env) + to_markdown(blocks, readme.parent))


def readme_study_blocks(study_dirs: Sequence[Path], figures: Path) -> list[tuple]:
    """The README's label-budget block: per data set one curve of every method (saved into ``figures``) and
    its table per K; then the studies' leaderboard across their tasks (or, over one task, the group tied with the
    best per K; see ``reporting.leaderboard``)."""
    states = {study_dir: finished_study(study_dir) for study_dir in study_dirs}
    counts: dict[str, int] = {}
    for study_dir, state in states.items():
        counts.update({k: v for k, v in class_counts(study_dir, state).items() if k not in counts})
    blocks: list[tuple] = []
    for dataset, methods in sorted(merged_curves(study_dirs).items()):
        blocks += curve_section(dataset, methods, figures, counts.get(dataset))
    for study_dir, state in states.items():  # a model axis: each pair of models at each K, paired (model_pairs)
        said = model_pair_claims(study_dir, state)
        if said:
            blocks += [("p", "Models compared on the same draws and test examples (two-way bootstrap interval over "
                             "seeds and examples; McNemar per seed, Holm-adjusted):"), ("list", said)]
    return blocks + leaderboard_blocks(study_dirs, top="h3")


def update_study_readme(readme: str | Path, study_dirs: Sequence[str | Path], command: str) -> Path:
    """Replace the ``<!-- shots:begin/end -->`` block with the studies' learning curves (figures saved under
    ``figures/`` beside the README) and their tables per K."""
    readme = Path(readme)
    checked_readme(readme, "shots")  # refused before any figure is drawn
    study_dirs = [Path(d) for d in study_dirs]
    blocks = readme_study_blocks(study_dirs, owned_folder(readme.parent, "figures"))
    first = cell_dirs(study_dirs[0], finished_study(study_dirs[0]))[:1]
    env = (load_record(first[0]).config.get("environment") if first else None) or {}
    return replace_block(readme, "shots", generated_line(command, env) + to_markdown(blocks, readme.parent))
