"""The report's pictures, each with a caption that says what it shows.

- ``summary_chart``: each method's test accuracy with its 95% interval beside the reference lab's figure
  (drawn only for rows on as many classes as the lab's task);
- ``reliability_chart``: the reliability diagram of a run's primary method on test;
- ``training_blocks``: loss and validation accuracy per step, read back from TensorBoard (a series of fewer
  than 3 points is a table, not a panel holding a dot);
- ``selection_plot``: experiment 1's validation accuracy per C (log axis), the chosen C marked.

Every picture is written with ``reporting.output.save_figure`` (never through a link).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from transferlab.evaluation.calibration import expected_calibration_error, reliability  # noqa: E402
from transferlab.evaluation.plots import plot_reliability  # noqa: E402
from transferlab.reporting.output import save_figure, save_rendered  # noqa: E402
from transferlab.reporting.runs import LAB_CLASSES, REFERENCE, RunRecord  # noqa: E402
from transferlab.reporting.uncertainty import lab_figure  # noqa: E402


def summary_chart(groups: Sequence[dict], path: Path) -> tuple[Path, str] | None:
    """Horizontal bars, one per method (its seeds together): our test accuracy with its 95% interval as an
    error bar, and the lab's figure (hatched) where it has one on as many classes. The axis runs from 0 to 1."""
    if not groups:
        return None
    fig, ax = plt.subplots(figsize=(9, 0.9 + 0.75 * len(groups)))
    labels, shown_lab = [], False
    for i, g in enumerate(groups):
        y, ours, found = len(groups) - 1 - i, g["test_mean"], g["interval"]
        xerr = [[max(ours - found["low"], 0)], [max(found["high"] - ours, 0)]] if found else None
        ax.barh(y + 0.18, ours, height=0.34, color="tab:blue", xerr=xerr, capsize=3,
                label="transferlab, 95% interval (model used: see the runs table)" if i == 0 else None)
        text = f"{ours:.3f}" + (f" [{found['low']:.3f}, {found['high']:.3f}]" if found else "")
        ax.text(0.01, y + 0.18, text, va="center", fontsize=8, color="black",
                bbox={"facecolor": "white", "alpha": 0.75, "edgecolor": "none", "pad": 1})
        lab = lab_figure(g["method"], g["runs"])
        if lab is not None:
            ax.barh(y - 0.18, lab, height=0.34, color="white", edgecolor="tab:gray", hatch="//",
                    label=None if shown_lab else "reference lab (its own model)")
            ax.text(0.01, y - 0.18, f"lab {lab:.3f}: {REFERENCE[g['method']][0]}", va="center", fontsize=7,
                    color="black", bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
            shown_lab = True
        seeds = f"{g['n_seeds']} seeds" if g["n_seeds"] > 1 else "1 run"
        labels.append(f"{g['label']}\n({g['n_classes']} classes, {seeds})")
    ax.set_yticks(range(len(groups)), labels[::-1], fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("test accuracy")
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    counts = ", ".join(sorted({str(g["n_classes"]) for g in groups}, key=int))
    caption = (f"Test accuracy of each method (one bar per method; several seeds averaged) with its 95% bootstrap "
               f"interval, on {counts} classes")
    if shown_lab:  # only on the lab's own task
        caption += (f", beside the reference lab's figure (hatched) on its own task ({lab_tasks()}); the lab ran "
                    f"DistilBERT and CLIP ViT-B/16, so rows with other models compare only loosely")
    return save_figure(fig, path), caption


def lab_tasks() -> str:
    """``features, finetune: 2 classes; zero_shot, lora: 200 classes``."""
    by_count: dict[int, list[str]] = {}
    for method, n in LAB_CLASSES.items():
        by_count.setdefault(n, []).append(method)
    return "; ".join(f"{', '.join(methods)}: {n} classes" for n, methods in sorted(by_count.items()))


def reliability_chart(record: RunRecord, path: Path) -> tuple[Path, str] | None:
    """The reliability diagram of the run's primary method on test, from its predictions file."""
    method = record.metrics.primary if record.metrics else None
    rows = record.rows(method) if method else []
    if not rows or all(r.get("probability") == 1.0 for r in rows):
        return None
    confidence = [r["probability"] for r in rows]
    correct = [r["label"] == r["prediction"] for r in rows]
    table, ece = reliability(confidence, correct), expected_calibration_error(confidence, correct)
    save_rendered(lambda made: plot_reliability(table, made, title=f"{method}, test", ece=ece), path)
    caption = (f"{record.name}: reliability of {method} on the test split: accuracy against the probability of the "
               f"predicted class in 15 equal-width bins (the dashed diagonal is perfect calibration; below it, "
               f"how many predictions fall in each bin)")
    return path, caption


CURVE_TAGS = ("train/loss", "eval/accuracy")
TITLES = {"train/loss": "training loss", "eval/accuracy": "validation accuracy"}
MIN_PANEL_POINTS = 3  # fewer points than this are a table: a panel would hold a dot or two


def training_blocks(record: RunRecord, path: Path) -> list[tuple]:
    """Training loss and validation accuracy per step: a panel per series of at least 3 points (every point
    marked), and the shorter series as one table of their values."""
    curves = {t: record.scalars[t] for t in CURVE_TAGS if record.scalars.get(t)}
    drawn = {t: points for t, points in curves.items() if len(points) >= MIN_PANEL_POINTS}
    short = {t: points for t, points in curves.items() if t not in drawn}
    blocks: list[tuple] = []
    if drawn:
        fig, axes = plt.subplots(1, len(drawn), figsize=(5.5 * len(drawn), 3.4), squeeze=False)
        for ax, (tag, points) in zip(axes[0], drawn.items()):
            steps, values = zip(*points)
            ax.plot(steps, values, marker="o" if len(steps) < 30 else None, markersize=4)
            ax.set(xlabel="optimizer step", title=TITLES[tag])
            ax.grid(alpha=0.3)
        caption = (f"{record.experiment} / {record.name}: {' and '.join(TITLES[t] for t in drawn)} per step, read "
                   f"from its TensorBoard event files ({', '.join(f'{len(p)} points' for p in drawn.values())})")
        blocks.append(("img", save_figure(fig, path), caption))
    if short:
        blocks += [("p", f"{record.name}: {' and '.join(TITLES[t] for t in short)} logged at fewer than "
                         f"{MIN_PANEL_POINTS} steps (read from its TensorBoard event files):"),
                   ("table", ["series", "optimizer step", "value"],
                    [[TITLES[t], str(step), f"{value:.4f}"] for t, points in short.items() for step, value in points])]
    return blocks


def selection_plot(record: RunRecord, path: Path) -> tuple[Path, str] | None:
    """Validation accuracy per C tried (log axis), the chosen C marked: experiment 1's model selection."""
    selection = record.metrics.details.get("selection") if record.metrics else None
    if not isinstance(selection, dict) or len(selection.get("grid_C", [])) < 2:  # lora records its own kind
        return None
    grid, scores, chosen = selection["grid_C"], selection["validation_accuracy"], selection["chosen_C"]
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    ax.plot(grid, scores, marker="o")
    ax.scatter([chosen], [scores[grid.index(chosen)]], s=160, facecolors="none", edgecolors="tab:red",
               label=f"chosen C={chosen}")
    ax.set(xscale="log", xlabel="C (log scale)", ylabel="validation accuracy")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    caption = (f"{record.name}: validation accuracy of the {selection.get('classifier', 'classifier')} for each C "
               f"tried; the circled C was kept and scored once on test")
    return save_figure(fig, path), caption
