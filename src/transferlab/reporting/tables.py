"""The report's tables: runs (the model described once), results with intervals, seeds, comparisons, the
lab, calibration, stages, best and worst classes."""

from __future__ import annotations

from typing import Sequence

from transferlab.evaluation.calibration import temperature_bound
from transferlab.evaluation.results import interval_text as with_interval  # 0.7683 [0.742, 0.793]
from transferlab.reporting.runs import REFERENCE, RunRecord, on_lab_task
from transferlab.reporting.uncertainty import calibration, figures, interval, lab_figure, lab_relation, relation

STANDINS = {"standin": "offline stand-in: EfficientNet-Lite0 (ImageNet) image tower + all-MiniLM-L6-v2 text tower"}
RUN_HEADERS = ["experiment", "run", "model used", "classes / test examples", "trainable params", "wall time (s)",
               "status"]
RESULT_HEADERS = ["experiment", "run", "method", "val acc", "test acc [95% CI]", "test F1 (macro) [95% CI]",
                  "test top-5 [95% CI]", "lab test acc", "ours vs lab"]
SEED_HEADERS = ["experiment", "method", "classes", "seeds", "val acc (mean ± sd)", "test acc (mean ± sd)",
                "test acc [95% CI, seeds and test]", "test acc per seed", "lab test acc", "ours vs lab"]
COMPARISON_HEADERS = ["comparison (A − B)", "seed", "test acc difference [95% CI]", "McNemar p", "Holm p",
                      "n", "only A right / only B right", "verdict"]
LAB_HEADERS = ["method", "ours: test acc [95% CI]", "lab: test acc (its model)", "ours vs lab"]
CALIBRATION_HEADERS = ["experiment", "run", "method", "test ECE", "test Brier", "test NLL",
                       "temperature-scaled: T, ECE, NLL", "computed from"]
STAGE_HEADERS = ["stage", "status", "wall time (s)", "run directory", "error"]


def fmt(value, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def signed(value: float, low: float, high: float) -> str:
    return f"{value:+.4f} [{low:+.3f}, {high:+.3f}]"


def p_text(p: float | None) -> str:
    """A p-value as printed; an exact test's p below the smallest double comes back as 0 and is printed as a bound."""
    if p is None:
        return "–"
    return "< 1e-300" if p < 1e-300 else f"{p:.2g}"


def data_size(record: RunRecord) -> str:
    """``classes / test examples``, so a 20-class demo is never read against a 200-class figure unawares."""
    if record.metrics is None:
        return "–"
    test = record.metrics.result.get("test", {})
    return f"{record.metrics.n_classes} / {fmt(test.get('n_examples'))}"


def run_rows(records: Sequence[RunRecord]) -> list[list[str]]:
    """One row per run: what it ran, on how much data, what it trained, how long, how it ended."""
    return [[r.experiment, r.name, STANDINS.get(r.model, r.model), data_size(r), fmt(r.trainable_parameters),
             fmt(r.status.get("elapsed_s"), 1), r.state] for r in records]


def results_rows(records: Sequence[RunRecord]) -> list[list[str]]:
    """One row per evaluated method; a run's methods are grouped under its name (shown on its first row)."""
    rows = []
    for r in records:
        evaluations = r.evaluations() or {r.experiment: {}}
        for i, (method, m) in enumerate(evaluations.items()):
            f = figures(r, method) if r.metrics else None
            found = interval(r, method) if f else None
            rows.append([r.experiment if i == 0 else "", r.name if i == 0 else "", method,
                         fmt(m.get("validation", {}).get("accuracy")),
                         with_interval(f["accuracy"], found) if f else "not scored" if r.metrics else "–",
                         with_interval(f["f1"], interval(r, method, "f1")) if f else "–",
                         with_interval(f["top5_accuracy"], interval(r, method, "top5_accuracy"))
                         if f and f.get("top5_accuracy") is not None else "–",
                         fmt(lab_figure(method, [r]), 3),
                         lab_relation(*(found or (None, None)), method, [r]) if f else "–"])
    return rows


def seed_rows(groups: Sequence[dict]) -> list[list[str]]:
    """Rows for the groups that rest on more than one seed: mean ± sd, the interval for seeds and test
    sampling together, and each seed's value."""
    rows = []
    for g in groups:
        if g["n_seeds"] < 2:
            continue
        found = g["interval"]
        seeds = f"{g['n_seeds']} ({', '.join(map(str, g['seeds']))})"
        rows.append([g["experiment"], g["label"], str(g["n_classes"]), seeds,
                     f"{g['val_mean']:.4f} ± {g['val_sd']:.4f}", f"{g['test_mean']:.4f} ± {g['test_sd']:.4f}",
                     with_interval(g["test_mean"], (found["low"], found["high"]) if found else None),
                     ", ".join(f"{v:.4f}" for v in g["test"]), fmt(lab_figure(g["method"], g["runs"]), 3),
                     lab_relation(found["low"], found["high"], g["method"], g["runs"]) if found else "–"])
    return rows


def verdict(row: dict) -> str:
    """The difference's interval against 0, by the one rule (as printed: ``uncertainty.relation``)."""
    return {"above": "A above B", "below": "B above A"}.get(relation(0.0, row["ci_low"], row["ci_high"]),
                                                           "no clear difference")


def comparison_rows(found: Sequence[dict]) -> list[list[str]]:
    return [[f"{r['a']} − {r['b']}", fmt(r["seed"]), signed(r["difference"], r["ci_low"], r["ci_high"]),
             p_text(r["mcnemar_p"]), p_text(r.get("holm_p")), fmt(r["n"]),
             f"{r['a_only']:,} / {r['b_only']:,}" if r["a_only"] is not None else "–", verdict(r)]
            for r in found]


def lab_rows(groups: Sequence[dict]) -> list[list[str]]:
    rows = []
    for g in groups:
        lab = lab_figure(g["method"], g["runs"])
        if lab is None:
            continue
        found = g["interval"]
        rows.append([g["label"] + (f" ({g['n_seeds']} seeds)" if g["n_seeds"] > 1 else ""),
                     with_interval(g["test_mean"], (found["low"], found["high"]) if found else None),
                     f"{lab:.4f} ({REFERENCE[g['method']][0]})",
                     lab_relation(found["low"], found["high"], g["method"], g["runs"]) if found else "–"])
    return rows


def calibration_rows(records: Sequence[RunRecord]) -> list[list[str]]:
    """One row per method with probabilities; a run's methods grouped under its name (on its first row)."""
    rows = []
    for r in records:
        first = True
        for method in r.evaluations():
            c = calibration(r, method)
            if c is None:
                continue
            scaled = c.get("calibrated")
            rows.append([r.experiment if first else "", r.name if first else "", method, fmt(c["ece"]),
                         fmt(c["brier"]) if c["brier"] is not None else "n/a",
                         fmt(c["nll"]) if c["nll"] is not None else "n/a",
                         scaled_text(scaled) if scaled else "–",
                         c["source"]])
            first = False
    return rows


def scaled_text(scaled: dict) -> str:
    """``T=1.234, ECE, NLL`` of the temperature-scaled figures; a temperature the fit left at the bound of its
    range says so (it is a limit, not a fitted optimum)."""
    bound = temperature_bound(scaled["temperature"])
    at = f" (at its bound {bound:g}: not an optimum)" if bound is not None else ""
    return f"T={scaled['temperature']:.3f}{at}, {scaled['ece']:.4f}, {scaled['nll']:.4f}"


def calibration_gaps(records: Sequence[RunRecord]) -> list[str]:
    """Why a calibration figure reads n/a, once per reason."""
    reasons = {c["unavailable"] for r in records for m in r.evaluations()
               if (c := calibration(r, m)) is not None and c.get("unavailable")}
    return [f"n/a: {reason}." for reason in sorted(reasons)]


def stage_rows(stages: Sequence[dict]) -> list[list[str]]:
    return [[s["stage"], s["status"], fmt(s.get("elapsed_s"), 1), s.get("run_dir") or "–", s.get("error") or ""]
            for s in stages]


def per_class_rows(m: dict, k: int = 5) -> list[list[str]]:
    per_class = m.get("test", {}).get("per_class", {})
    ranked = sorted(per_class.items(), key=lambda kv: kv[1]["recall"], reverse=True)
    picked = ranked if len(ranked) <= 2 * k else ranked[:k] + ranked[-k:]
    return [[("best" if i < min(k, len(picked) // 2 or 1) else "worst"), name, fmt(v["recall"]), fmt(v["f1"]),
             fmt(v["support"])] for i, (name, v) in enumerate(picked)]


def without_lab(headers: list[str], rows: list[list[str]], applies: bool) -> tuple[str, list[str], list[list[str]]]:
    """A table block; its last two columns (the lab's figure, ours against it) only where the lab's task is
    among the runs shown: on any other data the report says nothing about the lab."""
    if applies:
        return "table", headers, rows
    return "table", headers[:-2], [row[:-2] for row in rows]


def results_table(records: Sequence[RunRecord]) -> tuple:
    return without_lab(RESULT_HEADERS, results_rows(records), any(on_lab_task(r) for r in records))


def seeds_table(groups: Sequence[dict]) -> tuple:
    return without_lab(SEED_HEADERS, seed_rows(groups), any(on_lab_task(r) for g in groups for r in g["runs"]))
