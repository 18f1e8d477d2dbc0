"""The report's tables: results per run and method, several seeds summarised, stages, best and worst classes."""

from __future__ import annotations

import hashlib
import json
import statistics
from typing import Sequence

from transferlab.reporting.runs import REFERENCE, RunRecord

STANDINS = {"standin": "offline stand-in: EfficientNet-Lite0 (ImageNet) image tower + all-MiniLM-L6-v2 text tower"}
RESULT_HEADERS = ["experiment", "run", "method", "model used", "classes / test examples", "val acc", "test acc",
                  "test F1 (macro)", "test top-5", "reference lab (its model)", "trainable params", "wall time (s)",
                  "status"]
SEED_HEADERS = ["experiment", "method", "model used", "classes", "seeds", "val acc (mean ± sd)",
                "test acc (mean ± sd)", "test acc per seed", "reference lab"]
STAGE_HEADERS = ["stage", "status", "wall time (s)", "run directory", "error"]
NOT_SETTINGS = ("seed", "run_name", "source", "environment", "resolved")


def fmt(value, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def reference_text(method: str) -> str:
    if method not in REFERENCE:
        return "–"
    what, numbers = REFERENCE[method]
    return f"{what}: " + ", ".join(f"{k.replace('/accuracy', ' acc').replace('/f1', ' F1')} {v}"
                                   for k, v in numbers.items())


def data_size(record: RunRecord, test: dict) -> str:
    """``classes / test examples``, so a 20-class demo is never read against a 200-class figure unawares."""
    if record.metrics is None:
        return "–"
    return f"{record.metrics.n_classes} / {fmt(test.get('n_examples'))}"


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


def settings_key(record: RunRecord) -> str:
    """Runs that differ only in their seed (and names) share this key."""
    settings = {k: v for k, v in record.config.items() if k not in NOT_SETTINGS}
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]


def method_groups(records: Sequence[RunRecord]) -> list[dict]:
    """One entry per (experiment, method, settings): the seeds' test and validation accuracies, mean and sd."""
    groups: dict[tuple, dict] = {}
    for r in records:
        for method, m in r.evaluations().items():
            key = (r.experiment, method, settings_key(r))
            g = groups.setdefault(key, {"experiment": r.experiment, "method": method, "model": r.model,
                                        "n_classes": r.metrics.n_classes, "seeds": [], "test": [], "validation": []})
            if r.config.get("seed") in g["seeds"]:  # the same seed again (a rerun): one value per seed
                continue
            g["seeds"].append(r.config.get("seed"))
            g["test"].append(m["test"]["accuracy"])
            g["validation"].append(m["validation"]["accuracy"])
    for g in groups.values():
        g["n_seeds"] = len(g["test"])
        g["test_mean"], g["val_mean"] = statistics.fmean(g["test"]), statistics.fmean(g["validation"])
        g["test_sd"] = statistics.stdev(g["test"]) if g["n_seeds"] > 1 else 0.0
        g["val_sd"] = statistics.stdev(g["validation"]) if g["n_seeds"] > 1 else 0.0
    return list(groups.values())


def seed_rows(groups: Sequence[dict]) -> list[list[str]]:
    """Rows for the groups that rest on more than one seed: mean ± sd and each seed's value."""
    return [[g["experiment"], g["method"], STANDINS.get(g["model"], g["model"]), str(g["n_classes"]),
             f"{g['n_seeds']} ({', '.join(map(str, g['seeds']))})", f"{g['val_mean']:.4f} ± {g['val_sd']:.4f}",
             f"{g['test_mean']:.4f} ± {g['test_sd']:.4f}", ", ".join(f"{v:.4f}" for v in g["test"]),
             reference_text(g["method"])] for g in groups if g["n_seeds"] > 1]


def stage_rows(stages: Sequence[dict]) -> list[list[str]]:
    return [[s["stage"], s["status"], fmt(s.get("elapsed_s"), 1), s.get("run_dir") or "–", s.get("error") or ""]
            for s in stages]


def per_class_rows(m: dict, k: int = 5) -> list[list[str]]:
    per_class = m.get("test", {}).get("per_class", {})
    ranked = sorted(per_class.items(), key=lambda kv: kv[1]["recall"], reverse=True)
    picked = ranked if len(ranked) <= 2 * k else ranked[:k] + ranked[-k:]
    return [[("best" if i < min(k, len(picked) // 2 or 1) else "worst"), name, fmt(v["recall"]), fmt(v["f1"]),
             fmt(v["support"])] for i, (name, v) in enumerate(picked)]
