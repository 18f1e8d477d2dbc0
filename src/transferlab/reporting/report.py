"""``report.md`` and a self-contained ``report.html`` from finished run directories, without recomputing.

Holds: a results table beside the reference lab's numbers (with the model actually used), training
curves read back from the TensorBoard event files, confusion plots, best and worst classes,
trainable parameters, wall time per stage, resolved configs, package versions and hardware.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import yaml  # noqa: E402

from transferlab.errors import TransferlabError  # noqa: E402
from transferlab.reporting.document import to_html, to_markdown  # noqa: E402
from transferlab.reporting.runs import REFERENCE, RunRecord, load_record  # noqa: E402

CURVE_TAGS = ("loss", "accuracy")
CURVE_PREFIXES = ("train/", "eval/", "selection/")  # the Trainer's curves and experiment 1's C search
STANDINS = {"standin": "offline stand-in: EfficientNet-Lite0 (ImageNet) image tower + all-MiniLM-L6-v2 text tower"}


def fmt(value, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def reference_text(label: str) -> str:
    if label not in REFERENCE:
        return "–"
    what, numbers = REFERENCE[label]
    return f"{what}: " + ", ".join(f"{k.replace('/accuracy', ' acc').replace('/f1', ' F1')} {v}"
                                   for k, v in numbers.items())


def results_rows(records: Sequence[RunRecord]) -> list[list[str]]:
    """One row per evaluated method; a run's methods are grouped under its name (shown on its first row)."""
    rows = []
    for r in records:
        evaluations = r.evaluations() or {r.experiment: {}}
        for i, (method, m) in enumerate(evaluations.items()):
            val, test = m.get("validation", {}), m.get("test", {})
            primary = r.metrics is not None and method == r.metrics.primary
            rows.append([r.experiment if i == 0 else "", r.name if i == 0 else "", method,
                         STANDINS.get(r.model, r.model) if i == 0 else "", data_size(r, test),
                         fmt(val.get("accuracy")), fmt(test.get("accuracy")), fmt(test.get("f1")),
                         fmt(test.get("top5_accuracy")) if "top5_accuracy" in test else "–",
                         reference_text(method), fmt(r.trainable_parameters) if primary else "–",
                         fmt(r.status.get("elapsed_s"), 1) if i == 0 else "", r.state if i == 0 else ""])
    return rows


def data_size(record: RunRecord, test: dict) -> str:
    """``classes / test examples``, so a 20-class demo is never read against a 200-class figure unawares."""
    if record.metrics is None:
        return "–"
    return f"{record.metrics.n_classes} / {fmt(test.get('n_examples'))}"


def plot_curves(record: RunRecord, path: Path) -> Path | None:
    tags = [t for t in record.scalars if any(k in t for k in CURVE_TAGS) and t.startswith(CURVE_PREFIXES)]
    if not tags:
        return None
    groups = [[t for t in tags if "loss" in t], [t for t in tags if "accuracy" in t]]
    groups = [g for g in groups if g]
    fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 3.6), squeeze=False)
    for ax, group in zip(axes[0], groups):
        for tag in group:
            steps, values = zip(*record.scalars[tag])
            ax.plot(steps, values, marker="o" if len(steps) < 30 else None, label=tag)
        ax.set_xlabel("step")
        ax.set_title("loss" if "loss" in group[0] else "accuracy")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{record.experiment} / {record.name}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def per_class_rows(m: dict, k: int = 5) -> list[list[str]]:
    per_class = m.get("test", {}).get("per_class", {})
    ranked = sorted(per_class.items(), key=lambda kv: kv[1]["recall"], reverse=True)
    picked = ranked if len(ranked) <= 2 * k else ranked[:k] + ranked[-k:]
    return [[("best" if i < min(k, len(picked) // 2 or 1) else "worst"), name, fmt(v["recall"]), fmt(v["f1"]),
             fmt(v["support"])] for i, (name, v) in enumerate(picked)]


RESULT_HEADERS = ["experiment", "run", "method", "model used", "classes / test examples", "val acc", "test acc",
                  "test F1 (macro)", "test top-5", "reference lab (its model)", "trainable params", "wall time (s)",
                  "status"]
STAGE_HEADERS = ["stage", "status", "wall time (s)", "run directory", "error"]


def stage_rows(stages: Sequence[dict]) -> list[list[str]]:
    return [[s["stage"], s["status"], fmt(s.get("elapsed_s"), 1), s.get("run_dir") or "–", s.get("error") or ""]
            for s in stages]


def build_blocks(records: Sequence[RunRecord], assets: Path, notes: Sequence[str] = (),
                 stages: Sequence[dict] = ()) -> list[tuple]:
    blocks: list[tuple] = [("h1", "transferlab report"),
                           ("p", f"Built {datetime.now().isoformat(timespec='seconds')} from {len(records)} run(s). "
                                 "Numbers are read from each run's metrics.json; curves from its TensorBoard files.")]
    if stages:
        blocks += [("h2", "Stages"), ("table", STAGE_HEADERS, stage_rows(stages))]
    for note in notes:
        blocks.append(("p", note))
    blocks += [("h2", "Results"),
               ("table", RESULT_HEADERS, results_rows(records)),
               ("p", "The reference lab used DistilBERT and CLIP ViT-B/16; where the model used differs "
                     "(e.g. the offline stand-ins), the numbers are not comparable one to one.")]
    failed = [r for r in records if r.status.get("status") == "failed"]
    for r in failed:
        blocks.append(("p", f"FAILED: {r.experiment} / {r.name}: {r.status.get('error', 'unknown error')}"))
    for r in records:
        blocks.append(("h2", f"{r.experiment}: {r.name}"))
        blocks.append(("p", f"Model: {r.model}. Directory: {r.path}"))
        curves = plot_curves(r, assets / f"{r.experiment}-{r.name}-curves.png")
        if curves:
            blocks.append(("img", curves, f"Curves of {r.name} (loss, validation accuracy; experiment 1: validation "
                                          f"accuracy per C tried), read from its TensorBoard event files"))
        for png in sorted(r.path.glob("*.png")):
            blocks.append(("img", png, f"{r.name}: {png.stem.replace('_', ' ')}"))
        for label, m in r.evaluations().items():
            rows = per_class_rows(m)
            if rows:
                blocks += [("h3", f"Per-class accuracy on test ({label})"),
                           ("table", ["", "class", "accuracy (recall)", "F1", "examples"], rows)]
        config = {k: v for k, v in r.config.items() if k != "environment"}
        blocks.append(("details", f"Resolved config of {r.name}", yaml.safe_dump(config, sort_keys=False)))
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
    """Replace the block between ``<!-- results:begin -->`` and ``<!-- results:end -->`` with the results table."""
    readme = Path(readme)
    text = readme.read_text()
    begin, end = "<!-- results:begin -->", "<!-- results:end -->"
    if begin not in text or end not in text:
        raise TransferlabError(f"{readme} has no {begin} ... {end} block to fill: add those two lines where the "
                               f"results belong")
    records = [load_record(p) for p in run_dirs]
    env = next((r.config.get("environment") for r in records if r.config.get("environment")), {}) or {}
    table = to_markdown([("table", RESULT_HEADERS, results_rows(records))], readme.parent)
    block = (f"{begin}\nGenerated by `{command}` on {datetime.now().date()} "
             f"({env.get('cpu_count', '?')} CPU cores{', ' + env['gpu'] if env.get('gpu') else ''}, "
             f"torch {env.get('packages', {}).get('torch', '?')}, "
             f"transformers {env.get('packages', {}).get('transformers', '?')}).\n\n{table}{end}")
    head, rest = text.split(begin, 1)
    readme.write_text(head + block + rest.split(end, 1)[1])
    return readme
