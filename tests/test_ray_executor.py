"""Study cells as Ray tasks on a real two-node Ray cluster that this module starts on this machine (``ray start
--head`` and ``ray start --address``, one CPU each, token authentication off) and stops by the pids it started:
the same results.csv as the local executor with cells on both nodes and the frozen features encoded once, a
worker killed with SIGKILL mid-fine-tune retried and resumed from its checkpoint, a lost node's cell run again on
the other node (on a cluster of its own), and a node that cannot see the output folder (its own mount namespace
with an empty tmpfs over it) refused before the first cell."""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
from helpers import finetune_overrides
from test_security import cli, one_line_error

from transferlab.errors import TransferlabError
from transferlab.tracking.files import read_json

if not os.environ.get("CI"):  # CI installs the ray extra (make test): there the tests must run, never skip
    pytest.importorskip("ray", reason="pip install -e '.[test,ray]'")

SRC = Path(__file__).resolve().parents[1] / "src"
RAY = str(Path(sys.executable).with_name("ray"))


@dataclass(frozen=True)
class Cluster:
    address: str
    base: Path  # a short folder every node sees (Ray's socket paths must stay short)
    hidden: Path | None  # a folder the second node does not see (None where no mount namespace can be made)
    env: dict
    worker_session: int  # the session of the second node's processes (its `ray start`, raylet and workers)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def can_hide_a_folder(folder: Path) -> bool:
    """Whether an unprivileged mount namespace can lay an empty tmpfs over ``folder`` here."""
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", 'mount -t tmpfs none "$0"', str(folder)],
                           capture_output=True)
    return probe.returncode == 0


def wait_for_nodes(address: str, count: int, timeout: float = 180) -> None:
    import ray

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            ray.init(address=address, log_to_driver=False, logging_level="warning")
            alive = [n for n in ray.nodes() if n["Alive"]]
        except ConnectionError:
            alive = []
        finally:
            ray.shutdown()
        if len(alive) >= count:
            return
        time.sleep(2)
    raise AssertionError(f"the Ray cluster at {address} did not reach {count} nodes in {timeout:.0f}s")


@contextlib.contextmanager
def started_cluster(hide: bool) -> Iterator[Cluster]:
    """A two-node cluster on this machine (``hide``: the second node in a mount namespace that hides
    ``hidden``, where one can be made), stopped by the pids it started; the second node leads its own session."""
    base = Path(tempfile.mkdtemp(prefix="tl-ray-"))
    hidden = base / "hidden"
    hidden.mkdir()
    port = free_port()
    env = dict(os.environ, RAY_AUTH_MODE="disabled", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=str(SRC))
    common = ["--num-cpus=1", "--object-store-memory=80000000", "--disable-usage-stats", "--block"]
    logs = (base / "head.log").open("w"), (base / "worker.log").open("w")
    head = subprocess.Popen([RAY, "start", "--head", f"--port={port}", "--include-dashboard=false",
                             f"--ray-client-server-port={free_port()}", f"--temp-dir={base / 'ray-tmp'}", *common],
                            env=env, stdout=logs[0], stderr=subprocess.STDOUT)
    worker_command = [RAY, "start", f"--address=127.0.0.1:{port}", *common]
    isolated = hide and can_hide_a_folder(hidden)
    if isolated:  # the second node sees everything but `hidden` (an empty tmpfs over it in its mount namespace)
        worker_command = ["unshare", "-rm", "sh", "-c", 'mount -t tmpfs none "$0" && exec "$@"', str(hidden),
                          *worker_command]
    worker = None
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_AUTH_MODE", "disabled")
        try:
            time.sleep(3)  # the head's GCS first
            worker = subprocess.Popen(worker_command, env=env, stdout=logs[1], stderr=subprocess.STDOUT,
                                      start_new_session=True)
            wait_for_nodes(f"127.0.0.1:{port}", 2)
            yield Cluster(f"127.0.0.1:{port}", base, hidden if isolated else None, env, worker.pid)
        finally:
            for proc in (worker, head):  # `ray start --block` stops the processes it started on SIGTERM
                if proc is not None:
                    proc.terminate()
                    try:
                        proc.wait(60)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
            if worker is not None:
                kill_session(worker.pid)  # whatever of the second node is left
            for log in logs:
                log.close()
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster():
    with started_cluster(hide=True) as started:
        yield started


def session_processes(session: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.getsid(int(entry.name)) == session:
                    found.append(int(entry.name))
    return found


def kill_session(session: int) -> int:
    """SIGKILL every process of ``session`` at once (a machine lost: no process of it ends cleanly); how many."""
    pids = session_processes(session)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return len(pids)


def study_args(out: Path, encoder: Path, *extra: str) -> list[str]:
    return ["features", "--shots", "2,4", "--seeds", "0,1", "--threads", "1", "--output-dir", str(out),
            f"encoder.model={encoder}", "data.limit=200", "also_classifiers=[logreg]", "tracking.tensorboard=false",
            "run_name=rt", *extra]


@pytest.mark.slow
def test_a_study_on_two_ray_nodes_gives_the_local_results_with_the_features_encoded_once(
        cluster, tiny_text_models, capsys):
    encoder = tiny_text_models["bert"]
    began = time.perf_counter()
    code, _, err = cli(capsys, *study_args(cluster.base / "local", encoder))
    assert code == 0, err[-3000:]
    local_s = time.perf_counter() - began
    began = time.perf_counter()
    code, out, err = cli(capsys, *study_args(cluster.base / "on-ray", encoder, "--executor", "ray",
                                             "--ray-address", cluster.address, "--memory", "0.25"))
    assert code == 0, err[-3000:]
    print(f"local {local_s:.1f}s, ray {time.perf_counter() - began:.1f}s", file=sys.stderr)

    study = cluster.base / "on-ray" / "study" / "rt"
    local = (cluster.base / "local" / "study" / "rt" / "results.csv").read_text()
    assert (study / "results.csv").read_text() == local  # the same draws, every figure equal
    with (study / "results.csv").open() as handle:
        assert len({(r["shots"], r["seed"]) for r in csv.DictReader(handle)}) == 4
    state = read_json(study / "study.json")
    assert [c["status"] for c in state["cells"]] == ["completed"] * 4
    assert len({c["node"]["id"] for c in state["cells"]}) == 2  # cells ran on both nodes
    assert all(len(c["attempts"]) == 1 and c["attempts"][0]["id"] == c["node"]["id"] for c in state["cells"])
    assert all(c["resources"] == {"num_cpus": 1, "num_gpus": 0, "memory": 2 ** 28} for c in state["cells"])
    encoded = [read_json(study / c["run_dir"] / "metrics.json")["timings"]["encoded_train_texts"]
               for c in state["cells"]]
    assert sorted(encoded) == [0, 0, 0, 200]  # the pool encoded by one cell, read by the others from the study
    assert not list(study.glob(".storage-check-*"))
    lines = [line for line in out.splitlines() if line.startswith("cell ")]
    assert len(lines) == 4 and all(" completed in " in line and "ETA" in line for line in lines)
    assert lines[-1].startswith("cell 4/4 ")
    for cell in state["cells"]:  # each cell's own output is in its log, not on the console
        log = (study / "cells" / f"{cell['run_dir']}.log").read_text()
        assert "texts " in log and f"== {cell['run_dir']}: attempt on " in log
    assert "train pool: 200 texts" not in out


def lora_study_args(out: Path, clip_folder: Path, tree: Path, *extra: str) -> list[str]:
    """A LoRA study on the tiny CLIP and image tree (one training step a cell; see test_clip_shots.cell)."""
    return ["lora", "--shots", "1,2", "--seeds", "0,1", "--threads", "1", "--output-dir", str(out),
            f"model.name={clip_folder}", f"data.path={tree}", "data.val_per_class=2", "model.batch_size=8",
            "model.templates=['a photo of a {name}.', 'a {name}']", "lora.target_modules=[q_proj,v_proj]",
            "lora.towers=both", "lora.layers=[-1]", "lora.train_projection=false", "objective.train_views=[flip]",
            "training.max_steps=1", "training.batch_size=4", "probe.c_grid=[1.0]", "tip_adapter.epochs=2",
            "run_name=img", *extra]


@pytest.mark.slow
def test_a_lora_study_on_ray_gives_the_local_results_with_the_images_encoded_once(cluster, clip_folder, tree,
                                                                                  capsys):
    code, _, err = cli(capsys, *lora_study_args(cluster.base / "lora-local", clip_folder, tree))
    assert code == 0, err[-3000:]
    code, _, err = cli(capsys, *lora_study_args(cluster.base / "lora-ray", clip_folder, tree, "--executor", "ray",
                                                "--ray-address", cluster.address))
    assert code == 0, err[-3000:]
    study = cluster.base / "lora-ray" / "study" / "img"
    assert (study / "results.csv").read_text() == \
        (cluster.base / "lora-local" / "study" / "img" / "results.csv").read_text()
    state = read_json(study / "study.json")
    assert [c["status"] for c in state["cells"]] == ["completed"] * 4
    encoded = [read_json(study / c["run_dir"] / "metrics.json")["details"]["images_encoded"] for c in state["cells"]]
    assert sum(bool(e) for e in encoded) == 1  # one cell encoded the images; the others read the study's cache


@pytest.mark.slow
def test_a_ray_worker_killed_mid_fine_tune_is_retried_and_resumes_from_its_checkpoint(
        cluster, tiny_text_models, finetuned_run):
    out = cluster.base / "kill"
    proc = subprocess.Popen(
        [sys.executable, "-m", "transferlab.cli", "finetune", "--shots", "full", "--threads", "1", "--executor",
         "ray", "--ray-address", cluster.address, "--output-dir", str(out),
         *finetune_overrides(tiny_text_models["distilbert"], run_name="ft")],
        env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    study = out / "study" / "ft"
    cell = study / "finetune" / "full-seed0"
    deadline = time.monotonic() + 300
    while not (cell / "checkpoints" / "checkpoint-8" / "transferlab.json").is_file():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no checkpoint 8: {proc.communicate()[1][-3000:]}")
        time.sleep(0.05)
    pid = read_json(cell / "status.json")["pid"]
    assert "ray" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").lower()  # a Ray worker
    os.kill(pid, signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]

    (record,) = read_json(study / "study.json")["cells"]
    assert record["status"] == "completed"
    assert [a["pid"] for a in record["attempts"]][0] == pid and len(record["attempts"]) == 2
    assert record["resumed_from"] in ("checkpoint-8", "checkpoint-16")
    metrics = read_json(cell / "metrics.json")
    assert metrics["details"]["training"]["resumed_from"] == record["resumed_from"]
    assert metrics["details"]["training"]["global_step"] == 40
    reference = read_json(finetuned_run / "metrics.json")
    for split in ("validation", "test"):
        assert metrics["methods"]["finetune"][split]["accuracy"] == reference["methods"]["finetune"][split]["accuracy"]
    status = read_json(cell / "status.json")
    assert status["status"] == "completed" and "SIGKILL" in status["note"]
    assert "note: attempt 2: the worker of attempt 1" in (study / "cells" / "finetune" / "full-seed0.log").read_text()
    assert "after 2 attempts" in stdout and "{'loss'" not in stdout  # no Trainer log dicts on the console


@pytest.mark.slow
def test_a_lost_node_s_cell_runs_again_on_the_other_node_and_the_study_gives_the_local_results(tiny_text_models):
    """A cluster of its own: two fine-tune cells, one on each node; the second node is lost (every process of it
    SIGKILLed at once, as when its machine dies) once its cell wrote a checkpoint. Ray runs that cell again on
    the head node, where it continues from the checkpoint, and the study's results equal a local study's."""
    args = ["finetune", "--shots", "full", "--seeds", "0,1", "--threads", "1",
            *finetune_overrides(tiny_text_models["distilbert"], run_name="ft")]
    with started_cluster(hide=False) as two:
        local = subprocess.run([sys.executable, "-m", "transferlab.cli", *args, "--output-dir",
                                str(two.base / "local")], env=two.env, capture_output=True, text=True, timeout=600)
        assert local.returncode == 0, local.stderr[-3000:]
        out = two.base / "lost"
        proc = subprocess.Popen([sys.executable, "-m", "transferlab.cli", *args, "--output-dir", str(out),
                                 "--executor", "ray", "--ray-address", two.address],
                                env=two.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        study = out / "study" / "ft"
        deadline, lost = time.monotonic() + 300, None
        while lost is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"no checkpoint on the second node: {proc.communicate()[1][-3000:]}")
            for cell in (study / "finetune").glob("full-seed*"):
                with contextlib.suppress(TransferlabError, FileNotFoundError, KeyError):
                    pid = read_json(cell / "status.json")["pid"]
                    if (cell / "checkpoints" / "checkpoint-8" / "transferlab.json").is_file() \
                            and pid in session_processes(two.worker_session):
                        lost = cell
            time.sleep(0.05)
        assert kill_session(two.worker_session) >= 3  # `ray start`, the raylet, the cell's worker at least
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr[-3000:]
        local_results = two.base / "local" / "study" / "ft" / "results.csv"
        assert (study / "results.csv").read_text() == local_results.read_text()
        cells = {c["run_dir"]: c for c in read_json(study / "study.json")["cells"]}
        assert {c["status"] for c in cells.values()} == {"completed"}
        record = cells[f"finetune/{lost.name}"]
        first, second = record["attempts"]
        assert first["id"] != second["id"] == record["node"]["id"]  # the second attempt on the other (head) node
        assert record["resumed_from"].startswith("checkpoint-") and "after 2 attempts" in stdout
        assert read_json(lost / "metrics.json")["details"]["training"]["global_step"] == 40
        assert read_json(lost / "status.json")["status"] == "completed"


@pytest.mark.slow
def test_a_node_that_cannot_see_the_output_folder_stops_the_study_before_any_cell(cluster, tiny_text_models, capsys):
    if cluster.hidden is None:
        pytest.skip("no unprivileged mount namespace here to hide a folder from one node")
    out = cluster.hidden / "out"
    code, _, err = cli(capsys, *study_args(out, tiny_text_models["bert"], "--executor", "ray",
                                           "--ray-address", cluster.address))
    line = one_line_error(code, err)
    assert f"1 of 2 Ray node(s) cannot read the study folder {out / 'study' / 'rt'}: " in line
    assert "mount the same shared file system" in line
    state = read_json(out / "study" / "rt" / "study.json")
    assert state["status"] == "failed" and {c["status"] for c in state["cells"]} == {"pending"}
    assert not (out / "study" / "rt" / "features").exists() and not list((out / "study" / "rt").glob(".storage*"))


@pytest.mark.slow
def test_more_memory_a_cell_than_any_node_has_stops_the_study_before_any_cell(cluster, tiny_text_models, capsys):
    """Ray would wait for such a node forever: the study says so in one line instead, and runs nothing."""
    out = cluster.base / "too-big"
    code, _, err = cli(capsys, *study_args(out, tiny_text_models["bert"], "--executor", "ray", "--ray-address",
                                           cluster.address, "--memory", "100000"))
    line = one_line_error(code, err)
    assert "no node of the Ray cluster has the 100000 GiB of memory a cell asks for (--memory 100000)" in line
    state = read_json(out / "study" / "rt" / "study.json")
    assert state["status"] == "failed" and {c["status"] for c in state["cells"]} == {"pending"}
    assert not (out / "study" / "rt" / "features").exists()


def test_ray_settings_without_a_study_executor_or_a_reachable_cluster_are_one_line(capsys, tmp_path, tiny_distilbert):
    code, _, err = cli(capsys, "features", "--shots", "2", "--ray-address", "127.0.0.1:1", "--output-dir", tmp_path)
    assert "--ray-address goes with --executor ray" in one_line_error(code, err)
    assert not (tmp_path / "study").exists()
    code, _, err = cli(capsys, "features", "--shots", "2", "--memory", "2", "--output-dir", tmp_path)
    assert "--memory reserves memory for Ray tasks: add --executor ray, or leave it out" in one_line_error(code, err)
    code, _, err = cli(capsys, "tune", "features", "--memory", "2", "--output-dir", tmp_path)
    assert "--memory reserves memory for Ray tasks" in one_line_error(code, err)
    assert not (tmp_path / "study").exists() and not (tmp_path / "tune").exists()
    nobody = f"127.0.0.1:{free_port()}"
    code, _, err = cli(capsys, "features", "--shots", "2", "--executor", "ray", "--ray-address", nobody,
                       "--output-dir", tmp_path, f"encoder.model={tiny_distilbert}", "run_name=s")
    assert f"cannot reach the Ray cluster at {nobody} (Connection refused): start it" in one_line_error(code, err)
    assert not (tmp_path / "study" / "s" / "features").exists()


def test_a_failed_ray_task_is_named_by_its_own_error_not_by_the_task():
    """``ray.get`` raises a RayTaskError whose first line names the task and its process; the line a user sees
    is the task's own error, and Ray's own for a lost worker."""
    import ray

    from transferlab.errors import TransferlabError
    from transferlab.studies.executor import ray_error

    cause = TransferlabError("cannot open the study storage x: check the URL")
    task_error = ray.exceptions.RayTaskError("ray_trials", "Traceback (most recent call last): ...", cause)
    assert "cannot open" not in str(task_error).splitlines()[0]
    assert ray_error(task_error) == ray_error(task_error.as_instanceof_cause()) == \
        "TransferlabError: cannot open the study storage x: check the URL"
    assert ray_error(ray.exceptions.WorkerCrashedError()).startswith("WorkerCrashedError: The worker died")


def test_a_cell_asks_for_a_gpu_when_its_device_does():
    from transferlab.config import load_config
    from transferlab.experiments.features import FeaturesConfig
    from transferlab.studies.executor import gpus_for

    auto = load_config(FeaturesConfig, "features", "offline")
    assert (gpus_for(auto, 0), gpus_for(auto, 2)) == (0, 1)  # auto: a GPU where the cluster has one
    assert gpus_for(load_config(FeaturesConfig, "features", "offline", ["encoder.device=cuda"]), 0) == 1
    assert gpus_for(load_config(FeaturesConfig, "features", "offline", ["encoder.device=cpu"]), 2) == 0


@pytest.mark.slow
def test_a_driver_killed_outright_takes_its_cells_with_it_and_the_same_command_continues(
        cluster, tiny_text_models, capsys):
    out = cluster.base / "driver"
    argv = ["finetune", "--shots", "full", "--threads", "1", "--executor", "ray", "--ray-address", cluster.address,
            "--output-dir", str(out), *finetune_overrides(tiny_text_models["distilbert"], run_name="ft")]
    driver = subprocess.Popen([sys.executable, "-m", "transferlab.cli", *argv], env=cluster.env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cell = out / "study" / "ft" / "finetune" / "full-seed0"
    deadline = time.monotonic() + 300
    while not (cell / "checkpoints" / "checkpoint-8" / "transferlab.json").is_file():
        if driver.poll() is not None or time.monotonic() > deadline:
            driver.kill()
            pytest.fail("no checkpoint 8 before the driver ended")
        time.sleep(0.05)
    worker = read_json(cell / "status.json")["pid"]
    driver.kill()  # SIGKILL: no word to the ledger, nor to Ray
    driver.wait()
    deadline = time.monotonic() + 60
    while Path(f"/proc/{worker}").exists() and time.monotonic() < deadline:  # Ray ends the dead driver's tasks
        time.sleep(0.2)
    assert not Path(f"/proc/{worker}").exists()

    code, out_text, err = cli(capsys, *argv)  # the same command continues the killed study
    assert code == 0, err[-3000:]
    assert "1 to run" in out_text
    (record,) = read_json(out / "study" / "ft" / "study.json")["cells"]
    assert record["status"] == "completed" and record["resumed_from"].startswith("checkpoint-")
    assert read_json(cell / "metrics.json")["details"]["training"]["global_step"] == 40
