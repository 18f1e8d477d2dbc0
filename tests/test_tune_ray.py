"""``transferlab tune --executor ray`` on the real two-node Ray cluster of ``test_ray_executor`` (started by this
module, one CPU a node, token authentication off), against the real PostgreSQL server of ``test_postgres``
(started by this module too): two workers as Ray tasks, one of them killed with SIGKILL in the middle of its
trial. Ray runs its task again (with nothing left to run), the trial's heartbeat stops, the command fails it
after the grace period, Optuna's retry callback queues its settings, a last Ray task runs the retry, and the
report counts every trial. The database's password appears in no output and no file of the search."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import one_retry, trials_of
from test_postgres import PASSWORD, database, files_holding  # noqa: F401 - the module's PostgreSQL server fixture
from test_ray_executor import cluster  # noqa: F401 - the module's two-node cluster fixture

if not os.environ.get("CI"):  # CI installs the ray extra (make test): there the test must run, never skip
    pytest.importorskip("ray", reason="pip install -e '.[test,ray]'")


@pytest.mark.slow
def test_a_search_on_two_ray_nodes_retries_the_trial_of_a_killed_worker(cluster, database,  # noqa: F811
                                                                         tiny_distilbert):
    out = cluster.base / "tune"
    out.mkdir()
    url = database  # over TCP, its password checked
    (out / "space.yaml").write_text("params:\n  classifier.C: {low: 0.1, high: 10.0, log: true}\n"
                                    "fixed:\n  classifier.C_grid: null\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "transferlab.cli", "tune", "features", "--trials", "2", "--jobs", "2", "--executor",
         "ray", "--ray-address", cluster.address, "--memory", "0.25", "--heartbeat", "2", "--storage", url,
         "--study-name", "onray", "--search", str(out / "space.yaml"), "--output-dir", str(out), "--threads", "1",
         f"encoder.model={tiny_distilbert}", "data.limit=600", "encoder.max_length=32", "encoder.batch_size=8",
         "tracking.tensorboard=false", f"cache_dir={out / 'cache'}"],
        env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (running := [t for t in trials_of(url, "onray") if "run_dir" in t.user_attrs
                           and t.state.name == "RUNNING"]):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no running trial: {proc.communicate()[1][-3000:]}")
        time.sleep(0.2)
    killed = running[0]
    pid = killed.user_attrs["process"]["pid"]
    assert "ray" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").lower()  # a Ray worker
    os.kill(pid, signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, (stdout + stderr)[-3000:]

    trials = trials_of(url, "onray")
    _, retry = one_retry(trials, killed)
    others = {t.user_attrs["process"]["pid"] for t in trials if t.number != killed.number}
    assert proc.pid not in others and pid not in others  # in Ray workers (Ray may reuse one for the retry's task)
    first_two = [t for t in trials if t.number != retry.number]
    assert len({t.user_attrs["node"]["id"] for t in first_two}) == 2  # the two workers on the two nodes
    assert f"#{killed.number}: fail (no heartbeat: its worker died)" in stdout
    assert [line for line in stdout.splitlines() if line.startswith("trial ") and " | " in line][-1].startswith(
        "trial 3/3 ")
    report = (out / "tune" / "onray" / "report.md").read_text()
    assert f"3 trials (2 completed, 0 pruned, 1 failed); 1 retried (trial {retry.number} repeats trial " \
           f"{killed.number}" in report
    assert not list((out / "tune" / "onray").glob(".storage-check-*"))
    assert PASSWORD not in stdout + stderr and files_holding(out, PASSWORD) == []
