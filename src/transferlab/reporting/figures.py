"""The report's pictures, each with a caption that says what it shows.

- ``summary_chart``: each method's test accuracy with its 95% interval beside the reference lab's figure;
- ``reliability_chart``: the reliability diagram of a run's primary method on test;
- ``training_curves``: loss and validation accuracy per step, read back from TensorBoard;
- ``selection_plot``: experiment 1's validation accuracy per C (log axis), the chosen C marked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from transferlab.evaluation.calibration import expected_calibration_error, reliability  # noqa: E402
from transferlab.evaluation.plots import plot_reliability  # noqa: E402
from transferlab.reporting.runs import REFERENCE, RunRecord  # noqa: E402
from transferlab.reporting.uncertainty import lab_figure  # noqa: E402


def save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def summary_chart(groups: Sequence[dict], path: Path) -> tuple[Path, str] | None:
    """Horizontal bars, one per method (its seeds together): our test accuracy with its 95% interval as an
    error bar, and the lab's figure (hatched) where it has one. The axis runs from 0 to 1."""
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
        lab = lab_figure(g["method"])
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
    caption = ("Test accuracy of each method (one bar per method; several seeds averaged) with its 95% bootstrap "
               "interval, beside the reference lab's figure (hatched; the lab ran DistilBERT and CLIP ViT-B/16 on "
               "200 classes, so rows with other models or class counts compare only loosely)")
    return save(fig, path), caption


def reliability_chart(record: RunRecord, path: Path) -> tuple[Path, str] | None:
    """The reliability diagram of the run's primary method on test, from its predictions file."""
    method = record.metrics.primary if record.metrics else None
    rows = record.rows(method) if method else []
    if not rows or all(r.get("probability") == 1.0 for r in rows):
        return None
    confidence = [r["probability"] for r in rows]
    correct = [r["label"] == r["prediction"] for r in rows]
    plot_reliability(reliability(confidence, correct), path, title=f"{method}, test",
                     ece=expected_calibration_error(confidence, correct))
    caption = (f"{record.name}: reliability of {method} on the test split: accuracy against the probability of the "
               f"predicted class in 15 equal-width bins (the dashed diagonal is perfect calibration; below it, "
               f"how many predictions fall in each bin)")
    return path, caption


CURVE_TAGS = ("train/loss", "eval/accuracy")


def training_curves(record: RunRecord, path: Path) -> tuple[Path, str] | str | None:
    """Training loss and validation accuracy per step; with a single evaluation, a sentence instead of a dot."""
    curves = {t: record.scalars[t] for t in CURVE_TAGS if t in record.scalars}
    if not curves:
        return None
    evaluations = curves.get("eval/accuracy", [])
    if len(evaluations) == 1:
        step, value = evaluations[0]
        note = f"One evaluation only: validation accuracy {value:.4f} at step {step}."
        if "train/loss" not in curves:
            return note
    fig, axes = plt.subplots(1, len(curves), figsize=(5.5 * len(curves), 3.4), squeeze=False)
    for ax, (tag, points) in zip(axes[0], curves.items()):
        steps, values = zip(*points)
        ax.plot(steps, values, marker="o" if len(steps) < 30 else None)
        ax.set(xlabel="optimizer step", title="training loss" if tag == "train/loss" else "validation accuracy")
        ax.grid(alpha=0.3)
    caption = (f"{record.experiment} / {record.name}: training loss and validation accuracy per step, read from "
               f"its TensorBoard event files" + (" (a single evaluation)" if len(evaluations) == 1 else ""))
    return save(fig, path), caption


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
    return save(fig, path), caption
