"""The report's pictures, each with a caption that says what it shows.

- ``summary_chart``: every run's test accuracy beside the reference lab's figure, with class counts;
- ``training_curves``: loss and validation accuracy per step, read back from TensorBoard;
- ``selection_plot``: experiment 1's validation accuracy per C (log axis), the chosen C marked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from transferlab.reporting.runs import REFERENCE, RunRecord  # noqa: E402


def save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def summary_bars(groups: Sequence[dict]) -> list[tuple[str, float, float | None, str]]:
    """(label, ours, lab or None, lab's model) per method group; ``groups`` from ``report.method_groups``."""
    out = []
    for g in groups:
        lab = REFERENCE.get(g["method"])
        name = g["method"] if g["method"] == g["experiment"] else f"{g['experiment']}: {g['method']}"
        label = f"{name}\n({g['n_classes']} classes, n={g['n_seeds']} seed"
        label += "s)" if g["n_seeds"] > 1 else ")"
        out.append((label, g["test_mean"], lab[1].get("test/accuracy") if lab else None, lab[0] if lab else ""))
    return out


def summary_chart(groups: Sequence[dict], path: Path) -> tuple[Path, str] | None:
    """Horizontal bars: ours (with the seeds' standard deviation) and the lab's figure (hatched)."""
    bars = summary_bars(groups)
    if not bars:
        return None
    fig, ax = plt.subplots(figsize=(9, 0.9 + 0.75 * len(bars)))
    for i, ((label, ours, lab, lab_model), g) in enumerate(zip(bars, groups)):
        y = len(bars) - 1 - i
        ax.barh(y + 0.18, ours, height=0.34, color="tab:blue", xerr=g["test_sd"] or None,
                label="transferlab (model used: see table)" if i == 0 else None)
        ax.text(ours + 0.01, y + 0.18, f"{ours:.3f}", va="center", fontsize=8)
        if lab is not None:
            ax.barh(y - 0.18, lab, height=0.34, color="white", edgecolor="tab:gray", hatch="//",
                    label="reference lab (its own model)" if not any(b[2] for b in bars[:i]) else None)
            ax.text(lab + 0.01, y - 0.18, f"{lab:.3f} lab: {lab_model}", va="center", fontsize=7, color="dimgray")
    ax.set_yticks(range(len(bars)), [b[0] for b in bars][::-1], fontsize=8)
    ax.set_xlim(0, 1.3)
    ax.set_xlabel("test accuracy")
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    caption = ("Test accuracy of each method beside the reference lab's figure (hatched; the lab ran DistilBERT "
               "and CLIP ViT-B/16 on 200 classes, so rows with other models or class counts compare only loosely)")
    return save(fig, path), caption


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
    if not selection or len(selection.get("grid_C", [])) < 2:
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
