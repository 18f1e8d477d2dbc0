"""Learning curves of label-budget studies: the points from results.csv, one figure per data set, a table per K.

The curve: x is the labelled examples per class (log2 axis; a full-data cell sits at its own per-class
count, the curve's last point), y the test accuracy; one line per method, the mean over seeds with a band
(the spread of the seeds, or the 95% bootstrap interval when there is one seed); zero-shot (no labels) a
flat line; the reference lab's full-data figures marked as stars, named in the legend, and only on a data set
with as many classes as the lab's task (the caption gives the class count). The table: mean ± sd over seeds
per method and K, with the mean of the per-cell 95% intervals.

A study's state is read through the studies' ledger (``studies.shots.read_study``: its shape checked, every
cell's folder inside the study). Figure names built from results.csv (the data set) go through
``reporting.output.asset_name``.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from transferlab.config import load_yaml  # noqa: E402
from transferlab.errors import TransferlabError  # noqa: E402
from transferlab.reporting.output import asset_name, save_figure  # noqa: E402
from transferlab.reporting.runs import LAB_CLASSES, REFERENCE, on_lab_data  # noqa: E402
from transferlab.studies.results import RESULTS, dataset_name, read_results  # noqa: E402
from transferlab.studies.shots import STATE, read_study  # noqa: E402
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


def class_counts(study_dir: Path, state: dict) -> dict[str, int]:
    """``{data set: classes}`` from the completed cells' config.yaml and metrics.json."""
    out: dict[str, int] = {}
    for cell in state["cells"]:
        folder = study_dir / cell["run_dir"]
        if cell.get("status") != "completed" or not (folder / "metrics.json").is_file():
            continue
        config = load_yaml((folder / "config.yaml").read_text()) if (folder / "config.yaml").is_file() else {}
        n = read_json(folder / "metrics.json", "metrics").get("n_classes")
        if isinstance(config, dict) and isinstance(n, int):
            out.setdefault(dataset_name(config), n)
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


def lab_stars(ax, methods: dict[str, str], x: float, n_classes: int | None, dataset: str) -> list[str]:
    """The lab's full-data figure of each method (``{method: its line's colour}``) at ``x``, as a star in the
    method's colour named in the legend, where ``dataset`` is the lab's and its task had ``n_classes`` classes;
    the methods whose figure was left out for another class count. On other data: nothing."""
    skipped = []
    if not (on_lab_data(dataset, n_classes, image=False) or on_lab_data(dataset, n_classes, image=True)):
        return skipped
    for method in sorted(methods):
        lab = REFERENCE.get(method, (None, {}))[1].get("test/accuracy")
        if lab is None:
            continue
        if n_classes != LAB_CLASSES.get(method):
            skipped.append(method)
            continue
        ax.plot([x], [lab], marker="*", markersize=14, linestyle="none", color=methods[method],
                markeredgecolor="black", label=f"lab {method} (full data, {LAB_CLASSES[method]} classes): {lab:.3f}")
    return skipped


def curve_figure(dataset: str, methods: dict[str, list], path: Path, n_classes: int | None = None) -> tuple[Path, str]:
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    xs = [p[0] for points in methods.values() for p in points]
    full = [p[0] for points in methods.values() for p in points if p[1] == "full"]
    right = max(full) if full else 2 * max(xs, default=1.0)  # the lab's figures: at the full-data point, or beyond
    greys = iter(["dimgrey", "darkgrey", "silver", "black"])
    colors: dict[str, str] = {}
    for method, points in sorted(methods.items()):
        if method.startswith(ZERO_SHOT):
            mean, low, high = band(*zip(*[(v, ci) for p in points for v, ci in zip(p[2], p[3])]))
            colors[method] = next(greys, "grey")
            ax.axhline(mean, linestyle="--", color=colors[method], label=f"{method.replace('_', '-')} ({mean:.3f})")
            ax.axhspan(low, high, color=colors[method], alpha=0.10)
            continue
        stats = [band(p[2], p[3]) for p in points]
        x = [p[0] for p in points]
        line, = ax.plot(x, [s[0] for s in stats], marker="o", label=method)
        colors[method] = line.get_color()
        ax.fill_between(x, [s[1] for s in stats], [s[2] for s in stats], color=colors[method], alpha=0.18)
    skipped = lab_stars(ax, colors, right, n_classes, dataset)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("labelled examples per class (log2)")
    ax.set_ylabel("test accuracy")
    classes = f" ({n_classes} classes)" if n_classes else ""
    ax.set_title(f"{dataset}{classes}: learning curve")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    caption = (f"{dataset}{classes}: test accuracy against labelled examples per class; lines are the mean over "
               f"seeds, bands ± 1 sd over seeds (one seed: the 95% bootstrap interval); the full-data cell is the "
               f"last point")
    lab_data = on_lab_data(dataset, n_classes, image=False) or on_lab_data(dataset, n_classes, image=True)
    if lab_data and len(skipped) < sum(m in REFERENCE and "test/accuracy" in REFERENCE[m][1] for m in methods):
        caption += "; stars: the reference lab's full-data figures on its task's classes"
    if skipped:
        caption += (f"; the lab's figures for {', '.join(skipped)} are not drawn: its task had "
                    f"{', '.join(sorted({str(LAB_CLASSES[m]) for m in skipped}))} classes")
    return save_figure(fig, path), caption


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


def curve_section(dataset: str, methods: dict[str, list], folder: Path, n_classes: int | None) -> list[tuple]:
    """One data set's learning curve (saved into ``folder``) and its table per K, as report blocks; nothing
    for zero-shot alone (no curve to draw it beside)."""
    if all(method.startswith(ZERO_SHOT) for method in methods):
        return []
    path, caption = curve_figure(dataset, methods, folder / asset_name("curve", dataset), n_classes)
    return [("h3", f"Learning curve: {dataset}"), ("img", path, caption), ("table", CURVE_HEADERS, curve_rows(methods))]


def study_curves(study_dir: Path) -> dict[str, dict[str, list]]:
    """The curve points of one study directory per data set (see ``curve_points``), refused when it holds no
    results yet."""
    state = finished_study(study_dir)
    return curve_points(read_results(study_dir), per_class(study_dir, state), by="dataset")


def finished_study(study_dir: Path) -> dict:
    """The study's state (through the ledger's checks), refused in one line when it has no results yet."""
    if not (study_dir / STATE).is_file() or not (study_dir / RESULTS).is_file():
        raise TransferlabError(f"{study_dir} holds no finished label-budget study (no {STATE} and {RESULTS}): pass "
                               f"the study directory a `--shots` command printed, once it has ended")
    return read_study(study_dir)[0]


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
