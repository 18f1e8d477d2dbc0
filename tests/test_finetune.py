"""Experiment 2 end to end on a tiny DistilBERT / BERT and real Rotten Tomatoes slices."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import finetune_overrides

from transferlab.config import load_config
from transferlab.experiments.finetune import FinetuneConfig, run_finetune
from transferlab.evaluation.predictions import read_predictions
from transferlab.tracking.files import read_json


def events(run_dir: Path) -> list[tuple[str, int, float]]:
    """(tag, step, value) of every scalar in the run's TensorBoard event files."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    out = []
    for file in sorted((run_dir / "tensorboard").glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(file)).Load():
            for value in event.summary.value:
                if value.HasField("tensor") and value.metadata.plugin_data.plugin_name == "scalars":
                    out.append((value.tag, event.step, float(np.frombuffer(value.tensor.tensor_content, np.float32)[0])
                                if value.tensor.tensor_content else value.tensor.float_val[0]))
    return out


@pytest.mark.slow  # a real fine-tune (the module's run)
def test_training_lowers_the_loss_and_writes_experiment_1_outputs(finetuned_run):
    metrics = read_json(finetuned_run / "metrics.json")
    losses = [h["loss"] for h in metrics["details"]["training"]["history"] if "loss" in h]
    assert len(losses) >= 15
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.1, losses
    for split in ("validation", "test"):
        assert {"accuracy", "precision", "recall", "f1", "per_class", "n_examples"} <= set(metrics["methods"]["finetune"][split])
        assert metrics["methods"]["finetune"][split]["n_examples"] == 128
        assert set(metrics["methods"]["finetune"][split]["per_class"]) == {"neg", "pos"}
    assert metrics["details"]["training"]["global_step"] == 40
    # the best checkpoint by validation accuracy is the model that was scored
    assert metrics["methods"]["finetune"]["validation"]["accuracy"] == pytest.approx(metrics["details"]["training"]["best_validation_accuracy"])
    assert metrics["parameters"]["trainable"] == metrics["parameters"]["total"]
    rows = read_predictions(finetuned_run, "finetune")
    assert len(rows) == 256 and {r["split"] for r in rows} == {"validation", "test"}
    for split in ("validation", "test"):
        recomputed = np.mean([r["label"] == r["prediction"] for r in rows if r["split"] == split])
        assert recomputed == pytest.approx(metrics["methods"]["finetune"][split]["accuracy"])
    for name in ("classification_report.txt", "confusion_matrix.png", "config.yaml"):
        assert (finetuned_run / name).is_file()
    assert read_json(finetuned_run / "status.json")["status"] == "completed"
    # a bounded number of checkpoints: save_total_limit (2), plus the best one if older
    assert 1 <= len(list((finetuned_run / "checkpoints").glob("checkpoint-*"))) <= 3


@pytest.mark.slow  # a real fine-tune (the module's run)
def test_tensorboard_has_curves_and_each_tag_once_per_step(finetuned_run):
    scalars = events(finetuned_run)
    tags = {tag for tag, _, _ in scalars}
    assert {"train/loss", "train/learning_rate", "eval/accuracy", "finetune/validation/accuracy",
            "finetune/test/accuracy"} <= tags
    pairs = [(tag, step) for tag, step, _ in scalars]
    assert len(pairs) == len(set(pairs)), sorted(p for p in pairs if pairs.count(p) > 1)[:5]
    assert len([p for p in pairs if p[0] == "train/loss"]) >= 15


@pytest.mark.slow  # a real fine-tune (the module's run)
def test_saved_model_loads_in_a_bare_pipeline(finetuned_run):
    from transformers import pipeline

    model_dir = finetuned_run / "model"
    classify = pipeline("text-classification", model=str(model_dir))
    out = classify(["a gripping, beautifully acted film", "a dull mess"])
    assert {o["label"] for o in out} <= {"neg", "pos"}
    config = json.loads((model_dir / "config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "pos"} and config["label2id"] == {"neg": 0, "pos": 1}
    card = (model_dir / "README.md").read_text()
    assert "pipeline_tag: text-classification" in card and "| test |" in card and "learning_rate: 0.003" in card


@pytest.mark.slow
def test_lora_on_bert_trains_head_and_adapters_and_saves_both(tmp_path, tiny_text_models):
    from transformers import pipeline

    cfg = load_config(FinetuneConfig, "finetune", "offline",
                      finetune_overrides(tiny_text_models["bert"], method="lora", **{
                          "training.epochs": 1, "training.eval_steps": 4, "data.limit": 64}))
    run_dir = run_finetune(cfg, tmp_path, progress=False)
    metrics = read_json(run_dir / "metrics.json")
    d, layers, r, labels = 32, 2, 8, 2
    lora = layers * 2 * r * (d + d)  # query and value: A (r x d) and B (d x r) per layer
    head = d * labels + labels  # BERT's classifier (the pretrained pooler stays frozen)
    assert metrics["parameters"]["trainable"] == lora + head
    adapter = json.loads((run_dir / "adapter" / "adapter_config.json").read_text())
    assert sorted(adapter["target_modules"]) == ["query", "value"]
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
    # the merged model needs no peft: a bare pipeline loads it
    out = pipeline("text-classification", model=str(run_dir / "model"))("fine")
    assert out[0]["label"] in {"neg", "pos"}


@pytest.mark.slow
def test_wandb_offline_logs_one_run(tmp_path, tiny_text_models, monkeypatch):
    for key in ("WANDB_MODE", "WANDB_PROJECT", "WANDB_DIR", "WANDB_SILENT"):
        monkeypatch.delenv(key, raising=False)  # restored afterwards: the run sets them
    cfg = load_config(FinetuneConfig, "finetune", "offline", finetune_overrides(
        tiny_text_models["distilbert"], **{"tracking.wandb": "offline", "data.limit": 32, "training.epochs": 1}))
    run_dir = run_finetune(cfg, tmp_path, progress=False)
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    metrics = read_json(run_dir / "metrics.json")
    assert metrics["n_examples"]["train"] == 32 and metrics["timings"]["train_s"] > 0


@pytest.mark.slow
def test_length_grouped_training_scores_predictions_in_data_order(tmp_path, tiny_text_models):
    """transformers 5 groups evaluation batches by length too when training does; the scored predictions must
    still line up with the labels (they did not: metrics.json showed chance level)."""
    from transformers import pipeline

    cfg = load_config(FinetuneConfig, "finetune", "offline", finetune_overrides(
        tiny_text_models["distilbert"], **{"training.group_by_length": True}))
    run_dir = run_finetune(cfg, tmp_path, progress=False)
    metrics = read_json(run_dir / "metrics.json")
    result = metrics["methods"]["finetune"]
    assert result["validation"]["accuracy"] == pytest.approx(metrics["details"]["training"]["best_validation_accuracy"])
    rows = [r for r in read_predictions(run_dir, "finetune") if r["split"] == "test"]
    bare = pipeline("text-classification", model=str(run_dir / "model"))([r["example"] for r in rows[:16]])
    assert [b["label"] for b in bare] == [r["prediction"] for r in rows[:16]]  # row i is text i's prediction
