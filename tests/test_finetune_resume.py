"""Resume after a real Ctrl-C and a real SIGTERM to a real training process, and every resume error."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import finetune_overrides
from safetensors.torch import load_file

from transferlab.cli import main
from transferlab.tracking.files import read_json

SRC = Path(__file__).resolve().parents[1] / "src"


def start(out: Path, overrides: list[str], *extra: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(SRC), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    # --resume last: its optional RUN_DIR would otherwise swallow the first key=value
    return subprocess.Popen([sys.executable, "-m", "transferlab.cli", "finetune", "--output-dir", str(out),
                             *overrides, *extra], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_sigint)


def default_sigint() -> None:
    """Ctrl-C as usual in the child, even when pytest itself runs in the background (where a shell starts
    it with SIGINT ignored, and Python then keeps it ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt_after(proc: subprocess.Popen, out: Path, step: int, sig: int, timeout: float = 120) -> Path:
    """Send ``sig`` as soon as checkpoint ``step`` is complete; the run directory."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list(out.glob(f"finetune/*/checkpoints/checkpoint-{step}/transferlab.json"))
        if found:
            proc.send_signal(sig)
            return found[0].parents[2]
        if proc.poll() is not None:
            pytest.fail(f"training ended before checkpoint {step}: {proc.communicate()[1][-2000:]}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail(f"no checkpoint {step} within {timeout}s")


@pytest.mark.slow
def test_resume_after_sigint_and_sigterm_reaches_the_uninterrupted_result(tmp_path, tiny_text_models,
                                                                          finetuned_run):
    overrides = finetune_overrides(tiny_text_models["distilbert"])
    first = start(tmp_path, overrides)
    run_dir = interrupt_after(first, tmp_path, 8, signal.SIGINT)
    assert first.wait(60) == 130
    status = read_json(run_dir / "status.json")
    assert status["status"] == "failed" and "KeyboardInterrupt" in status["error"]
    assert not (run_dir / "metrics.json").exists()

    second = start(tmp_path, overrides, "--resume")  # the latest unfinished run of this config
    assert interrupt_after(second, tmp_path, 16, signal.SIGTERM) == run_dir
    assert second.wait(60) == 130
    status = read_json(run_dir / "status.json")
    assert "SIGTERM" in status["error"] and status["resumed_from"].endswith("checkpoint-8")

    third = start(tmp_path, overrides, "--resume", str(run_dir))
    stdout, stderr = third.communicate(timeout=180)
    assert third.returncode == 0, stderr[-3000:]
    assert stdout.strip().splitlines()[-1] == str(run_dir)
    assert len(list(tmp_path.glob("finetune/*"))) == 1

    resumed, reference = read_json(run_dir / "metrics.json"), read_json(finetuned_run / "metrics.json")
    for split in ("validation", "test"):
        assert resumed["methods"]["finetune"][split]["accuracy"] == reference["methods"]["finetune"][split]["accuracy"]
        assert resumed["methods"]["finetune"][split]["f1"] == pytest.approx(reference["methods"]["finetune"][split]["f1"])
    status = read_json(run_dir / "status.json")
    assert status["status"] == "completed" and "error" not in status  # the old failure is not carried over
    assert resumed["details"]["training"]["global_step"] == 40
    assert resumed["details"]["training"]["resumed_from"].endswith("checkpoint-16")
    a, b = load_file(run_dir / "model" / "model.safetensors"), load_file(finetuned_run / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)


def unfinished_copy(finetuned_run: Path, tmp_path: Path, keep_checkpoints: bool = True) -> Path:
    """A copy of a finished run made to look crashed: no metrics.json (and optionally no checkpoints)."""
    copy = tmp_path / "finetune" / "crashed"
    shutil.copytree(finetuned_run, copy)
    (copy / "metrics.json").unlink()
    if not keep_checkpoints:
        shutil.rmtree(copy / "checkpoints")
    return copy


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(["finetune", *argv])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("change, message", [
    ("bert", "was trained with model"),
    ("labels", "has labels ['neg', 'pos']"),
    ("lora", "was trained with method 'full'"),
])
@pytest.mark.slow
def test_resume_refuses_a_checkpoint_of_another_model_or_label_set(capsys, tmp_path, tiny_text_models,
                                                                  finetuned_run, change, message):
    crashed = unfinished_copy(finetuned_run, tmp_path)
    extra = {"bert": {"model": tiny_text_models["bert"]}, "labels": {"data.label_names": "[bad,good]"},
             "lora": {"method": "lora"}}[change]
    before = sorted(tmp_path.rglob("*"))
    code, err = run_cli(capsys, "--output-dir", str(tmp_path),
                        *finetune_overrides(tiny_text_models["distilbert"], **extra), "--resume", str(crashed))
    assert code == 2 and message in err and err.startswith("error: --resume") and len(err.splitlines()) == 1
    assert sorted(tmp_path.rglob("*")) == before  # nothing written


@pytest.mark.slow
def test_resume_errors_when_there_is_nothing_to_resume(capsys, tmp_path, tiny_text_models, finetuned_run):
    overrides = finetune_overrides(tiny_text_models["distilbert"])
    code, err = run_cli(capsys, "--output-dir", str(tmp_path), *overrides, "--resume")
    assert code == 2 and "no unfinished finetune run with this config" in err
    code, err = run_cli(capsys, "--output-dir", str(tmp_path), *overrides, "--resume", str(finetuned_run))
    assert code == 2 and "already completed" in err
    code, err = run_cli(capsys, "--output-dir", str(tmp_path), *overrides, "--resume", str(tmp_path))
    assert code == 2 and "not a transferlab run directory" in err
    crashed = unfinished_copy(finetuned_run, tmp_path, keep_checkpoints=False)
    code, err = run_cli(capsys, "--output-dir", str(tmp_path), *overrides, "--resume")
    assert code == 2 and f"run {crashed} has no checkpoint to resume from" in err
    assert not list(tmp_path.glob("finetune/*/metrics.json"))


@pytest.mark.slow
def test_lora_run_interrupted_in_process_resumes_to_the_same_result(tmp_path, tiny_text_models, monkeypatch):
    from transferlab.config import load_config
    from transferlab.experiments.finetune import FinetuneConfig, run_finetune
    from transferlab.training.trainer import GuardedTrainer

    overrides = finetune_overrides(tiny_text_models["bert"], method="lora", **{"training.epochs": 5,
                                                                               "data.limit": 64})
    def cfg(name: str) -> FinetuneConfig:
        return load_config(FinetuneConfig, "finetune", "offline", overrides + [f"run_name={name}"])

    reference = run_finetune(cfg("reference"), tmp_path / "a", progress=False)

    original = GuardedTrainer.compute_loss

    def stop_at_step_10(self, model, inputs, *args, **kwargs):
        if model.training and self.state.global_step == 10:
            raise KeyboardInterrupt
        return original(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(GuardedTrainer, "compute_loss", stop_at_step_10)
    with pytest.raises(KeyboardInterrupt):
        run_finetune(cfg("interrupted"), tmp_path / "b", progress=False)
    monkeypatch.setattr(GuardedTrainer, "compute_loss", original)
    resumed = run_finetune(cfg("interrupted"), tmp_path / "b", resume="latest", progress=False)

    a, b = read_json(reference / "metrics.json"), read_json(resumed / "metrics.json")
    assert b["details"]["training"]["resumed_from"].endswith("checkpoint-8")
    assert a["methods"]["finetune"]["validation"]["accuracy"] == b["methods"]["finetune"]["validation"]["accuracy"]
    assert a["methods"]["finetune"]["test"]["f1"] == pytest.approx(b["methods"]["finetune"]["test"]["f1"])
    wa, wb = load_file(reference / "adapter" / "adapter_model.safetensors"), load_file(
        resumed / "adapter" / "adapter_model.safetensors")
    assert wa.keys() == wb.keys() and len(wa) > 0
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_pipeline_resume_after_sigkill_continues_the_finetune_stage_from_its_checkpoint(
        capsys, tmp_path, tiny_text_models, finetuned_run):
    """SIGKILL leaves no word in status.json: resume sees the process gone, marks the stage killed and continues
    from its last complete checkpoint, reaching the uninterrupted run's result."""
    env = dict(os.environ, PYTHONPATH=str(SRC), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    overrides = ["finetune." + o for o in finetune_overrides(tiny_text_models["distilbert"])]
    proc = subprocess.Popen([sys.executable, "-m", "transferlab.cli", "run", "--output-dir", str(tmp_path),
                             "--stages", "finetune", *overrides], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while not list(tmp_path.glob("run/*/finetune/*/checkpoints/checkpoint-8/transferlab.json")):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no checkpoint 8: {proc.communicate()[1][-2000:]}")
        time.sleep(0.02)
    proc.kill()  # SIGKILL
    proc.communicate(timeout=60)
    (pipe,) = (tmp_path / "run").iterdir()
    (stage_dir,) = (pipe / "finetune").iterdir()
    assert read_json(stage_dir / "status.json")["status"] == "running"  # what the kill left

    assert main(["run", "--resume", str(pipe)]) == 0
    out = capsys.readouterr().out
    assert f"note: {stage_dir} was running (no heartbeat since" in out and "process gone)" in out
    assert f"resuming {stage_dir} from checkpoint-" in out
    assert list((pipe / "finetune").iterdir()) == [stage_dir]  # continued in place, not restarted elsewhere
    metrics = read_json(stage_dir / "metrics.json")
    training = metrics["details"]["training"]
    assert training["resumed_from"] in ("checkpoint-8", "checkpoint-16") and training["global_step"] == 40
    reference = read_json(finetuned_run / "metrics.json")
    for split in ("validation", "test"):
        assert metrics["methods"]["finetune"][split]["accuracy"] == reference["methods"]["finetune"][split]["accuracy"]
    status = read_json(stage_dir / "status.json")
    assert status["status"] == "completed" and "SIGKILL" in status["note"]
    state = read_json(pipe / "pipeline.json")
    assert [s["status"] for s in state["stages"]] == ["completed"]


@pytest.mark.slow
def test_resume_of_a_run_whose_process_still_works_is_refused(capsys, tmp_path, tiny_text_models, finetuned_run):
    """A run whose status names a live process (here: this one) is not taken over by a second resume."""
    import json
    import socket

    crashed = unfinished_copy(finetuned_run, tmp_path)
    status = read_json(crashed / "status.json")
    status.update(status="running", pid=os.getpid(), host=socket.gethostname())
    (crashed / "status.json").write_text(json.dumps(status))
    before = sorted(tmp_path.rglob("*"))
    code, err = run_cli(capsys, "--output-dir", str(tmp_path), *finetune_overrides(tiny_text_models["distilbert"]),
                        "--resume", str(crashed))
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"error: --resume {crashed}: the run is still running (heartbeat ")
    assert f"pid {os.getpid()} on " in err and "stop that process first" in err
    assert sorted(tmp_path.rglob("*")) == before


def test_resume_from_another_directory_with_relative_data_paths_is_refused(capsys, tmp_path, tiny_text_models,
                                                                          finetuned_run, monkeypatch):
    """The same relative file names in another working directory are other files: refused, nothing written."""
    import yaml
    from helpers import make_csv

    rows = [{"text": f"review {i}", "label": "pos" if i % 2 else "neg"} for i in range(8)]
    for folder in ("a", "b"):
        for split in ("train", "validation", "test"):
            (tmp_path / folder).mkdir(exist_ok=True)
            make_csv(tmp_path / folder / f"{split}.csv", rows)
    files = {"source": "files", **{f"{s}_file": f"{s}.csv" for s in ("train", "validation", "test")}}
    crashed = unfinished_copy(finetuned_run, tmp_path)
    config = yaml.safe_load((crashed / "config.yaml").read_text())
    config["data"].update(files)
    config["environment"]["cwd"] = str(tmp_path / "a")
    (crashed / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    monkeypatch.chdir(tmp_path / "b")
    before = sorted(tmp_path.rglob("*"))
    code, err = run_cli(capsys, "--output-dir", str(tmp_path), *finetune_overrides(tiny_text_models["distilbert"]),
                        *[f"data.{k}={v}" for k, v in files.items()], "--resume", str(crashed))
    assert code == 2 and len(err.splitlines()) == 1, err
    assert f"the run was started in {tmp_path / 'a'}, and its relative path(s) data.train_file=train.csv" in err
    assert err.rstrip().endswith(f"resume from {tmp_path / 'a'}")
    assert sorted(tmp_path.rglob("*")) == before
