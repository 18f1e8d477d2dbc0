"""A label-budget study's ledger on real files, links and processes: received state is data, a study on changed
data is refused, failed cells make a failed exit, and the lock never follows a link (issue 28)."""

from __future__ import annotations

import json
import os

import pytest

from helpers import make_csv
from test_security import cli, one_line_error


def rows(n: int, offset: int = 0) -> list[dict]:
    words = ["good", "fine", "great", "bad", "awful", "poor"]
    return [{"text": f"{words[(i + offset) % 6]} film number {i + offset}", "label": int((i + offset) % 6 >= 3)}
            for i in range(n)]


@pytest.fixture
def files(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    make_csv(data / "train.csv", rows(24))
    make_csv(data / "test.csv", rows(10, 100))
    return data


def study(capsys, tmp_path, model, files, shots="2", *extra):
    return cli(capsys, "features", "--shots", shots, "--output-dir", tmp_path / "out", "--threads", "1",
               f"encoder.model={model}", "data.source=files", f"data.train_file={files / 'train.csv'}",
               f"data.test_file={files / 'test.csv'}", "classifier.C_grid=[1.0]", "tracking.tensorboard=false",
               "run_name=s", *extra)


@pytest.mark.slow
def test_a_study_refuses_to_continue_on_changed_data(capsys, tmp_path, tiny_distilbert, files):
    code, _, err = study(capsys, tmp_path, tiny_distilbert, files)
    assert code == 0, err[-2000:]
    make_csv(files / "train.csv", rows(24, 7))  # same path, other reviews
    code, _, err = study(capsys, tmp_path, tiny_distilbert, files, "2,4")
    assert "other shots" in one_line_error(code, err)
    code, _, err = study(capsys, tmp_path, tiny_distilbert, files)
    assert "other data (file contents)" in one_line_error(code, err)


@pytest.mark.slow
def test_a_cell_failing_on_its_input_stops_the_study_with_exit_2(capsys, tmp_path, tiny_distilbert, files):
    code, _, err = study(capsys, tmp_path, tiny_distilbert, files, "2,60")  # 60 is more than a class holds
    line = one_line_error(code, err)
    assert "60" in line
    state = json.loads((tmp_path / "out" / "study" / "s" / "study.json").read_text())
    assert state["status"] == "failed"
    assert [c["status"] for c in state["cells"]] == ["completed", "failed"]
    assert (tmp_path / "out" / "study" / "s" / "results.csv").read_text().count("\n") > 1  # K=2 kept


def test_a_bad_model_is_refused_before_any_cell(capsys, tmp_path, files):
    code, _, err = study(capsys, tmp_path, tmp_path / "no-such-model", files)
    assert "does not exist" in one_line_error(code, err)
    assert not (tmp_path / "out" / "study").exists()


@pytest.mark.slow
def test_the_study_lock_and_results_never_write_through_links(capsys, tmp_path, tiny_distilbert, files):
    folder = tmp_path / "out" / "study" / "s"
    folder.mkdir(parents=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    os.symlink(victim, folder / "study.lock")
    code, _, err = study(capsys, tmp_path, tiny_distilbert, files)
    assert "cannot open the lock file" in one_line_error(code, err)
    assert victim.read_text() == "precious\n"
    (folder / "study.lock").unlink()
    os.symlink(victim, folder / "results.csv")
    code, _, err = study(capsys, tmp_path, tiny_distilbert, files)
    assert code == 0, err[-2000:]
    assert victim.read_text() == "precious\n" and not (folder / "results.csv").is_symlink()


@pytest.mark.slow
@pytest.mark.parametrize("run_dir", ["../../../../x", "/etc", ""])
def test_a_received_study_naming_a_folder_outside_is_refused(capsys, tmp_path, tiny_distilbert, files, run_dir):
    code, _, err = study(capsys, tmp_path, tiny_distilbert, files)
    assert code == 0
    outside = tmp_path / "x"
    outside.mkdir()
    state_file = tmp_path / "out" / "study" / "s" / "study.json"
    state = json.loads(state_file.read_text())
    state["cells"][0].update(run_dir=run_dir, status="failed")
    state_file.write_text(json.dumps(state))
    code, _, err = study(capsys, tmp_path, tiny_distilbert, files)
    assert "outside the study" in one_line_error(code, err)
    assert outside.is_dir() and not (tmp_path / "x.failed").exists()


def test_repeated_shots_lists_are_refused(capsys, tmp_path):
    code, _, err = cli(capsys, "features", "--shots", "1", "--shots", "2", "--output-dir", tmp_path)
    assert "twice" in one_line_error(code, err)


def test_a_cell_killed_while_saving_its_first_checkpoint_starts_afresh(tmp_path, capsys):
    """Only a complete checkpoint (transferlab.json written last) is resumed; a folder a worker died in while
    saving the first one is set aside and the cell starts again, instead of failing with "no checkpoint"."""
    from transferlab.tracking.ledger import next_attempt

    cell = tmp_path / "k8-seed0"
    partial = cell / "checkpoints" / "checkpoint-2"
    partial.mkdir(parents=True)
    (partial / "trainer_state.json").write_text("{}")
    assert next_attempt(cell, resumable=True) is None
    assert not cell.exists() and (tmp_path / "k8-seed0.failed" / "checkpoints" / "checkpoint-2").is_dir()
    assert "starting it afresh" in capsys.readouterr().out
    complete = cell / "checkpoints" / "checkpoint-4"
    complete.mkdir(parents=True)
    (complete / "trainer_state.json").write_text("{}")
    (complete / "transferlab.json").write_text("{}")
    assert next_attempt(cell, resumable=True) == str(cell)
    assert next_attempt(cell, resumable=False) is None  # a run that cannot resume is always redone
