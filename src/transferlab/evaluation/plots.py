"""PNG plots of evaluation results (matplotlib, headless): a confusion matrix for few classes, the
most-confused class pairs for many."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_confusion_matrix(matrix: np.ndarray, label_names: Sequence[str], path: str | Path,
                          title: str = "Confusion matrix") -> Path:
    """A labelled, count-annotated confusion matrix (rows: true class, columns: predicted)."""
    n = len(label_names)
    size = max(4.0, 0.6 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    im = ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n), label_names, rotation=45, ha="right")
    ax.set_yticks(range(n), label_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    threshold = matrix.max() / 2 if matrix.size else 0
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center",
                    color="white" if matrix[i, j] > threshold else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def top_confusions(matrix: np.ndarray, k: int = 20) -> list[tuple[int, int, int]]:
    """The k largest off-diagonal cells as (true, predicted, count), largest first, count > 0."""
    off = np.array(matrix, dtype=np.int64, copy=True)
    np.fill_diagonal(off, 0)
    flat = np.argsort(-off, axis=None, kind="stable")[:k]
    pairs = [(int(i), int(j), int(off[i, j])) for i, j in zip(*np.unravel_index(flat, off.shape))]
    return [p for p in pairs if p[2] > 0]


def plot_top_confusions(matrix: np.ndarray, label_names: Sequence[str], path: str | Path, k: int = 20,
                        title: str = "Most-confused class pairs") -> Path:
    """Horizontal bars, one per (true -> predicted) pair, with the share of the true class's examples."""
    pairs = top_confusions(matrix, k)
    support = np.asarray(matrix).sum(axis=1)
    fig, ax = plt.subplots(figsize=(8, 1.5 + 0.32 * max(len(pairs), 1)))
    if pairs:
        labels = [f"{label_names[i]} -> {label_names[j]}" for i, j, _ in pairs][::-1]
        counts = [c for _, _, c in pairs][::-1]
        bars = ax.barh(range(len(pairs)), counts, color="tab:red")
        ax.set_yticks(range(len(pairs)), labels, fontsize=8)
        for bar, (i, _, c) in zip(bars, pairs[::-1]):
            ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2,
                    f" {c} ({c / max(support[i], 1):.0%})", va="center", fontsize=7)
    else:
        ax.text(0.5, 0.5, "no confusions", ha="center", va="center", transform=ax.transAxes)
    accuracy = np.trace(matrix) / max(np.sum(matrix), 1)
    ax.set_xlabel("examples of the true class predicted as the other (share of its support)")
    ax.set_title(f"{title} (top {k} of {len(label_names)} classes; accuracy {accuracy:.3f})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_reliability(table: dict, path: str | Path, title: str = "Reliability diagram",
                     ece: float | None = None) -> Path:
    """Accuracy against mean confidence per bin (``calibration.reliability``), the diagonal for perfect
    calibration, and below it how many predictions fall in each bin."""
    edges, count = np.asarray(table["edges"]), np.asarray(table["count"])
    centres, width = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    filled = count > 0
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(4.8, 5.4), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.bar(centres[filled], np.asarray(table["accuracy"])[filled], width=width[filled], color="tab:blue",
           edgecolor="white", alpha=0.85, label="accuracy in the bin")
    ax.plot(np.asarray(table["confidence"])[filled], np.asarray(table["accuracy"])[filled], "o", color="tab:orange",
            markersize=3, label="(mean confidence, accuracy)")
    ax.plot([0, 1], [0, 1], "--", color="gray", label="perfectly calibrated")
    ax.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy",
           title=title + (f" (ECE {ece:.3f})" if ece is not None else ""))
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)
    hist.bar(centres, count, width=width, color="tab:gray", edgecolor="white")
    hist.set(xlabel="confidence (probability of the predicted class)", ylabel="predictions")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
