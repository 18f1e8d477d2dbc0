"""Label-budget studies from the command line: ``--shots`` values per experiment, then the study and its report."""

from __future__ import annotations

from transferlab.errors import TransferlabError


def shots_by_experiment(entries: list[tuple[str | None, list]], sections: dict[str, str]) -> dict[str, list]:
    """``--shots`` values per experiment (``sections``: experiment -> its config section): a bare list serves
    every experiment without a ``SECTION=`` list of its own."""
    known = set(sections.values())
    default, named = None, {}
    for section, values in entries:
        if (section is None and default is not None) or section in named:
            where = "a bare list" if section is None else f"{section}=..."
            raise TransferlabError(f"--shots gives {where} twice: give each list once (e.g. --shots 1,2,4 or "
                                   f"--shots clip=1,2 --shots 8,full)")
        if section is None:
            default = values
        elif section not in known:
            raise TransferlabError(f"--shots {section}=...: {section!r} is none of this command's config sections "
                                   f"({', '.join(sorted(known))})")
        else:
            named[section] = values
    return {e: named.get(s, default) for e, s in sections.items() if named.get(s, default) is not None}


def is_study(args) -> bool:
    """Whether the command is a study (``--shots``, ``--models`` or ``--suite``); the study-only options
    (``--executor ray``, ``--ray-address``, ``--memory``, ``--cell-output``) on anything else are one line, not
    ignored."""
    if args.shots or args.models or getattr(args, "suite", None):
        return True
    if getattr(args, "executor", "local") != "local" or getattr(args, "ray_address", None) or \
            getattr(args, "cell_output", False) or getattr(args, "memory", None) is not None:
        raise TransferlabError("--executor, --ray-address, --memory and --cell-output place a study's cells: add "
                               "--shots, --models or --suite, or leave them out for a single run")
    return False


def executor_choice(args):
    """Where the study's cells run, from ``--executor``, ``--ray-address``, ``--threads``, ``--memory`` and
    ``--cell-output``."""
    from transferlab.studies.executor import Executor

    return Executor(kind=getattr(args, "executor", "local"), address=getattr(args, "ray_address", None),
                    threads=getattr(args, "threads", None), show_output=getattr(args, "cell_output", False),
                    memory_gib=getattr(args, "memory", None))


def run_study(arms: dict, shots: dict[str, list], seeds: list[int], output_dir, name: str, nested: bool,
              executor=None):
    """Run (or continue) a label-budget study (its cells where ``executor`` says: ``executor_choice``), then
    its report (learning curves, per-K tables); the study directory, or a one-line error (exit 2) after the
    report when any cell failed."""
    from transferlab.reporting.analysis import data_folders
    from transferlab.reporting.study import write_study_report
    from transferlab.studies.shots import run_shot_study

    outcome = run_shot_study(arms, shots, seeds, output_dir, name, nested=nested, executor=executor)
    report = write_study_report(outcome.directory, image_roots=data_folders(arms.values()))
    print(f"results: {outcome.directory / 'results.csv'}\nreport: {report}")
    if outcome.failed:
        shown = ", ".join(outcome.failed[:3]) + (", ..." if len(outcome.failed) > 3 else "")
        raise TransferlabError(f"{len(outcome.failed)} of {outcome.cells} cells failed ({shown}; errors in "
                               f"{outcome.directory / 'study.json'}): the report shows the finished ones; rerun "
                               f"the same command to redo the failed cells")
    return outcome.directory
