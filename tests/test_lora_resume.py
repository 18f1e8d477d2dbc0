"""The dual encoder's LoRA run keeps checkpoints (trained parameters, optimizer, schedule, step, random state,
best state) and resumes from the newest complete one: a run killed outright (SIGKILL) after its first
checkpoint, resumed, gives the uninterrupted run's figures and weights exactly; a checkpoint of another adapter
is refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from test_faults import start, wait_for
from transferlab.cli import main
from transferlab.errors import TransferlabError
from transferlab.tracking.files import read_json
from transferlab.training import checkpoints as ckpt
from transferlab.training.config import AdapterSettings

STEPS, EVERY = 45, 5  # 12 training images at batch 4: 3 steps an epoch, so checkpoint 5 falls mid-epoch


def lora_args(clip_folder: Path, tree: Path) -> list[str]:
    return [f"model.name={clip_folder}", f"data.path={tree}", "data.val_per_class=2", "model.precision=fp32",
            "training.precision=fp32", "training.torch_threads=1", "lora.towers=both",
            "lora.target_modules=[q_proj,v_proj]", "lora.layers=null", "lora.train_projection=false",
            f"training.max_steps={STEPS}", f"training.eval_steps={EVERY}", "training.batch_size=4",
            "training.learning_rate=0.02", "probe.enabled=false", "objective.train_views=[]",
            "tracking.tensorboard=false"]


def checksum(run: Path) -> tuple[float, dict]:
    weights = load_file(run / "adapter" / "adapter_model.safetensors")
    return sum(float(t.double().abs().sum()) for t in weights.values()), weights


@pytest.mark.slow
@pytest.mark.parametrize("view", [None, "flip_crop"])
def test_a_sigkilled_lora_run_resumes_to_the_uninterrupted_result(clip_folder, tree, tmp_path, capsys, view):
    """From pixels; with a random ``objective.pixel_view`` too: the resumed epoch draws each image's view as the
    uninterrupted run did (from the seed, the epoch and the image's row), so the weights agree bit for bit."""
    args = lora_args(clip_folder, tree) + ([f"objective.pixel_view={view}"] if view else [])
    assert main(["lora", "--output-dir", str(tmp_path / "reference"), *args]) == 0
    reference = Path(capsys.readouterr().out.strip().splitlines()[-1])
    kept = sorted(p.name for p in ckpt.list_checkpoints(reference))
    assert kept and all((reference / "checkpoints" / k / "keep_best.json").is_file() for k in kept)

    out = tmp_path / "killed"
    proc = start("lora", "--output-dir", out, *args)
    first = wait_for(proc, out / "lora" / "*" / "checkpoints" / f"checkpoint-{EVERY}" / ckpt.CHECKPOINT_INFO)
    proc.kill()  # SIGKILL: no word in status.json
    proc.communicate(timeout=60)
    run = first.parents[2]
    assert not (run / "metrics.json").exists(), "the run ended before the kill: raise STEPS"
    assert read_json(run / "status.json")["status"] == "running"
    newest = ckpt.latest_checkpoint(run)
    killed_at = ckpt.checkpoint_step(newest)
    assert killed_at < STEPS
    at_kill = load_file(newest / "model.safetensors")

    if view:
        assert read_json(reference / "metrics.json")["details"]["training_source"] == "pixels"
    code = main(["lora", "--output-dir", str(out), *args, "lora.variant=dora", "--resume", str(run)])
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]  # not the loading bars
    assert code == 2 and len(err) == 1 and err[0].startswith("error: --resume")
    assert "was trained with lora.variant 'lora', not 'dora': resume with lora.variant=lora" in err[0]
    assert read_json(run / "status.json")["status"] == "running"  # refused before anything was written

    assert main(["lora", "--output-dir", str(out), *args, "--resume"]) == 0  # the latest unfinished run
    printed = capsys.readouterr().out
    assert f"resuming {run} from {newest.name}" in printed and printed.strip().splitlines()[-1] == str(run)
    status = read_json(run / "status.json")
    assert status["status"] == "completed" and "SIGKILL" in status["note"]
    resumed, expected = read_json(run / "metrics.json"), read_json(reference / "metrics.json")
    assert resumed["details"]["resumed_from"] == newest.name and expected["details"]["resumed_from"] is None
    for key in ("best_step", "global_step", "best_validation_accuracy"):
        assert resumed["details"][key] == expected["details"][key]
    for split in ("validation", "test"):
        assert resumed["methods"]["lora"][split]["accuracy"] == expected["methods"]["lora"][split]["accuracy"]
    (ours, a), (theirs, b) = checksum(run), checksum(reference)
    assert ours == theirs and a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)  # the adapter saved (the best state), bit for bit
    last = [load_file(r / "checkpoints" / f"checkpoint-{STEPS}" / "model.safetensors") for r in (run, reference)]
    assert last[0].keys() == last[1].keys() and all(torch.equal(last[0][k], last[1][k]) for k in last[0])
    assert at_kill.keys() == last[0].keys() and any(not torch.equal(at_kill[k], last[0][k]) for k in at_kill)
    assert expected["details"]["best_step"] > killed_at  # the best state was trained after it


@pytest.mark.slow
def test_a_resumed_run_keeps_counting_early_stoppings_patience(clip_folder, tree, tmp_path, capsys):
    """No evaluation counts as better (threshold 1.0), so with patience 3 the run stops at its fourth evaluation
    (step 20). Killed after its second checkpoint (patience count 1), the resumed run stops at step 20 as well:
    a count started again would stop it at step 25 or later."""
    args = lora_args(clip_folder, tree) + ["training.early_stopping_patience=3",
                                           "training.early_stopping_threshold=1.0"]
    assert main(["lora", "--output-dir", str(tmp_path / "reference"), *args]) == 0
    reference = read_json(Path(capsys.readouterr().out.strip().splitlines()[-1]) / "metrics.json")
    assert reference["details"]["early_stopping"]["stopped_at_step"] == 4 * EVERY

    out = tmp_path / "killed"
    proc = start("lora", "--output-dir", out, *args)
    second = wait_for(proc, out / "lora" / "*" / "checkpoints" / f"checkpoint-{2 * EVERY}" / ckpt.CHECKPOINT_INFO)
    proc.kill()
    proc.communicate(timeout=60)
    run = second.parents[2]
    killed_at = ckpt.checkpoint_step(ckpt.latest_checkpoint(run))
    assert 2 * EVERY <= killed_at < 4 * EVERY, "the run got too far before the kill"
    assert main(["lora", "--output-dir", str(out), *args, "--resume", str(run)]) == 0
    resumed = read_json(run / "metrics.json")
    assert resumed["details"]["resumed_from"] == f"checkpoint-{killed_at}"
    assert resumed["details"]["early_stopping"] == reference["details"]["early_stopping"]
    assert resumed["details"]["global_step"] == reference["details"]["global_step"] == 4 * EVERY


def write_checkpoint(folder: Path, info: dict) -> Path:
    checkpoint = folder / ckpt.CHECKPOINTS / "checkpoint-3"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": 3}))
    (checkpoint / ckpt.CHECKPOINT_INFO).write_text(json.dumps(info))
    return checkpoint


@pytest.mark.parametrize("saved, wanted, message", [
    (dict(variant="lora", r=8), dict(variant="dora", r=8), "lora.variant 'lora', not 'dora'"),
    (dict(variant="lora", r=8), dict(variant="lora", r=4), "lora.r 8, not 4: resume with lora.r=8"),
    (dict(variant="ia3", r=8), dict(variant="ia3", r=4, target_modules=["k_proj"]), "lora.target_modules"),
    (dict(variant="lora", r=8), dict(variant="ln_tuning", r=8), "lora.variant 'lora', not 'ln_tuning'"),
])
def test_a_checkpoint_of_another_adapter_is_refused_in_one_line(tmp_path, saved, wanted, message):
    base = {"model": "m", "architecture": "clip", "method": "lora", "label_names": ["a", "b"]}
    checkpoint = write_checkpoint(tmp_path, {**base, "adapter": ckpt.adapter_info(AdapterSettings(**saved))})
    with pytest.raises(TransferlabError, match="^--resume: checkpoint .*") as caught:
        ckpt.check_compatible(checkpoint, {**base, "adapter": ckpt.adapter_info(AdapterSettings(**wanted))})
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_the_same_adapter_passes_and_a_rank_is_no_part_of_ia3_or_ln_tuning(tmp_path):
    base = {"model": "m", "architecture": "clip", "method": "lora", "label_names": ["a"]}
    ia3 = ckpt.adapter_info(AdapterSettings(variant="ia3", r=8))
    assert "r" not in ia3 and "r" not in ckpt.adapter_info(AdapterSettings(variant="ln_tuning"))
    checkpoint = write_checkpoint(tmp_path, {**base, "adapter": ia3})
    ckpt.check_compatible(checkpoint, {**base, "adapter": ckpt.adapter_info(AdapterSettings(variant="ia3", r=2))})
    older = write_checkpoint(tmp_path / "older", base)  # written before adapters were recorded: the method decides
    ckpt.check_compatible(older, {**base, "adapter": ia3})
