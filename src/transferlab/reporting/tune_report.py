"""``transferlab tune``: the search (``transferlab.studies.tune``), then the study's report in its directory:
``report.md`` with the trials table, the optimisation history, the parameter importances and the
intermediate values (Optuna's matplotlib visualisations), and the final run's test figure with its 95%
interval (from its ``metrics.json`` when it carries one, else a bootstrap over its test predictions).

:func:`tune_blocks` is the search's section as report blocks; :func:`write_tune_report` writes it as the study
folder's ``report.md``. Every file goes through ``reporting.output`` (atomic, never through a link); the
storage is shown as the plan shows it (a database URL with its password as ``***``).
"""

from __future__ import annotations

import warnings
from pathlib import Path

from transferlab.reporting.document import to_markdown
from transferlab.reporting.output import save_figure, write_file


def test_figure(run_dir: Path) -> dict:
    """The final run's test accuracy and its interval: ``metrics.json``'s ``intervals`` when present (schema 2),
    else a bootstrap (``evaluation.statistics.accuracy_interval``) over its test predictions."""
    import numpy as np

    from transferlab.evaluation.predictions import read_predictions
    from transferlab.evaluation.statistics import accuracy_interval
    from transferlab.tracking.rundir import load_run

    _, metrics = load_run(run_dir)
    primary = metrics["primary"]
    test = metrics["methods"][primary]["test"]
    out = {"method": primary, "validation": metrics["methods"][primary]["validation"]["accuracy"],
           "test": test["accuracy"], "n": test.get("n_examples")}
    intervals = test.get("intervals") or {}
    if "accuracy" in intervals:
        out.update(interval=tuple(intervals["accuracy"]), confidence=intervals.get("confidence", 0.95),
                   how=intervals.get("method", "recorded"))
        return out
    rows = [r for r in read_predictions(run_dir, primary) if r["split"] == "test"]
    correct = np.array([r["label"] == r["prediction"] for r in rows], dtype=bool)
    out.update(interval=accuracy_interval(correct), confidence=0.95, how="bootstrap over the test predictions")
    return out


def test_correct(run_dir: Path) -> dict[int, tuple[str, bool]]:
    """``{example id: (label, correct)}`` of a run's primary method on test."""
    from transferlab.evaluation.predictions import read_predictions
    from transferlab.tracking.rundir import load_run

    primary = load_run(run_dir)[1]["primary"]
    return {r["id"]: (r["label"], r["label"] == r["prediction"])
            for r in read_predictions(run_dir, primary) if r["split"] == "test"}


def comparison(final: Path, other: Path) -> tuple:
    """A report paragraph: the final run against ``other`` on the same test examples (paired)."""
    from transferlab.errors import TransferlabError
    from transferlab.evaluation.statistics import paired_comparison

    a, b = test_correct(final), test_correct(other)
    if a.keys() != b.keys() or any(a[i][0] != b[i][0] for i in a):
        raise TransferlabError(f"--compare {other}: its test examples are not the final run's (other data or "
                               f"limit): compare runs of the same test split")
    ids = sorted(a)
    c = paired_comparison([a[i][1] for i in ids], [b[i][1] for i in ids])
    return ("p", f"Against `{other}` on the same {c['n']} test examples: difference {c['difference']:+.4f} "
                 f"(95% paired bootstrap interval {c['ci_low']:+.4f} to {c['ci_high']:+.4f}); the final run alone "
                 f"right on {c['a_only']}, the other alone on {c['b_only']}; McNemar exact p = {c['mcnemar_p']:.3g}.")


def plots(study, folder: Path) -> list[tuple]:
    """Optuna's matplotlib figures that the study has the data for, as report blocks."""
    import matplotlib

    matplotlib.use("Agg")
    import optuna.visualization.matplotlib as ovm
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    wanted = [("optimization_history", ovm.plot_optimization_history, "Validation accuracy of each trial and the "
               "best so far", 1),
              ("param_importances", ovm.plot_param_importances, "Parameter importances (PED-ANOVA) over the "
               "completed trials", 2),
              ("intermediate_values", ovm.plot_intermediate_values, "Validation accuracy reported at each "
               "evaluation step (pruned trials end early)", 1)]
    blocks = []
    for stem, plot, caption, least in wanted:
        if len(complete) < least or (stem == "intermediate_values" and not any(
                t.intermediate_values for t in study.get_trials(deepcopy=False))):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna marks its matplotlib figures experimental
            try:
                ax = plot(study, target_name="validation accuracy") if stem != "intermediate_values" else plot(study)
            except (ValueError, RuntimeError) as exc:  # e.g. importances of parameters that never varied
                blocks.append(("p", f"({stem.replace('_', ' ')} not drawn: {exc})"))
                continue
        fig = ax.figure
        fig.set_size_inches(7, 4)
        blocks.append(("img", save_figure(fig, folder / f"{stem}.png"), caption))
    return blocks


def trials_table(rows: list[dict]) -> tuple[list[str], list[list]]:
    names = sorted({k for r in rows for k in r["params"]})
    headers = ["trial", "state", "validation acc", "last step", "seconds", *names, "run directory"]
    table = []
    for r in rows:
        table.append([r["number"], r["state"] + (f" ({r['error']})" if r["error"] else ""),
                      f"{r['value']:.4f}" if r["value"] is not None else "–",
                      r["last_step"] if r["last_step"] is not None else "–",
                      f"{r['seconds']:.0f}" if r["seconds"] is not None else "–",
                      *[fmt_param(r["params"].get(n)) for n in names], r["run_dir"] or "–"])
    return headers, table


def fmt_param(value) -> str:
    if value is None:
        return "–"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def retries_text(rows: list[dict]) -> str:
    """``; 1 retried (trial 3 repeats trial 1: its worker died)``: the trials that repeat a dead trial's
    settings; or nothing."""
    retries = [r for r in rows if r.get("retry_of") is not None]
    if not retries:
        return ""
    pairs = ", ".join(f"trial {r['number']} repeats trial {r['retry_of']}" for r in retries[:5])
    more = f" and {len(retries) - 5} more" if len(retries) > 5 else ""
    return f"; {len(retries)} retried ({pairs}{more}: {'its worker' if len(retries) == 1 else 'their workers'} died)"


def tune_blocks(outcome, compare: Path | None = None) -> list[tuple]:
    """The search's report blocks (figures saved into the study's directory), with the paired comparison to
    ``compare``."""
    from transferlab.studies.tune import trial_rows

    plan, study = outcome.plan, outcome.study
    folder = plan.directory
    rows = trial_rows(study)
    best = study.best_trial
    final = test_figure(outcome.final_run)
    low, high = final["interval"]
    counts = {s: sum(r["state"] == s for r in rows) for s in ("complete", "pruned", "fail")}
    blocks = [("h1", f"Study {plan.name}: transferlab tune {plan.experiment.name}"),
              ("p", f"{len(rows)} trials ({counts['complete']} completed, {counts['pruned']} pruned, "
                    f"{counts['fail']} failed){retries_text(rows)}; objective: validation accuracy (test never "
                    f"scored by a trial). Search space: `{plan.space.source}`; storage: `{plan.storage}`."),
              ("h2", "Result"),
              ("p", f"Best trial {best.number}: validation accuracy {best.value:.4f} with "
                    + ", ".join(f"`{k}={fmt_param(v)}`" for k, v in best.params.items())
                    + f". Its config: `{outcome.best_config.name}` (`--config {outcome.best_config}`)."),
              ("p", f"Final run (`{outcome.final_run.relative_to(folder)}`), the one that scores test: "
                    f"validation {final['validation']:.4f}, **test {final['test']:.4f}** "
                    f"({final['confidence']:.0%} interval {low:.4f} to {high:.4f}, {final['how']}; "
                    f"{final['n']} test examples)."),
              *([comparison(outcome.final_run, compare)] if compare else []),
              ("h2", "Trials"), ("table", *trials_table(rows)),
              ("h2", "Figures"), *plots(study, folder)]
    return blocks


def write_tune_report(outcome, compare: Path | None = None) -> Path:
    """``report.md`` and its figures in the study's directory (with the paired comparison to ``compare``)."""
    folder = outcome.plan.directory
    return write_file(folder / "report.md", to_markdown(tune_blocks(outcome, compare), folder))
