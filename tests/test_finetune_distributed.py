"""The same finetune command under ``torchrun`` with 2 CPU processes (gloo): both agree, one writes."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import finetune_overrides

from transferlab.tracking.files import read_json

pytestmark = pytest.mark.slow  # torchrun launches

SRC = Path(__file__).resolve().parents[1] / "src"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(command: str, output_dir: Path, overrides: list[str], timeout: int = 180):
    """``transferlab COMMAND`` under torchrun with 2 CPU processes: (the finished process, {rank: its
    "process N:" line});
    asserts that it succeeded and that both processes report the same."""
    env = dict(os.environ, PYTHONPATH=str(SRC), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                           f"--master_port={free_port()}", "-m", "transferlab.cli", command,
                           "--output-dir", str(output_dir), *overrides],
                          env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # two processes share the pipe: a line of one may run into the other's, or into the Trainer's log dict
    # (no newline between them); a report ends at its checksum
    reports = dict(re.findall(r"process (\d): (.*?checksum -?\d+\.\d{6})", proc.stdout))
    assert set(reports) == {"0", "1"} and reports["0"] == reports["1"], reports  # same metrics, same weights
    return proc, reports


def test_two_process_run_agrees_and_writes_outputs_once(tmp_path, tiny_text_models):
    overrides = finetune_overrides(tiny_text_models["distilbert"], **{
        "data.limit": 64, "training.epochs": 2, "training.batch_size": 8, "training.eval_steps": 2})
    proc, reports = torchrun("finetune", tmp_path, overrides)
    (run_dir,) = tmp_path.glob("finetune/*")  # one run directory
    assert proc.stdout.count("run directory:") == 1
    assert proc.stdout.strip().splitlines()[-1] == str(run_dir) and proc.stdout.count(str(run_dir) + "\n") == 2
    metrics = read_json(run_dir / "metrics.json")
    assert metrics["model"]["processes"] == 2
    # 64 examples / (8 per process x 2 processes) = 4 steps per epoch: the data was split between processes
    assert metrics["details"]["training"]["global_step"] == 8
    result = metrics["methods"]["finetune"]
    assert result["validation"]["n_examples"] == result["test"]["n_examples"] == 64  # gathered, no duplicates
    assert f"validation accuracy {result['validation']['accuracy']:.6f}" in reports["0"]
    # one writer each, from the main process only: the Trainer's curves, the final metrics, the hparams
    assert len(list((run_dir / "tensorboard").glob("events.out.tfevents.*"))) == 3
    assert read_json(run_dir / "status.json")["status"] == "completed"
