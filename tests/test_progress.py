"""A study's progress: the ETA from the cells' measured times, a bar on a terminal (a real pseudo-terminal), one
line per cell when piped, and each cell's own output (the Trainer's log dicts) in its log file unless asked for."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from helpers import finetune_overrides
from test_security import cli

from transferlab.studies.progress import SearchProgress, StudyProgress, clock

SRC = Path(__file__).resolve().parents[1] / "src"


def cells(*spec: tuple[str, str, str, float | None]) -> list[dict]:
    return [{"experiment": e, "run_dir": f"{e}/{name}", "status": status, "elapsed_s": elapsed}
            for e, name, status, elapsed in spec]


def test_the_eta_is_the_measured_mean_per_arm_over_the_cells_left_spread_over_the_slots():
    study = cells(("features", "k2-seed0", "completed", 10.0), ("features", "k2-seed1", "completed", 20.0),
                  ("features", "k4-seed0", "pending", None), ("features", "k4-seed1", "pending", None),
                  ("lora", "k2-seed0", "completed", 100.0), ("lora", "k4-seed0", "failed", 5.0))
    todo = [study[2], study[3], study[5]]
    assert StudyProgress(study, todo, stream=io.StringIO(), bar=False).eta() == pytest.approx(130, abs=1)
    assert StudyProgress(study, todo, slots=2, stream=io.StringIO(), bar=False).eta() == pytest.approx(65, abs=1)
    fresh = cells(("features", "k2-seed0", "pending", None))
    assert StudyProgress(fresh, fresh, stream=io.StringIO(), bar=False).eta() is None
    assert (clock(None), clock(3725.4)) == ("?", "1:02:05")


def test_piped_progress_is_one_line_per_finished_cell_with_elapsed_and_eta():
    study = cells(("features", "k2-seed0", "completed", 10.0), ("features", "k4-seed0", "pending", None),
                  ("features", "k4-seed1", "pending", None))
    stream = io.StringIO()
    with StudyProgress(study, study[1:], stream=stream, bar=False) as progress:
        progress.started(study[1], "node-a")
        study[1].update(status="completed", elapsed_s=20.0, node={"host": "node-a"})
        progress.finished(study[1])
        progress.started(study[2], "node-b")
        study[2].update(status="failed", elapsed_s=1.0, error="ValueError: bad", node={"host": "node-b"},
                        attempts=[{}, {}])
        progress.finished(study[2])
    first, second = stream.getvalue().splitlines()
    assert first.startswith("cell 2/3 features/k4-seed0: completed in 0:00:20 on node-a | 0:00:00 elapsed, ETA 0:00:15")
    assert second.startswith("cell 3/3 features/k4-seed1: failed (ValueError: bad) in 0:00:01 on node-b after 2 "
                             "attempts | ")
    assert second.endswith("ETA 0:00:00")


def test_on_a_terminal_the_bar_shows_cells_done_the_running_cell_and_the_eta():
    study = cells(("features", "k2-seed0", "completed", 30.0), ("features", "k4-seed0", "pending", None))
    stream = io.StringIO()
    with StudyProgress(study, study[1:], stream=stream, bar=True) as progress:
        progress.started(study[1])
        with progress.above():
            print("a line the cell prints")
        shown = stream.getvalue()
        assert "1/2 cells" in shown and "running features/k4-seed0" in shown and "ETA 0:00:" in shown
        study[1].update(status="completed", elapsed_s=31.0)
        progress.finished(study[1])
    shown = stream.getvalue()
    assert "a line the cell prints\n" in shown and "2/2 cells" in shown


def test_piped_search_progress_is_one_line_per_trial_with_the_best_so_far_and_the_eta():
    stream = io.StringIO()
    with SearchProgress(3, times=[10.0], slots=1, stream=stream, bar=False) as progress:
        assert progress.eta() == pytest.approx(30, abs=1)  # an earlier session's trial time, three trials left
        progress.started({"run_dir": "#4"})
        progress.best = (0.8, 4)
        progress.finished({"run_dir": "#4", "status": "complete", "value": 0.8, "elapsed_s": 20.0,
                           "settings": {"classifier.C": 1.5}})
        progress.started({"run_dir": "#5"})
        progress.finished({"run_dir": "#5", "status": "fail", "value": None, "elapsed_s": 3.0,
                           "error": "no heartbeat: its worker died"})
        progress.grow(1)  # its retry runs on top
        progress.finished({"run_dir": "#6", "status": "pruned", "value": None, "elapsed_s": 6.0})
    first, second, third = stream.getvalue().splitlines()
    assert first.startswith("trial 1/3 #4: complete 0.8000 in 0:00:20 {'classifier.C': 1.5} | best 0.8000 (trial 4) "
                            "| 0:00:00 elapsed, ETA 0:00:30")  # two left at the mean of 10 s and 20 s
    assert second.startswith("trial 2/3 #5: fail (no heartbeat: its worker died) in 0:00:03 | best 0.8000 (trial 4)")
    assert third.startswith("trial 3/4 #6: pruned in 0:00:06 | ") and third.endswith("ETA 0:00:12")


def test_on_a_terminal_the_search_bar_shows_trials_done_and_the_best_so_far():
    stream = io.StringIO()
    with SearchProgress(2, stream=stream, bar=True) as progress:
        progress.started({"run_dir": "#0"})
        assert "0/2 trials" in stream.getvalue() and "no best yet" in stream.getvalue()
        progress.best = (0.75, 0)
        progress.finished({"run_dir": "#0", "status": "complete", "value": 0.75, "elapsed_s": 4.0})
    shown = stream.getvalue()
    assert "trial 1/2 #0: complete 0.7500" in shown and "1/2 trials" in shown and "best 0.7500 (trial 0)" in shown
    assert "ETA 0:00:04" in shown


def finetune_study(*extra: str) -> list[str]:
    return ["finetune", "--shots", "2", "--seeds", "0", "--threads", "1", *extra]


@pytest.mark.slow
def test_a_study_keeps_the_trainer_log_dicts_in_the_cell_log_unless_asked(capsys, tmp_path, tiny_text_models):
    overrides = finetune_overrides(tiny_text_models["distilbert"], **{"tracking.tensorboard": False})
    code, out, err = cli(capsys, *finetune_study("--output-dir", tmp_path, *overrides, "run_name=quiet"))
    assert code == 0, err[-3000:]
    assert "'loss'" not in out and "'loss'" not in err
    lines = [line for line in out.splitlines() if line.startswith("cell ")]
    assert len(lines) == 1 and lines[0].startswith("cell 1/1 finetune/k2-seed0: completed in ")
    log = (tmp_path / "study" / "quiet" / "cells" / "finetune" / "k2-seed0.log").read_text()
    assert "'loss'" in log and "'eval_accuracy'" in log  # they went to the cell's log

    code, out, err = cli(capsys, *finetune_study("--cell-output", "--output-dir", tmp_path, *overrides,
                                                 "run_name=loud"))
    assert code == 0, err[-3000:]
    assert "'loss'" in out and not (tmp_path / "study" / "loud" / "cells").exists()


@pytest.mark.slow
def test_a_study_in_a_terminal_shows_a_bar_with_the_eta(tmp_path, tiny_text_models):
    command = [sys.executable, "-m", "transferlab.cli", "features", "--shots", "2", "--seeds", "0,1", "--threads",
               "1", "--output-dir", str(tmp_path), f"encoder.model={tiny_text_models['bert']}", "data.limit=100",
               "tracking.tensorboard=false", "run_name=tty"]
    env = dict(os.environ, PYTHONPATH=str(SRC), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # 40 rows, 160 columns
    proc = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower)
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal's other end closed: the command ended
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    assert proc.wait(120) == 0, shown.decode(errors="replace")[-3000:]
    text = shown.decode(errors="replace")
    assert "\r" in text and "0/2 cells" in text and "2/2 cells" in text  # one bar, redrawn in place
    assert "running features/k2-seed0" in text and "ETA 0:00:" in text
    assert "cell 1/2 features/k2-seed0: completed in " in text  # the finished cell's line above the bar


def test_only_live_nodes_with_the_cpus_asked_for_take_cells_or_search_workers():
    from types import SimpleNamespace

    from transferlab.errors import TransferlabError
    from transferlab.studies.executor import able_nodes

    nodes = [{"Alive": True, "Resources": {"CPU": 1.0}}, {"Alive": False, "Resources": {"CPU": 8.0}},
             {"Alive": True, "Resources": {"CPU": 4.0, "GPU": 1.0}}]
    cluster = SimpleNamespace(nodes=lambda: nodes)  # what ray.nodes() returns, as data
    assert able_nodes(cluster, 1, "a cell") == [nodes[0], nodes[2]]
    assert able_nodes(cluster, 2, "a cell") == [nodes[2]]
    with pytest.raises(TransferlabError, match=r"no node of the Ray cluster has the 8 CPU\(s\) a search worker asks"):
        able_nodes(cluster, 8, "a search worker")
