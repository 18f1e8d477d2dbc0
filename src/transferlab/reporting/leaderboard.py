"""A leaderboard across tasks from finished studies (``transferlab leaderboard STUDY...``).

Rows are methods (``method@model`` on a model axis), columns tasks at each K (test split, each task's metric).
A cell is the mean over seeds with a t interval (one seed: the run's bootstrap interval). Per modality and K:
the mean over the tasks every listed method ran (interval: the tasks' half-widths combined as independent,
sqrt(sum h^2) / T), the average rank (1 = best, ties share the mean rank) with a bootstrap interval over
tasks, and in each column the group tied with the best: McNemar's exact test of every method against the best
on the same test examples (all seeds' predictions, paired by seed and example), Holm-adjusted, tied where
the adjusted p >= 0.05. The minimum detectable effect of each column: the smallest difference of two
proportions around the best figure a two-sided 5% test finds with 80% power at the task's test size. MTEB's
format (mean over resamples, x100, two decimals) and SetFit's (median and IQR over splits) beside it.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
from scipy import stats

from transferlab.errors import TransferlabError
from transferlab.evaluation.statistics import holm, paired_comparison
from transferlab.studies.results import METRICS, method_label, read_results

ALPHA, POWER, CONFIDENCE, N_RESAMPLES, SEED = 0.05, 0.8, 0.95, 2000, 0


def t_interval(values) -> tuple[float, float, float]:
    """(mean, low, high): the mean of ``values`` and its 95% Student-t interval (one value: itself)."""
    v = np.asarray(values, dtype=float)
    mean = float(v.mean())
    if v.size < 2:
        return mean, mean, mean
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    return mean, mean - half, mean + half


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


def tied_with_best(correct: dict[str, np.ndarray], means: dict[str, float]) -> tuple[str, set[str], dict]:
    """(best, the methods tied with it, Holm-adjusted p per other method): McNemar's exact test of each method
    against the best on the same examples (vectors paired position by position)."""
    best = max(means, key=lambda m: (means[m], m))
    others = [m for m in means if m != best and m in correct and best in correct
              and correct[m].shape == correct[best].shape]
    p = [paired_comparison(correct[m], correct[best], n_resamples=1)["mcnemar_p"] for m in others]
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

def study_tasks(study_dir: Path) -> dict:
    state = json.loads((study_dir / "study.json").read_text())
    return state, state.get("tasks") or {}


def test_correct(run_dir: Path, method: str) -> np.ndarray | None:
    path = run_dir / "predictions" / f"{method}.jsonl"
    if not path.is_file():
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
    """{(modality, K): {task: {"metric", "n", "scores": {method: {seed: value}}, "correct": {method: {seed: v}}}}}."""
    board: dict = {}
    for study_dir in map(Path, study_dirs):
        if not (study_dir / "study.json").is_file() or not (study_dir / "results.csv").is_file():
            raise TransferlabError(f"{study_dir} is not a finished study (no study.json and results.csv): give "
                                   f"study folders (DIR/study/<name>)")
        state, tasks = study_tasks(study_dir)
        for row in read_results(study_dir):
            task = tasks.get(row["dataset"], {})
            if row["split"] != "test" or row["metric"] != task.get("metric", "accuracy"):
                continue
            column = board.setdefault((task.get("modality", "-"), str(row["shots"])), {}).setdefault(
                row["dataset"], {"metric": row["metric"], "scores": {}, "correct": {}})
            column["scores"].setdefault(row["method"], {})[row["seed"]] = row["value"]
        for cell in (c for c in state["cells"] if c.get("status") == "completed"):
            task = cell.get("arm", "").partition("#")[2] or None
            k = "full" if cell["shots"] is None else str(cell["shots"])
            for key, column in ((key, col) for key, cols in board.items() if key[1] == k
                                for name, col in cols.items() if name == task):
                for method, vector in cell_vectors(study_dir, cell).items():
                    column["correct"].setdefault(method, {})[cell["seed"]] = vector
    return board


# --- the table -------------------------------------------------------------------------------------

def column_ties(column: dict, means: dict[str, float]) -> set[str]:
    """The methods tied with the best of one column (predictions paired by seed and example)."""
    seeds = {m: set(v) for m, v in column["correct"].items() if m in means}
    common = sorted(set.intersection(*seeds.values())) if seeds else []
    vectors = {m: np.concatenate([column["correct"][m][s] for s in common]) for m in seeds if common}
    return tied_with_best(vectors, means)[1]


def table(board: dict) -> list[dict]:
    """One record per (modality, K, method): its cells, the mean over tasks and the average rank."""
    out = []
    for (modality, k), columns in sorted(board.items()):
        tasks = sorted(columns)
        methods = sorted({m for col in columns.values() for m in col["scores"]})
        cells = {(t, m): t_interval(list(columns[t]["scores"][m].values()))
                 for t in tasks for m in methods if m in columns[t]["scores"]}
        ties = {t: column_ties(columns[t], {m: cells[(t, m)][0] for m in methods if (t, m) in cells}) for t in tasks}
        full = [m for m in methods if all((t, m) in cells for t in tasks)]
        ranked = dict(zip(full, average_rank(np.array([[cells[(t, m)][0] for t in tasks] for m in full])))) \
            if full else {}
        for m in methods:
            row = {"modality": modality, "shots": k, "method": m, "tasks": tasks,
                   "cells": {t: cells.get((t, m)) for t in tasks}, "tied": {t: m in ties[t] for t in tasks},
                   "seeds": {t: list(columns[t]["scores"].get(m, {}).values()) for t in tasks},
                   "mean": mean_over_tasks([cells[(t, m)] for t in tasks]) if m in ranked else None,
                   "rank": ranked.get(m)}
            out.append(row)
        for t in tasks:  # the minimum detectable effect at the column's test size, around its best figure
            n = max((len(v) for v in columns[t]["correct"].get(max(columns[t]["scores"], key=lambda m: cells[(t, m)][0]), {}).values()), default=0)
            best = max(cells[(t, m)][0] for m in methods if (t, m) in cells)
            for row in out[-len(methods):]:
                row.setdefault("mde", {})[t] = minimum_detectable_effect(best, n) if n else None
    return out


def pct(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def cell_text(c, tied: bool) -> str:
    if c is None:
        return "–"
    text = f"{pct(c[0])} [{pct(c[1])}, {pct(c[2])}]"
    return f"**{text}**" if tied else text


def markdown(rows: list[dict]) -> str:
    """Per modality and K: a table of methods x tasks, the mean and the average rank; bold: tied with the best."""
    lines = ["# Leaderboard", "", "Test split, each task's metric x100, mean over seeds [95% interval]. **Bold**: "
             "statistically tied with the column's best (McNemar, Holm, 5%). Mean and average rank over the tasks "
             "every method ran; a method missing a task has neither.", ""]
    groups: dict = {}
    for row in rows:
        groups.setdefault((row["modality"], row["shots"]), []).append(row)
    for (modality, k), group in groups.items():
        tasks = group[0]["tasks"]
        lines += [f"## {modality}, K = {k}", "",
                  "| method | " + " | ".join(tasks) + " | mean | average rank | MTEB | SetFit |",
                  "|---" * (len(tasks) + 5) + "|"]
        for row in sorted(group, key=lambda r: (r["rank"] is None, r["rank"] or (0,))):
            every = [v for t in tasks for v in row["seeds"][t]]
            rank = "–" if row["rank"] is None else f"{row['rank'][0]:.2f} [{row['rank'][1]:.2f}, {row['rank'][2]:.2f}]"
            lines.append(f"| {row['method']} | " + " | ".join(cell_text(row["cells"][t], row["tied"][t]) for t in tasks)
                         + f" | {cell_text(row['mean'], False)} | {rank} | {mteb_format(every) if every else '–'} | "
                         + f"{setfit_format(every) if every else '–'} |")
        mde = group[0].get("mde", {})
        lines += ["", "Minimum detectable effect (80% power, 5%, x100): "
                  + ", ".join(f"{t} {pct(mde.get(t))}" for t in tasks), ""]
    return "\n".join(lines)


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
    atomic_write(out / "leaderboard.md", markdown(rows) + "\n")
    atomic_write(out / "leaderboard.csv", csv_text(rows))
    return out / "leaderboard.md", out / "leaderboard.csv"
