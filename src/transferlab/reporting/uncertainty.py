"""The uncertainty of every figure the report shows, for runs of any schema version, without recomputing a model.

- figures: a method's test accuracy, macro F1 and top-5 with 95% intervals, read from ``metrics.json``
  (schema 2) or computed here from ``predictions/<method>.jsonl`` (schema 1 runs);
- groups: one entry per method and settings, its seeds' runs together (mean ± sd, and the two-way
  seeds x examples interval where several seeds were scored on the same examples);
- comparisons: every pair of groups scored on the same test examples (matched by example id, with the
  labels and examples checked to agree): the paired difference per seed with McNemar's exact test,
  and over the seeds where both have several;
- calibration: ECE, Brier and NLL from ``metrics.json`` or the predictions.
"""

from __future__ import annotations

import hashlib
import json
import statistics as stats
from typing import Sequence

import numpy as np

from transferlab.evaluation import statistics as st
from transferlab.evaluation.calibration import rows_calibration
from transferlab.reporting.runs import REFERENCE, RunRecord, on_lab_task

FROM_METRICS = "metrics.json"
FROM_PREDICTIONS = "computed by the report from predictions/"
NOT_SETTINGS = ("seed", "run_name", "source", "environment", "resolved", "evaluation", "tracking")
# The order in which methods build on each other: a comparison reads "later - earlier".
SHOWN_DIGITS = 3  # interval bounds and the lab's figures are printed with 3 decimals
METHOD_ORDER = ("zero_shot", "linear_probe", "lora", "features", "finetune")


def split_of(record: RunRecord, method: str, split: str = "test") -> dict | None:
    result = record.metrics.methods.get(method, {}) if record.metrics else {}
    return result.get(split)


def correct_of(rows: Sequence[dict]) -> np.ndarray:
    return np.array([r["label"] == r["prediction"] for r in rows], dtype=bool)


def top5_of(rows: Sequence[dict]) -> np.ndarray | None:
    if not rows or not all("top5" in r for r in rows):
        return None
    return np.array([r["label"] in [name for name, _ in r["top5"]] for r in rows], dtype=bool)


def disagrees(rows: Sequence[dict], m: dict) -> bool:
    """Whether a predictions file fails to reproduce metrics.json's count and accuracy (an edited or mixed-up
    run directory): its intervals are then not shown."""
    return len(rows) != m.get("n_examples", len(rows)) or abs(correct_of(rows).mean() - m["accuracy"]) > 1e-9


def computed_intervals(record: RunRecord, method: str, split: str, m: dict) -> dict | None:
    """Intervals from the predictions file (which agrees with ``metrics.json``)."""
    rows = record.rows(method, split)
    # macro F1 as the run averaged it: schema 1 over every class, schema 2 over the classes present
    labels = list(m.get("per_class", {})) if record.metrics.schema_version == 1 else None
    if labels is None or not labels:
        labels = sorted({r["label"] for r in rows})
    top5 = top5_of(rows)
    return st.split_intervals([r["label"] for r in rows], [r["prediction"] for r in rows], labels=labels,
                              topk_correct={"top5_accuracy": top5} if top5 is not None else None)


def figures(record: RunRecord, method: str, split: str = "test") -> dict | None:
    """``{"accuracy", "f1", "top5_accuracy", "n", "intervals", "source"}`` of one method and split."""
    key = ("figures", method, split)
    if key not in record.cache:
        m = split_of(record, method, split)
        if m is None:
            record.cache[key] = None
        else:
            out = {"accuracy": m["accuracy"], "f1": m.get("f1"), "top5_accuracy": m.get("top5_accuracy"),
                   "n": m.get("n_examples")}
            rows = record.rows(method, split)
            if rows and disagrees(rows, m):
                out.update(intervals=None, source=f"none: predictions/{method}.jsonl disagrees with metrics.json")
            elif isinstance(m.get("intervals"), dict):
                out.update(intervals=m["intervals"], source=FROM_METRICS)
            elif rows:
                out.update(intervals=computed_intervals(record, method, split, m), source=FROM_PREDICTIONS)
            else:
                out.update(intervals=None, source="none: no predictions file")
            record.cache[key] = out
    return record.cache[key]


def interval(record: RunRecord, method: str, metric: str = "accuracy", split: str = "test") -> list | None:
    f = figures(record, method, split)
    intervals = (f or {}).get("intervals") or {}
    return intervals.get(metric)


def calibration(record: RunRecord, method: str, split: str = "test") -> dict | None:
    """ECE, Brier, NLL (and ``calibrated``) from ``metrics.json``, else from the predictions file;
    ``None`` when the method gave no probabilities (every row at probability 1)."""
    m = split_of(record, method, split)
    if m is None:
        return None
    if isinstance(m.get("calibration"), dict):
        return {**m["calibration"], "calibrated": m.get("calibrated"), "source": FROM_METRICS}
    rows = record.rows(method, split)
    if not rows or all(r.get("probability") == 1.0 for r in rows):
        return None
    return {**rows_calibration(rows, record.metrics.n_classes), "calibrated": None, "source": FROM_PREDICTIONS}


def settings_key(record: RunRecord) -> str:
    """Runs that differ only in their seed (and names) share this key."""
    settings = {k: v for k, v in record.config.items() if k not in NOT_SETTINGS}
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]


def aligned(row_sets: Sequence[Sequence[dict]]) -> np.ndarray | None:
    """The runs x examples matrix of correct predictions, matched by example id; ``None`` unless every
    set holds the same ids with the same labels (and the same example, where both recorded one)."""
    if not row_sets or not all(row_sets):
        return None
    keyed = [{r["id"]: r for r in rows} for rows in row_sets]
    ids = sorted(keyed[0])
    if any(len(k) != len(ids) or k.keys() != keyed[0].keys() for k in keyed):
        return None
    for k in keyed[1:]:
        for i in ids:
            a, b = keyed[0][i], k[i]
            if a["label"] != b["label"] or (a.get("example") is not None and b.get("example") is not None
                                            and a["example"] != b["example"]):
                return None
    return np.array([[k[i]["label"] == k[i]["prediction"] for i in ids] for k in keyed], dtype=bool)


def duplicate(record: RunRecord, method: str, records: Sequence[RunRecord]) -> bool:
    """A secondary method of a run (e.g. lora's zero_shot) that another run of the same seed has as its
    primary method on the same examples: shown in that run's table, not again as a group of its own."""
    if method == record.metrics.primary:
        return False
    return any(other is not record and other.metrics and other.metrics.primary == method
               and other.seed == record.seed and aligned([record.rows(method), other.rows(method)]) is not None
               for other in records)


def method_groups(records: Sequence[RunRecord], deduplicate: bool = True) -> list[dict]:
    """One entry per (experiment, method, settings) scored on test: its runs (one per seed), the seeds'
    test and validation accuracies with mean and sd."""
    groups: dict[tuple, dict] = {}
    scored = [r for r in records if r.metrics is not None]
    for r in scored:
        for method, m in r.evaluations().items():
            if "test" not in m or (deduplicate and duplicate(r, method, scored)):
                continue
            key = (r.experiment, method, settings_key(r))
            g = groups.setdefault(key, {"experiment": r.experiment, "method": method, "model": r.model,
                                        "n_classes": r.metrics.n_classes, "runs": [], "seeds": [], "test": [],
                                        "validation": []})
            if r.seed in g["seeds"]:  # the same seed again (a rerun): one value per seed
                continue
            g["runs"].append(r)
            g["seeds"].append(r.seed)
            g["test"].append(m["test"]["accuracy"])
            g["validation"].append(m["validation"]["accuracy"])
    for g in groups.values():
        g["n_seeds"] = len(g["test"])
        g["test_mean"], g["val_mean"] = stats.fmean(g["test"]), stats.fmean(g["validation"])
        g["test_sd"] = stats.stdev(g["test"]) if g["n_seeds"] > 1 else 0.0
        g["val_sd"] = stats.stdev(g["validation"]) if g["n_seeds"] > 1 else 0.0
        g["interval"] = group_interval(g)
    name_counts = {}
    for g in groups.values():
        name_counts[g["method"]] = name_counts.get(g["method"], 0) + 1
    for g in groups.values():
        g["label"] = g["method"] if name_counts[g["method"]] == 1 else \
            f"{g['method']} ({g['experiment']}/{g['runs'][0].name})"
    labels = [g["label"] for g in groups.values()]
    for g in groups.values():  # still alike (two studies' k16-seed0 cells): named by the folders above the run
        if labels.count(g["label"]) > 1:
            g["label"] = f"{g['method']} ({'/'.join(g['runs'][0].path.resolve().parts[-3:])})"
    return list(groups.values())


def group_interval(g: dict) -> dict | None:
    """``{"low", "high", "method"}``: one run's bootstrap interval, or over several seeds the two-way one."""
    if any(interval(r, g["method"]) is None for r in g["runs"]):
        return None
    if g["n_seeds"] == 1:
        found = interval(g["runs"][0], g["method"])
        return {"low": found[0], "high": found[1], "method": "test examples resampled (one seed)"} if found else None
    matrix = aligned([r.rows(g["method"]) for r in g["runs"]])
    if matrix is None:
        return None
    result = st.seeds_interval(matrix)
    return {"low": result["ci_low"], "high": result["ci_high"], "method": result["method"]}


def order(a: dict, b: dict) -> tuple[dict, dict]:
    """(later, earlier) in METHOD_ORDER, so a difference reads as what the later method adds."""
    rank = {m: i for i, m in enumerate(METHOD_ORDER)}
    return (a, b) if rank.get(a["method"], len(rank)) >= rank.get(b["method"], len(rank)) else (b, a)


def pair_rows(a: dict, b: dict) -> list[dict]:
    """The comparisons of group ``a`` against ``b``: one per seed both scored on the same examples, and
    the seed average where both have several."""
    a, b = order(a, b)
    mine = dict(zip(a["seeds"], a["runs"]))
    theirs = dict(zip(b["seeds"], b["runs"]))
    shared = [s for s in mine if s in theirs] or ([None] if len(mine) == len(theirs) == 1 else [])
    out, matrices = [], ([], [])
    for seed in shared:
        ra, rb = (mine[seed], theirs[seed]) if seed is not None else (a["runs"][0], b["runs"][0])
        matrix = aligned([ra.rows(a["method"]), rb.rows(b["method"])])
        if matrix is None:
            continue
        result = st.paired_comparison(matrix[0], matrix[1])
        out.append({"a": a["label"], "b": b["label"], "seed": seed, "runs": (ra.name, rb.name), **result})
        matrices[0].append(matrix[0])
        matrices[1].append(matrix[1])
    if len(out) > 1:
        result = st.seeds_difference(np.array(matrices[0]), np.array(matrices[1]))
        out.append({"a": a["label"], "b": b["label"], "seed": f"{len(out)} seeds", "runs": None,
                    "difference": result["difference"], "ci_low": result["ci_low"], "ci_high": result["ci_high"],
                    "mcnemar_p": None, "n": result["n"], "a_only": None, "b_only": None})
    return out


def comparisons(groups: Sequence[dict]) -> list[dict]:
    """Every pair of groups on the same test examples; ``holm_p``: Holm-adjusted over the table's tests."""
    rows = [row for i, a in enumerate(groups) for b in groups[i + 1:] for row in pair_rows(a, b)]
    tested = [r for r in rows if r["mcnemar_p"] is not None]
    for r, adjusted in zip(tested, st.holm([r["mcnemar_p"] for r in tested])):
        r["holm_p"] = float(adjusted)
    return rows


def missing_intervals(records: Sequence[RunRecord]) -> list[str]:
    """A sentence for each test figure shown without an interval, saying why."""
    out = []
    for r in records:
        for method in r.evaluations():
            f = figures(r, method)
            if f is not None and not f.get("intervals"):
                why = f["source"].removeprefix("none: ")
                out.append(f"No interval for {r.experiment} / {r.name} / {method}: {why}.")
    return out


def lab_figure(method: str, runs: Sequence[RunRecord] = ()) -> float | None:
    """The lab's test accuracy for ``method``, where every one of ``runs`` is on the lab's own task (its data
    and class count: :func:`~transferlab.reporting.runs.on_lab_task`); else ``None``."""
    if method not in REFERENCE or not runs or not all(on_lab_task(r) for r in runs):
        return None
    return REFERENCE[method][1].get("test/accuracy")


def shown(value: float, digits: int = SHOWN_DIGITS) -> float:
    """``value`` as the report prints it (rounded to ``digits`` decimals), back as a number."""
    return float(f"{value:.{digits}f}")


def relation(value: float, low: float, high: float, digits: int = SHOWN_DIGITS) -> str:
    """Where our interval ``[low, high]`` lies against a point ``value``: 'above', 'below' or 'contains'. The
    one rule of every table and sentence: all three compared as printed (rounded to ``digits``), so an interval
    shown as [0.770, 0.790] contains the lab's 0.790 even when its bound is 0.7899999999999998."""
    value, low, high = shown(value, digits), shown(low, digits), shown(high, digits)
    if high < value:
        return "below"
    if low > value:
        return "above"
    return "contains"


def lab_relation(low: float | None, high: float | None, method: str, runs: Sequence[RunRecord] = ()) -> str:
    """Where our interval lies against the lab's test accuracy: 'above', 'below', 'contains', or '–'."""
    lab = lab_figure(method, runs)
    if lab is None or low is None or high is None:
        return "–"
    return relation(lab, low, high)
