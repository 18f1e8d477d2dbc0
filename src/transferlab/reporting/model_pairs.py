"""Models compared, paired: the model axis of a study (``--models A,B``) as tests, not only as curves side by side.

Every model of a study runs the same K values and seeds on the same draws, and is scored on the same test
examples, so at each data set, method and K two models are compared example by example:

- per seed, McNemar's exact test on the discordant pairs (``evaluation.statistics.paired_comparison``), Holm-
  adjusted over every test of the table (the family: all model pairs, methods, K values and seeds);
- over the seeds, the difference of the mean accuracies with the two-way (seeds x examples) bootstrap interval
  (``evaluation.statistics.seeds_difference``); with one seed, the paired bootstrap interval of that seed.

The verdict is the interval's: "above" / "below" when it excludes 0, "not distinguishable from" otherwise.
Predictions are matched by example id (``reporting.uncertainty.aligned``): a pair whose cells do not hold the
same test examples with the same labels is left out and named.
"""

from __future__ import annotations

import csv
import io
from itertools import combinations
from pathlib import Path

from transferlab.evaluation import statistics as st
from transferlab.reporting.runs import RunRecord, load_record
from transferlab.reporting.tables import p_text
from transferlab.reporting.uncertainty import aligned, relation
from transferlab.studies.results import dataset_name, method_label
from transferlab.tracking.files import atomic_write
from transferlab.tracking.rundir import COMPLETED

PAIRS = "model_comparisons.csv"
WORD = {"above": "above", "below": "below", "contains": "not distinguishable from"}  # the interval against 0
HEADERS = ["data set", "method", "K", "models (A vs B)", "A − B", "95% interval", "seeds",
           "McNemar p per seed (Holm)", "A is"]
CSV_COLUMNS = ("dataset", "method", "shots", "model_a", "model_b", "difference", "ci_low", "ci_high", "interval",
               "seeds", "n", "mcnemar_p", "holm_p", "verdict")


def model_of(cell: dict) -> str | None:
    """The model part of a cell's arm (``features@<model>#<task>``), ``None`` outside a model axis."""
    return cell.get("arm", "").partition("#")[0].partition("@")[2] or None


def model_cells(study_dir: Path, state: dict) -> dict[tuple, dict[str, dict[int, RunRecord]]]:
    """Completed cells of a model axis: ``(data set, experiment, K) -> {model: {seed: run record}}``."""
    groups: dict[tuple, dict[str, dict[int, RunRecord]]] = {}
    for cell in state["cells"]:
        model = model_of(cell)
        if model is None or cell["status"] != COMPLETED:
            continue
        record = load_record(study_dir / cell["run_dir"])
        dataset = cell["arm"].partition("#")[2] or dataset_name(record.config)
        shots = "full" if cell["shots"] is None else str(cell["shots"])
        groups.setdefault((dataset, cell["experiment"], shots), {}).setdefault(model, {})[cell["seed"]] = record
    return groups


def pair(method: str, a: dict[int, RunRecord], b: dict[int, RunRecord]) -> dict | None:
    """Model ``a`` against ``b`` on one method: the per-seed McNemar tests and the interval over the seeds they
    share; ``None`` when they share no seed scored on the same examples."""
    per_seed, matrices = [], []
    for seed in sorted(set(a) & set(b)):
        matrix = aligned([a[seed].rows(method), b[seed].rows(method)])
        if matrix is None:
            return None
        per_seed.append(st.paired_comparison(matrix[0], matrix[1]))
        matrices.append(matrix)
    if not matrices:
        return None
    if len(matrices) > 1:
        over = st.seeds_difference([m[0] for m in matrices], [m[1] for m in matrices])
        interval = "two-way bootstrap over seeds and examples"
    else:
        over, interval = per_seed[0], "paired bootstrap over examples"
    return {"difference": over["difference"], "ci_low": over["ci_low"], "ci_high": over["ci_high"],
            "interval": interval, "seeds": len(matrices), "n": int(matrices[0].shape[1]),
            "mcnemar_p": [r["mcnemar_p"] for r in per_seed]}


def methods_of(runs: dict[int, RunRecord]) -> list[str]:
    return sorted({m for r in runs.values() for m in ((r.metrics.methods if r.metrics else {}) or {})})


def model_comparisons(study_dir: str | Path, state: dict) -> tuple[list[dict], list[str]]:
    """Every pair of models at each data set, method and K (rows, Holm-adjusted), and the pairs left out."""
    rows, skipped = [], []
    groups = model_cells(Path(study_dir), state)
    for (dataset, experiment, shots), models in sorted(groups.items(), key=lambda g: (*g[0][:2], shots_order(g[0][2]))):
        for (name_a, a), (name_b, b) in combinations(sorted(models.items()), 2):
            for method in (m for m in methods_of(a) if m in methods_of(b)):
                any_run = next(iter(a.values()))
                label = method_label(experiment, method, (any_run.metrics.model if any_run.metrics else {}) or {})
                found = pair(method, a, b)
                if found is None:
                    skipped.append(f"{label} at K={shots} on {dataset}: {name_a} and {name_b} were not scored on "
                                   f"the same test examples in a shared seed")
                    continue
                rows.append({"dataset": dataset, "method": label, "shots": shots, "model_a": name_a,
                             "model_b": name_b, **found})
    flat = st.holm([p for r in rows for p in r["mcnemar_p"]])
    start = 0
    for r in rows:
        r["holm_p"] = [float(p) for p in flat[start:start + len(r["mcnemar_p"])]]
        start += len(r["mcnemar_p"])
        r["verdict"] = WORD[relation(0.0, r["ci_low"], r["ci_high"])]
    return rows, skipped


def shots_order(shots: str) -> tuple:
    return (1, 0) if shots == "full" else (0, int(shots))


def table_rows(rows: list[dict]) -> list[list[str]]:
    ordered = sorted(rows, key=lambda r: (r["dataset"], r["method"], shots_order(r["shots"]), r["model_a"]))
    return [[r["dataset"], r["method"], r["shots"], f"{r['model_a']} vs {r['model_b']}", f"{r['difference']:+.4f}",
             f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]", str(r["seeds"]),
             ", ".join(p_text(p) for p in r["holm_p"]), WORD.get(r["verdict"], r["verdict"]) + " B"]
            for r in ordered]


def claim(row: dict) -> str:
    """One comparison as a sentence: ``at K=8, mpnet above minilm: +0.0410 [+0.021, +0.060] ...``."""
    return (f"{row['method']} at K={row['shots']} on {row['dataset']}: {row['model_a']} {row['verdict']} "
            f"{row['model_b']}: {row['difference']:+.4f} [{row['ci_low']:+.3f}, {row['ci_high']:+.3f}] "
            f"({row['interval']}, {row['seeds']} seed(s), n = {row['n']:,}); McNemar p per seed (Holm) "
            f"{', '.join(p_text(p) for p in row['holm_p'])}")


def csv_text(rows: list[dict]) -> str:
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({**r, "mcnemar_p": ";".join(f"{p:.6g}" for p in r["mcnemar_p"]),
                         "holm_p": ";".join(f"{p:.6g}" for p in r["holm_p"])})
    return buffer.getvalue()


def model_pair_blocks(study_dir: str | Path, state: dict) -> list[tuple]:
    """The report section (and ``model_comparisons.csv`` in the study folder); nothing without a model axis."""
    rows, skipped = model_comparisons(study_dir, state)
    if not rows and not skipped:
        return []
    atomic_write(Path(study_dir) / PAIRS, csv_text(rows))
    blocks = [("h3", "Models compared, paired"),
              ("p", "The models ran the same draws and were scored on the same test examples, so each pair is compared "
                    "example by example: A − B, the mean over seeds with its two-way bootstrap interval (seeds and "
                    "examples resampled; one seed: the paired bootstrap), and McNemar's exact test per seed, "
                    f"Holm-adjusted over every test in this table. Figures: {Path(study_dir) / PAIRS}."),
              ("table", HEADERS, table_rows(rows))]
    return blocks + [("p", f"Not compared: {note}") for note in skipped]


def model_pair_claims(study_dir: str | Path, state: dict) -> list[str]:
    """The comparisons as sentences (a README block)."""
    return [claim(r) for r in sorted(model_comparisons(study_dir, state)[0],
                                     key=lambda r: (r["dataset"], r["method"], shots_order(r["shots"])))]

