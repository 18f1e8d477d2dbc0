"""``transferlab lora`` under ``torchrun`` with 2 CPU processes (gloo): one data-parallel job, one run directory."""

from __future__ import annotations

import pytest
from test_finetune_distributed import torchrun

from transferlab.tracking.files import read_json


@pytest.mark.slow
# pixels through both towers; cached image embeddings; cached trunk outputs (adapters in the last layers)
@pytest.mark.parametrize("towers,layers", [("both", "null"), ("text", "null"), ("both", "[-1]")])
def test_two_process_lora_is_one_job_with_one_run_directory(towers, layers, tmp_path, clip_folder, tree):
    overrides = [f"model.name={clip_folder}", f"data.path={tree}", "data.val_per_class=2", "model.batch_size=8",
                 f"lora.towers={towers}", "lora.target_modules=[q_proj,v_proj]", "lora.train_projection=false",
                 f"lora.layers={layers}", "training.epochs=2", "training.batch_size=3", "training.eval_steps=1",
                 "training.learning_rate=0.01", "probe.c_grid=[1.0]", "training.device=cpu",
                 "model.templates=['a photo of a {name}.']"]
    proc, reports = torchrun("lora", tmp_path, overrides, timeout=300)  # asserts both processes agree
    (run_dir,) = tmp_path.glob("lora/*")  # one run directory
    assert proc.stdout.count("run directory:") == 1 and proc.stdout.count("LoRA parameters:") == 2
    assert proc.stdout.strip().splitlines()[-1] == str(run_dir)
    metrics = read_json(run_dir / "metrics.json")
    assert metrics["model"]["processes"] == 2 and list(metrics["methods"]) == ["zero_shot", "linear_probe", "lora"]
    # 12 training images / (3 per process x 2 processes) = 2 steps per epoch: the data was split between them
    # (the trunk source also trains on the preset's flipped copies: twice the rows, twice the steps)
    assert metrics["details"]["global_step"] == (4 if layers == "null" else 8)
    assert metrics["details"]["image_features_cached"] == (towers == "text" or layers != "null")
    assert metrics["details"]["training_source"] == {"text": "embeddings", "[-1]": "trunk"}.get(
        towers if layers == "null" else layers, "pixels")
    lora = metrics["methods"]["lora"]
    assert f"validation accuracy {lora['validation']['accuracy']:.6f}" in reports["0"]
    assert f"test accuracy {lora['test']['accuracy']:.6f}" in reports["0"]
    assert f"best step {metrics['details']['best_step']}," in reports["0"]
    assert lora["validation"]["n_examples"] == lora["test"]["n_examples"] == 6
    assert (run_dir / "adapter" / "adapter_config.json").is_file() and not (run_dir / "trainer").exists()
    events = list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert events and len({e.name.split(".")[-2] for e in events}) == 1  # written by one process (its pid)
    assert read_json(run_dir / "status.json")["status"] == "completed"
