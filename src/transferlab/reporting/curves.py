"""A label-budget study in the report: one learning curve per experiment and a table per K, from results.csv.

The curve: x is the labelled examples per class (log2 axis; a full-data cell sits at its own per-class
count, the curve's last point), y the test accuracy; one line per method, the mean over seeds with a band
(the spread of the seeds, or the 95% bootstrap interval when there is one seed); zero-shot (no labels) a
flat line; the reference lab's full-data figures marked as points. The table: mean ± sd over seeds
per method and K, with the mean of the per-cell 95% intervals.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from transferlab.errors import TransferlabError  # noqa: E402
from transferlab.reporting.runs import REFERENCE  # noqa: E402
from transferlab.studies.results import RESULTS, read_results  # noqa: E402
from transferlab.studies.shots import STATE, cell_dirs  # noqa: E402
from transferlab.tracking.files import read_json  # noqa: E402

ZERO_SHOT = "zero_shot"  # methods named so use no labels: the same at every K, drawn flat
CURVE_HEADERS = ["method", "K (per class)", "test accuracy (mean ± sd over seeds)", "cells", "95% interval (mean of cells)"]


def per_class(study_dir: Path, state: dict) -> dict[tuple[str, str], float]:
    """``{(experiment, shots): examples per class}``: K itself, or a full-data cell's train count / classes."""
    out = {}
    for cell in state["cells"]:
        key = (cell["experiment"], "full" if cell["shots"] is None else str(cell["shots"]))
        if cell["shots"] is not None:
            out[key] = float(cell["shots"])
            continue
        path = study_dir / cell["run_dir"] / "metrics.json"
        if path.is_file():  # a training-free run (zero-shot) has no train count: drawn flat, needs no x
            metrics = read_json(path, "metrics")
            train = (metrics.get("n_examples") or {}).get("train")
            if train:
                out[key] = train / max(metrics.get("n_classes") or 1, 1)
    return out


def curve_points(rows: list[dict], xs: dict, by: str = "experiment") -> dict[str, dict[str, list]]:
    """``{group: {method: [(x, shots, [values over seeds], [(lo, hi)...]), ...]}}`` of test accuracy, one
    group per value of the ``by`` column (``experiment``, or ``dataset``: every method on one data set in one
    figure, a method name two experiments share named by its experiment)."""
    grouped: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    owner: dict = {}
    for row in rows:
        if row["split"] == "test" and row["metric"] == "accuracy":
            method = row["method"]
            if owner.setdefault((row[by], method), row["experiment"]) != row["experiment"]:
                method = f"{method} ({row['experiment']})"
            grouped[row[by]][method][(row["experiment"], str(row["shots"]))].append(row)
    out: dict = {}
    for group, methods in grouped.items():
        for method, by_shots in methods.items():
            points = []
            for (experiment, shots), cells in by_shots.items():
                x = xs.get((experiment, shots))
                if x is not None:
                    points.append((x, shots, [c["value"] for c in cells], [(c["ci_low"], c["ci_high"]) for c in cells]))
            if points:  # a training-free full-data run (the zeroshot stage) has no x: its line comes from K cells
                out.setdefault(group, {})[method] = sorted(points)
    for methods in out.values():  # the zeroshot stage's zero_shot and the lora run's: the same line, drawn once
        for method in [m for m in methods if " (" in m]:
            plain = method.split(" (")[0]
            if plain not in methods:  # the first owner of the name drew nothing (no x): the name is free
                methods[plain] = methods.pop(method)
            elif methods[plain] == methods[method]:
                del methods[method]
    return out


def band(values: list[float], intervals: list[tuple]) -> tuple[float, float, float]:
    """(mean, low, high): the seeds' spread (± sd), or the cell's interval when there is one seed."""
    mean = float(np.mean(values))
    if len(values) > 1:
        sd = float(np.std(values, ddof=1))
        return mean, mean - sd, mean + sd
    low, high = intervals[0]
    return mean, (mean if low is None else low), (mean if high is None else high)


def curve_figure(experiment: str, methods: dict[str, list], path: Path) -> tuple[Path, str]:
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    xs = [p[0] for points in methods.values() for p in points]
    full = [p[0] for points in methods.values() for p in points if p[1] == "full"]
    right = max(full) if full else 2 * max(xs, default=1.0)  # the lab's figures: at the full-data point, or beyond
    greys = iter(["dimgrey", "darkgrey", "silver", "black"])
    for method, points in sorted(methods.items()):
        if method.startswith(ZERO_SHOT):
            mean, low, high = band(*zip(*[(v, ci) for p in points for v, ci in zip(p[2], p[3])]))
            color = next(greys, "grey")
            ax.axhline(mean, linestyle="--", color=color, label=f"{method.replace('_', '-')} ({mean:.3f})")
            ax.axhspan(low, high, color=color, alpha=0.10)
            continue
        stats = [band(p[2], p[3]) for p in points]
        x = [p[0] for p in points]
        line, = ax.plot(x, [s[0] for s in stats], marker="o", label=method)
        ax.fill_between(x, [s[1] for s in stats], [s[2] for s in stats], color=line.get_color(), alpha=0.18)
    for method in methods:
        lab = REFERENCE.get(method, (None, {}))[1].get("test/accuracy")
        if lab is not None:
            ax.plot([right], [lab], marker="*", markersize=12, linestyle="none", color="black")
            ax.annotate(f"lab {method} (full data)", (right, lab), textcoords="offset points", xytext=(-8, 6),
                        ha="right", fontsize=8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("labelled examples per class (log2)")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"{experiment}: learning curve")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path, (f"{experiment}: test accuracy against labelled examples per class; lines are the mean over seeds, "
                  f"bands ± 1 sd over seeds (one seed: the 95% bootstrap interval); the full-data cell is the last "
                  f"point; stars: the reference lab's full-data figures")


def curve_rows(methods: dict[str, list]) -> list[list[str]]:
    """One row per method and K; zero-shot (the same at every K) as one row over all its cells."""
    rows = []
    for method, points in sorted(methods.items()):
        if method.startswith(ZERO_SHOT):
            points = [(0.0, "0", [v for p in points for v in p[2]], [ci for p in points for ci in p[3]])]
        for x, shots, values, intervals in points:
            sd = f" ± {np.std(values, ddof=1):.4f}" if len(values) > 1 and np.ptp(values) > 0 else ""
            lows = [lo for lo, _ in intervals if lo is not None]
            highs = [hi for _, hi in intervals if hi is not None]
            ci = f"[{np.mean(lows):.3f}, {np.mean(highs):.3f}]" if lows and highs else "–"
            k = "any (no labels)" if shots == "0" else (f"full ({x:.0f})" if shots == "full" else shots)
            rows.append([method, k, f"{np.mean(values):.4f}{sd}", str(len(values)), ci])
    return rows


def study_blocks(study_dir: str | Path, assets: Path) -> list[tuple]:
    """The report blocks of the study in ``study_dir``: nothing when it holds none (or no results yet)."""
    study_dir = Path(study_dir)
    if not (study_dir / STATE).is_file() or not (study_dir / RESULTS).is_file():
        return []
    state = read_json(study_dir / STATE, "study state")
    curves = curve_points(read_results(study_dir), per_class(study_dir, state), by="dataset")
    done = sum(c["status"] == "completed" for c in state["cells"])
    blocks: list[tuple] = [("h2", "Label-budget study"),
                           ("p", f"{done} of {len(state['cells'])} cells completed; draws "
                                 f"{'nested' if state['nested'] else 'independent'}, seeds: {state['seeds']}; every "
                                 f"cell scored on the whole test split. Figures: {study_dir / RESULTS}.")]
    for dataset, methods in sorted(curves.items()):
        if all(method.startswith(ZERO_SHOT) for method in methods):
            continue  # zero-shot alone: no curve to draw it beside
        path, caption = curve_figure(dataset, methods, assets / f"curve-{dataset}.png")
        blocks += [("h3", f"Learning curve: {dataset}"), ("img", path, caption),
                   ("table", CURVE_HEADERS, curve_rows(methods))]
    failed = [c for c in state["cells"] if c["status"] == "failed"]
    blocks += [("p", f"FAILED cell {c['run_dir']}: {c.get('error')}") for c in failed]
    return blocks


def study_curves(study_dir: Path) -> dict[str, dict[str, list]]:
    """The curve points of one study directory per data set (see ``curve_points``), refused when it holds no
    results yet."""
    if not (study_dir / STATE).is_file() or not (study_dir / RESULTS).is_file():
        raise TransferlabError(f"{study_dir} holds no finished label-budget study (no {STATE} and {RESULTS}): pass "
                               f"the study directory a `--shots` command printed, once it has ended")
    state = read_json(study_dir / STATE, "study state")
    return curve_points(read_results(study_dir), per_class(study_dir, state), by="dataset")


def merged_curves(study_dirs: Sequence[Path]) -> dict[str, dict[str, list]]:
    """Several studies' curves, one figure per data set: a method met again with the same points (a frozen
    method of two studies on the same draws) is drawn once; with other points it is named by its study."""
    merged: dict[str, dict[str, list]] = {}
    for study_dir in study_dirs:
        for dataset, methods in study_curves(study_dir).items():
            into = merged.setdefault(dataset, {})
            for method, points in methods.items():
                if method in into and into[method] != points:
                    method = f"{method} ({study_dir.name})"
                into.setdefault(method, points)
    return merged


def readme_study_blocks(study_dirs: Sequence[Path], figures: Path) -> list[tuple]:
    """The README's label-budget block: per data set one curve of every method (saved into ``figures``) and
    its table per K."""
    figures.mkdir(parents=True, exist_ok=True)
    blocks: list[tuple] = []
    for dataset, methods in sorted(merged_curves(study_dirs).items()):
        if all(method.startswith(ZERO_SHOT) for method in methods):
            continue
        path, caption = curve_figure(dataset, methods, figures / f"curve-{dataset}.png")
        blocks += [("h3", f"Learning curve: {dataset}"), ("img", path, caption),
                   ("table", CURVE_HEADERS, curve_rows(methods))]
    return blocks


def write_study_report(study_dir: str | Path) -> Path:
    """The study's report: its curves and tables, then the usual report of its full-data cells."""
    from transferlab.reporting.report import write_report

    study_dir = Path(study_dir)
    state = read_json(study_dir / STATE, "study state")
    return write_report(cell_dirs(study_dir, state, full_only=True), study_dir)
