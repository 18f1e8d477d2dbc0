"""A leaderboard across tasks from finished studies (``transferlab leaderboard STUDY...``).

Rows are methods (``method@model`` on a model axis), columns tasks at each K (test split, each task's metric).
A cell is the mean over seeds; its interval, for accuracy, the two-way bootstrap over seeds and test examples
(from the cells' predictions); otherwise a t interval over the seeds, and for one seed the run's own
percentile bootstrap interval over test examples (results.csv's ``ci_low``/``ci_high``). A plain study (one task, several methods or
models) is a leaderboard over its one task: the tied group per K is its use. Per modality and K:
the mean over the tasks every listed method ran (interval: the tasks' half-widths combined as independent,
sqrt(sum h^2) / T), the average rank (1 = best, ties share the mean rank) with a bootstrap interval over
tasks, and in each column the group tied with the best: every method tested against the best on the same test
examples (one seed: McNemar's exact test; several: the two-way bootstrap's p over the seeds both ran), Holm-
adjusted, tied where the adjusted p >= 0.05. The minimum detectable effect of each column: the smallest difference of two
proportions around the best figure a two-sided 5% test finds with 80% power at the task's test size. MTEB's
format (mean over resamples, x100, two decimals) and SetFit's (median and IQR over splits) beside it.

Rendered as report blocks (:func:`leaderboard_blocks`: the study report, ``report --readme``) and, by
``transferlab leaderboard``, as ``leaderboard.md`` (the same blocks) and ``leaderboard.csv``.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
from scipy import stats

from transferlab.config import load_yaml
from transferlab.errors import TransferlabError
from transferlab.evaluation.statistics import holm, mcnemar_p, seeds_difference, seeds_interval
from transferlab.reporting.document import to_markdown
from transferlab.studies.results import RESULTS, dataset_name, method_label, read_results
from transferlab.studies.shots import STATE, read_study

ALPHA, POWER, CONFIDENCE, N_RESAMPLES, SEED = 0.05, 0.8, 0.95, 2000, 0


def t_interval(values) -> tuple[float, float, float]:
    """(mean, low, high): the mean of ``values`` and its 95% Student-t interval (one value: itself)."""
    v = np.asarray(values, dtype=float)
    mean = float(v.mean())
    if v.size < 2:
        return mean, mean, mean
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    return mean, mean - half, mean + half


def cell_interval(values, intervals=(), correct=None) -> tuple[float, float, float]:
    """(mean, low, high) of one cell. Accuracy with every seed's predictions (``correct``: one vector per seed,
    on the same test examples): the mean and the two-way bootstrap interval over seeds and test examples, as
    every other figure of transferlab (``evaluation.statistics.seeds_interval``; a t interval over seeds alone
    would be zero wide where the seeds agree, e.g. a deterministic full-data cell). Otherwise, several seeds:
    the t interval over the seeds; one seed: the run's own percentile bootstrap interval over test examples
    (``intervals``: each seed's recorded ``(ci_low, ci_high)``), or the value alone (zero width) where the run
    recorded none."""
    vectors = list(correct or ())
    if vectors and len(vectors) == len(values) and len({len(v) for v in vectors}) == 1:
        found = seeds_interval(np.array(vectors))
        if abs(found["mean"] - float(np.mean(values))) < 1e-9:  # the predictions are the figures' own
            return float(np.mean(values)), found["ci_low"], found["ci_high"]
    intervals = list(intervals)
    if len(values) == 1 and intervals and None not in intervals[0]:
        return float(values[0]), float(intervals[0][0]), float(intervals[0][1])
    return t_interval(values)


def mean_over_tasks(cells: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    """The mean of the tasks' means; its interval combines their half-widths as independent errors."""
    means = np.array([c[0] for c in cells])
    halves = np.array([(c[2] - c[1]) / 2 for c in cells])
    mean, half = float(means.mean()), float(np.sqrt((halves ** 2).sum()) / len(cells))
    return mean, mean - half, mean + half


def ranks(scores: np.ndarray) -> np.ndarray:
    """Per task (columns), each method's rank (rows; 1 = the highest score, ties share the mean rank)."""
    return np.column_stack([stats.rankdata(-scores[:, j]) for j in range(scores.shape[1])])


def average_rank(scores: np.ndarray, n_resamples: int = N_RESAMPLES, seed: int = SEED) -> list[tuple]:
    """Per method (rows of a methods x tasks matrix): (average rank, low, high), the interval from a percentile
    bootstrap over the tasks (drawn with replacement, seeded)."""
    r = ranks(scores)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, r.shape[1], size=(n_resamples, r.shape[1]))
    boot = r[:, draws].mean(axis=2)  # methods x resamples
    low, high = np.percentile(boot, [100 * (1 - CONFIDENCE) / 2, 100 * (1 + CONFIDENCE) / 2], axis=1)
    return [(float(m), float(lo), float(hi)) for m, lo, hi in zip(r.mean(axis=1), low, high)]


def minimum_detectable_effect(p: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest difference of two proportions near ``p`` a two-sided test at ``alpha`` detects with ``power``
    on ``n`` examples each: (z_{1-alpha/2} + z_power) * sqrt(2 p (1 - p) / n)."""
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return float(z * np.sqrt(2 * p * (1 - p) / n))


def tie_p(a: np.ndarray, b: np.ndarray) -> float:
    """``a`` against ``b`` on the same examples: one seed (vectors), McNemar's exact test; several seeds (seeds x
    examples matrices), the two-way bootstrap's p (``seeds_difference``: seeds and examples resampled). Pooling
    the seeds into one McNemar table would count an example once per seed, as if the seeds were new examples."""
    if a.ndim == 1:
        return mcnemar_p(int((a & ~b).sum()), int((~a & b).sum()))
    return seeds_difference(a, b)["p_value"]


def tied_with_best(correct: dict[str, np.ndarray], means: dict[str, float]) -> tuple[str, set[str], dict]:
    """(best, the methods tied with it, Holm-adjusted p per other method): each method tested against the best
    on the same examples (:func:`tie_p`), Holm over the column."""
    best = max(means, key=lambda m: (means[m], m))
    others = [m for m in means if m != best and m in correct and best in correct
              and correct[m].shape == correct[best].shape]
    p = [tie_p(correct[m], correct[best]) for m in others]
    adjusted = dict(zip(others, holm(p))) if others else {}
    tied = {best} | {m for m, q in adjusted.items() if q >= ALPHA}
    tied |= {m for m in means if m not in adjusted and m != best}  # untestable (no predictions): not excluded
    return best, tied, adjusted


def mteb_format(values) -> str:
    """MTEB: the main score's mean over resamples, x100, two decimals."""
    return f"{100 * float(np.mean(values)):.2f}"


def setfit_format(values) -> str:
    """SetFit: the median over splits and its interquartile range, x100, one decimal."""
    q1, med, q3 = np.percentile(np.asarray(values, dtype=float) * 100, [25, 50, 75])
    return f"{med:.1f} (IQR {q3 - q1:.1f})"


# --- reading finished studies ----------------------------------------------------------------------

def study_tasks(study_dir: Path) -> tuple[dict, dict]:
    """The study's state (through the ledger's checks: every cell's folder inside the study) and its tasks."""
    state = read_study(study_dir)[0]
    return state, state.get("tasks") or {}


def cell_task(study_dir: Path, cell: dict) -> str:
    """The column a cell's figures fall under, as results.csv names it: its suite task, else its data set."""
    task = cell.get("arm", "").partition("#")[2]
    if task:
        return task
    config = load_yaml((study_dir / cell["run_dir"] / "config.yaml").read_text()) or {}
    return dataset_name(config)


def test_correct(run_dir: Path, method: str) -> np.ndarray | None:
    path = run_dir / "predictions" / f"{method}.jsonl"
    if "/" in method or "\\" in method or method.startswith(".") or not path.is_file():  # a name, not a path
        return None
    with path.open() as handle:
        rows = [r for r in map(json.loads, handle) if r.get("split") == "test"]
    rows.sort(key=lambda r: (str(type(r.get("id"))), r.get("id")))
    return np.array([r["label"] == r["prediction"] for r in rows], dtype=bool)


def cell_vectors(study_dir: Path, cell: dict) -> dict[str, np.ndarray]:
    """Method label -> its test correctness vector in one completed cell."""
    run_dir = study_dir / cell["run_dir"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    model_part = cell.get("arm", "").partition("#")[0].partition("@")[2]
    out = {}
    for method in metrics.get("methods", {}):
        label = method_label(cell["experiment"], method, metrics.get("model", {}))
        vector = test_correct(run_dir, method)
        if vector is not None:
            out[label + ("@" + model_part if model_part else "")] = vector
    return out


def collect(study_dirs) -> dict:
    """{(modality, K): {task: {"metric", "scores": {method: {seed: value}}, "intervals": {method: {seed: (low,
    high)}}, "correct": {method: {seed: test correctness vector}}}}}."""
    board: dict = {}
    for study_dir in map(Path, study_dirs):
        if not (study_dir / STATE).is_file() or not (study_dir / RESULTS).is_file():
            raise TransferlabError(f"{study_dir} is not a finished study (no study.json and results.csv): give "
                                   f"study folders (DIR/study/<name>)")
        state, tasks = study_tasks(study_dir)
        for row in read_results(study_dir):
            task = tasks.get(row["dataset"], {})
            if row["split"] != "test" or row["metric"] != task.get("metric", "accuracy"):
                continue
            column = board.setdefault((task.get("modality", "-"), str(row["shots"])), {}).setdefault(
                row["dataset"], {"metric": row["metric"], "scores": {}, "intervals": {}, "correct": {}})
            column["scores"].setdefault(row["method"], {})[row["seed"]] = row["value"]
            column["intervals"].setdefault(row["method"], {})[row["seed"]] = (row["ci_low"], row["ci_high"])
        for cell in (c for c in state["cells"] if c.get("status") == "completed"):
            task = cell_task(study_dir, cell)
            k = "full" if cell["shots"] is None else str(cell["shots"])
            for key, column in ((key, col) for key, cols in board.items() if key[1] == k
                                for name, col in cols.items() if name == task):
                for method, vector in cell_vectors(study_dir, cell).items():
                    column["correct"].setdefault(method, {})[cell["seed"]] = vector
    return board


# --- the table -------------------------------------------------------------------------------------

def column_ties(column: dict, means: dict[str, float]) -> tuple[str, set[str]]:
    """The best of one column and the methods tied with it (predictions paired by seed and example; the seeds
    all the column's methods ran)."""
    seeds = {m: set(v) for m, v in column["correct"].items() if m in means}
    common = sorted(set.intersection(*seeds.values())) if seeds else []
    vectors = {m: np.array([column["correct"][m][s] for s in common]) for m in seeds if common}
    if len(common) == 1:
        vectors = {m: v[0] for m, v in vectors.items()}
    best, tied, _ = tied_with_best(vectors, means)
    return best, tied


def k_order(key: tuple) -> tuple:
    """(modality, K) in reading order: K as a number (4 before 16), ``full`` last."""
    modality, k = key
    return modality, (0, int(k), "") if str(k).isdigit() else (1, 0, str(k))


def seed_vectors(column: dict, method: str) -> list | None:
    """The method's per-seed test correctness in a column, in the order of its scores (accuracy columns only)."""
    if column.get("metric") != "accuracy":
        return None
    correct = column["correct"].get(method, {})
    seeds = list(column["scores"][method])
    return [correct[s] for s in seeds] if all(s in correct for s in seeds) else None


def table(board: dict) -> list[dict]:
    """One record per (modality, K, method): its cells, the mean over tasks and the average rank."""
    out = []
    for (modality, k), columns in sorted(board.items(), key=lambda item: k_order(item[0])):
        tasks = sorted(columns)
        methods = sorted({m for col in columns.values() for m in col["scores"]})
        cells = {(t, m): cell_interval(list(columns[t]["scores"][m].values()),
                                       columns[t].get("intervals", {}).get(m, {}).values(), seed_vectors(columns[t], m))
                 for t in tasks for m in methods if m in columns[t]["scores"]}
        ties = {t: column_ties(columns[t], {m: cells[(t, m)][0] for m in methods if (t, m) in cells}) for t in tasks}
        full = [m for m in methods if all((t, m) in cells for t in tasks)]
        ranked = dict(zip(full, average_rank(np.array([[cells[(t, m)][0] for t in tasks] for m in full])))) \
            if full else {}
        for m in methods:
            row = {"modality": modality, "shots": k, "method": m, "tasks": tasks,
                   "cells": {t: cells.get((t, m)) for t in tasks}, "tied": {t: m in ties[t][1] for t in tasks},
                   "best": {t: m == ties[t][0] for t in tasks},
                   "seeds": {t: list(columns[t]["scores"].get(m, {}).values()) for t in tasks},
                   "mean": mean_over_tasks([cells[(t, m)] for t in tasks]) if m in ranked else None,
                   "rank": ranked.get(m)}
            out.append(row)
        for t in tasks:  # the minimum detectable effect at the column's test size, around its best figure
            n = max((len(v) for v in columns[t]["correct"].get(ties[t][0], {}).values()), default=0)
            best = cells[(t, ties[t][0])][0]
            for row in out[-len(methods):]:
                row.setdefault("mde", {})[t] = minimum_detectable_effect(best, n) if n else None
    return out


def pct(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def cell_text(c, tied: bool = False, best: bool = False) -> str:
    if c is None:
        return "–"
    return f"{pct(c[0])} [{pct(c[1])}, {pct(c[2])}]" + (" (best)" if best else " (tied)" if tied else "")


NOTE = ("Test split, each task's metric x100: the mean over seeds [95% interval: for accuracy the two-way bootstrap "
        "over seeds and test examples; for another metric the t interval over the seeds, or for a single seed the "
        "run's percentile bootstrap interval over test examples]. (best): the column's best; (tied): "
        "statistically tied with it (tested against the best on the same test examples: one seed, McNemar's "
        "exact test; several, the two-way bootstrap's p; Holm-adjusted, 5%; a method without predictions is not "
        "excluded).")
ACROSS = (" Mean [its tasks' half-widths combined] and average rank [bootstrap over tasks] over the tasks every "
          "method ran; a method missing a task has neither. MTEB: the mean over seeds and tasks; SetFit: their "
          "median (IQR).")
SINGLE = " MTEB: the mean over seeds; SetFit: their median (IQR)."


def group_blocks(group: list[dict]) -> list[tuple]:
    """One (modality, K) group: its title, the table (methods x tasks), the minimum detectable effects."""
    modality, k, tasks = group[0]["modality"], group[0]["shots"], group[0]["tasks"]
    across = len(tasks) > 1
    headers = ["method", *tasks] + (["mean", "average rank"] if across else []) + ["MTEB", "SetFit"]
    rows = []
    for row in sorted(group, key=lambda r: (r["rank"] is None, r["rank"] or (0,), r["method"])):
        every = [v for t in tasks for v in row["seeds"][t]]
        rank = "–" if row["rank"] is None else f"{row['rank'][0]:.2f} [{row['rank'][1]:.2f}, {row['rank'][2]:.2f}]"
        rows.append([row["method"], *(cell_text(row["cells"][t], row["tied"][t], row["best"][t]) for t in tasks),
                     *([cell_text(row["mean"]), rank] if across else []),
                     mteb_format(every) if every else "–", setfit_format(every) if every else "–"])
    mde = group[0].get("mde", {})
    title = f"K = {k}" if modality == "-" else f"{modality}, K = {k}"
    return [("h3", title), ("table", headers, rows),
            ("p", "Minimum detectable effect (80% power, 5%, x100): " + ", ".join(f"{t} {pct(mde.get(t))}" for t in tasks))]


def board_blocks(rows: list[dict], top: str = "h2") -> list[tuple]:
    """The leaderboard as report blocks (see ``reporting.document``): a title at level ``top``, a note, and per
    modality and K a table; over one task, the title says it is the tied group per K."""
    groups: dict = {}
    for row in rows:
        groups.setdefault((row["modality"], row["shots"]), []).append(row)
    across = any(len(row["tasks"]) > 1 for row in rows) or len({t for row in rows for t in row["tasks"]}) > 1
    title = "Leaderboard across tasks" if across else f"Tied with the best, per K ({rows[0]['tasks'][0]})"
    blocks: list[tuple] = [(top, title), ("p", NOTE + (ACROSS if across else SINGLE))]
    for group in groups.values():
        blocks += group_blocks(group)
    return blocks


def leaderboard_blocks(study_dirs, top: str = "h2") -> list[tuple]:
    """The studies' leaderboard as report blocks: across their tasks when they hold several, the tied group per
    K when their one task has several methods (or models); nothing with one method, or before any figure."""
    dirs = [Path(d) for d in study_dirs if (Path(d) / STATE).is_file() and (Path(d) / RESULTS).is_file()]
    rows = table(collect(dirs)) if dirs else []
    several_tasks = len({t for row in rows for t in row["tasks"]}) > 1
    several_methods = any(sum(r["modality"] == row["modality"] and r["shots"] == row["shots"] for r in rows) > 1
                          for row in rows)
    return board_blocks(rows, top) if several_tasks or several_methods else []


def markdown(rows: list[dict]) -> str:
    """``leaderboard.md``: the leaderboard's blocks as Markdown (text from the studies escaped)."""
    return to_markdown(board_blocks(rows), Path("."))


def csv_text(rows: list[dict]) -> str:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(["modality", "shots", "method", "task", "mean", "ci_low", "ci_high", "tied_with_best", "mde",
                     "n_seeds", "mean_over_tasks", "rank", "rank_low", "rank_high"])
    for row in rows:
        for t in row["tasks"]:
            c = row["cells"][t] or (None, None, None)
            writer.writerow([row["modality"], row["shots"], row["method"], t, *c, row["tied"][t],
                             row.get("mde", {}).get(t), len(row["seeds"][t]),
                             row["mean"][0] if row["mean"] else None, *(row["rank"] or (None, None, None))])
    return buffer.getvalue()


def write_leaderboard(study_dirs, out_dir) -> tuple[Path, Path]:
    """``leaderboard.md`` and ``leaderboard.csv`` in ``out_dir`` from the studies' results."""
    from transferlab.tracking.files import atomic_write

    rows = table(collect(study_dirs))
    if not rows:
        raise TransferlabError("the studies have no test figures yet: finish a cell of each first")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "leaderboard.md", markdown(rows))
    atomic_write(out / "leaderboard.csv", csv_text(rows))
    return out / "leaderboard.md", out / "leaderboard.csv"
