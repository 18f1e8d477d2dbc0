"""``transferlab tune --storage`` and ``--study-name``: every storage that cannot be used is one line and exit 2
(no traceback, nothing created), a database URL's password is never printed or written, and a study name is one
folder inside ``--output-dir``."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

from transferlab.cli import main
from transferlab.studies.tune_storage import redact_url, scrub

PASSWORD = "s3cret-Pa55"


def refused(capsys, tmp_path, *argv: str) -> str:
    """The one ``error:`` line of a refused tune command; its output and --output-dir hold no password."""
    out = tmp_path / "out"
    code = main(["tune", "features", "--trials", "1", "--output-dir", str(out), "data.limit=60", *argv])
    stdout, err = capsys.readouterr()
    assert code == 2 and "Traceback" not in err, err[-2000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert PASSWORD not in stdout + err
    assert not out.exists()  # refused before anything was written
    return lines[0]


def closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_text_file_or_random_bytes_as_the_journal_is_refused_and_left_alone(capsys, tmp_path):
    text, noise = tmp_path / "notes.txt", tmp_path / "noise.bin"
    text.write_text("my notes, not a journal\n")
    noise.write_bytes(os.urandom(4096))
    for path in (text, noise):
        before = path.read_bytes()
        assert "is not an Optuna journal" in refused(capsys, tmp_path, "--storage", str(path))
        assert path.read_bytes() == before
    assert "is a folder" in refused(capsys, tmp_path, "--storage", str(tmp_path))
    assert "is a file, not a folder" in refused(capsys, tmp_path, "--storage", str(text / "study.journal"))


def test_a_link_as_the_journal_is_refused_and_its_target_untouched(capsys, tmp_path):
    target = tmp_path / "precious.txt"
    target.write_text("")
    (tmp_path / "link.journal").symlink_to(target)
    assert "is a symbolic link" in refused(capsys, tmp_path, "--storage", str(tmp_path / "link.journal"))
    assert target.read_text() == ""


@pytest.mark.parametrize("url, message", [
    (f"foo://user:{PASSWORD}@db/studies", "'foo' is not a database SQLAlchemy knows"),
    (f"mysql://user:{PASSWORD}@localhost/studies", "needs the database driver 'MySQLdb', which is not installed"),
    (f"postgresql+psycopg2://user:{PASSWORD}@localhost/studies", "pip install psycopg2-binary"),
    ("sqlite:///{tmp}/missing/folder/studies.db", "folder '{tmp}/missing/folder' does not exist"),
    ("sqlite:///{tmp}/notes.txt", "is not a SQLite database"),
    ("sqlite://", "names no file"),
    (f"postgresql://user:{PASSWORD}@127.0.0.1:{{port}}/studies", "cannot open the study storage postgresql://"
                                                              "user:***@127.0.0.1"),
])
def test_an_unusable_database_url_is_one_line_without_its_password(capsys, tmp_path, url, message):
    (tmp_path / "notes.txt").write_text("not a database\n")
    url = url.format(tmp=tmp_path, port=closed_port())
    line = refused(capsys, tmp_path, "--storage", url)
    assert message.format(tmp=tmp_path) in line
    assert "user:***@" in line or "user" not in url


def test_a_missing_postgresql_driver_names_the_extra(capsys, tmp_path, monkeypatch):
    """As where psycopg is not installed (the import machinery refuses it): the line names the driver and the
    extra that installs it."""
    monkeypatch.setitem(sys.modules, "psycopg", None)
    line = refused(capsys, tmp_path, "--storage", f"postgresql://user:{PASSWORD}@dbhost/studies")
    assert "needs the database driver 'psycopg', which is not installed" in line
    assert 'pip install "transferlab[postgres]"' in line and "postgresql://user:***@dbhost/studies" in line


@pytest.mark.parametrize("name", ["../../../escaped", "a/b", "..", "line\nbreak"])
def test_a_study_name_that_is_not_one_folder_is_refused(capsys, tmp_path, name):
    assert "--study-name" in refused(capsys, tmp_path, "--study-name", name)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing beside --output-dir either


def test_a_link_in_place_of_the_study_folder_is_refused(capsys, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "out" / "tune").mkdir(parents=True)
    (tmp_path / "out" / "tune" / "features-offline").symlink_to(elsewhere)
    code = main(["tune", "features", "--trials", "1", "--output-dir", str(tmp_path / "out"), "data.limit=60"])
    assert code == 2 and "is a symbolic link" in capsys.readouterr().err
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("url, shown, password", [
    (f"postgresql://user:{PASSWORD}@db.example:5432/studies", "postgresql://user:***@db.example:5432/studies",
     PASSWORD),
    ("postgresql://user:p@ss/w:rd@db/studies?sslmode=require", "postgresql://user:***@db/studies?sslmode=require",
     "p@ss/w:rd"),
    (f"postgresql://user@db/studies?password={PASSWORD}&sslmode=require",
     "postgresql://user@db/studies?password=***&sslmode=require", PASSWORD),
    ("sqlite:///studies.db", "sqlite:///studies.db", None),
    ("postgresql://db/studies", "postgresql://db/studies", None),
])
def test_redaction_hides_every_password_form(url, shown, password):
    assert redact_url(url) == shown
    if password:  # a driver's message that quotes the URL, or the password alone
        message = scrub(f"connection to {url} failed (password {password!r} rejected)", url)
        assert password not in message and shown in message


def test_the_storage_may_come_from_the_environment_and_is_shown_redacted(capsys, tmp_path, monkeypatch):
    """TRANSFERLAB_TUNE_STORAGE keeps a password off command lines (``--jobs`` hands it to its workers so)."""
    monkeypatch.setenv("TRANSFERLAB_TUNE_STORAGE", f"foo://user:{PASSWORD}@db/studies")
    assert "--storage foo://user:***@db/studies: 'foo' is not a database" in refused(capsys, tmp_path)
