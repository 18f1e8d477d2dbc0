"""Generic Trainer wiring: LoRA targets and exact parameter counts, arguments, precision, the best state kept
without checkpoints, NaN and OOM errors."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch
import transformers
from helpers import finetune_overrides
from safetensors.torch import load_file

from transferlab.cli import main
from transferlab.errors import TransferlabError
from transferlab.tracking.files import read_json
from transferlab.models.device import bf16_supported, resolve_precision
from transferlab.training.arguments import training_arguments
from transferlab.training.checkpoints import latest_checkpoint, list_checkpoints
from transferlab.training.config import LoraSettings, TrainingConfig
from transferlab.training.lora import apply_lora, classifier_lora, count_parameters, default_targets, lora_formula


def error_lines(stderr: str) -> list[str]:
    """The ``error:`` lines (an unfinished progress bar may precede one on its line)."""
    return re.findall(r"error: [^\r\n]*", stderr)


def tiny(kind: str, labels: int = 2, d: int = 32, layers: int = 2):
    from transformers import BertConfig, BertForSequenceClassification, DistilBertConfig, \
        DistilBertForSequenceClassification

    if kind == "distilbert":
        return DistilBertForSequenceClassification(DistilBertConfig(
            vocab_size=100, dim=d, n_layers=layers, n_heads=2, hidden_dim=2 * d, num_labels=labels))
    return BertForSequenceClassification(BertConfig(
        vocab_size=100, hidden_size=d, num_hidden_layers=layers, num_attention_heads=2, intermediate_size=2 * d,
        num_labels=labels))


@pytest.mark.parametrize("kind, labels, r, head", [
    ("distilbert", 2, 8, lambda d, k: (d * d + d) + (d * k + k)),  # pre_classifier + classifier
    ("distilbert", 5, 4, lambda d, k: (d * d + d) + (d * k + k)),
    ("bert", 3, 8, lambda d, k: d * k + k),  # classifier only; the pretrained pooler stays frozen
])
def test_lora_parameter_counts_match_the_formula(kind, labels, r, head):
    d, layers = 32, 2
    base = tiny(kind, labels, d, layers)
    base_total = count_parameters(base)["total"]
    model = classifier_lora(base, LoraSettings(r=r))
    counts = count_parameters(model)
    lora = layers * 2 * (r * d + d * r)  # q and v projections per layer: A is r x d, B is d x r
    assert counts["trainable"] == lora + head(d, labels)
    # total: the frozen base, the adapters, and peft's trained copy of the head
    assert counts["total"] == base_total + lora + head(d, labels)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert all("lora_" in n or "modules_to_save" in n for n in trainable)


def test_default_targets_per_architecture_and_overrides():
    assert default_targets("distilbert") == ["q_lin", "v_lin"]
    assert default_targets("bert") == ["query", "value"]
    assert default_targets("roberta") == ["query", "value"]
    with pytest.raises(TransferlabError, match="lora.target_modules"):
        default_targets("no-such-architecture")
    model = classifier_lora(tiny("bert"), LoraSettings(r=2, target_modules=["query", "key", "value"]))
    assert sorted(model.peft_config["default"].target_modules) == ["key", "query", "value"]
    with pytest.raises(TransferlabError, match=r"\['q_lin'\] not found in this bert model"):
        classifier_lora(tiny("bert"), LoraSettings(target_modules=["q_lin"]))


def test_apply_lora_adapts_exactly_the_named_layers():
    base = tiny("bert", layers=3)
    targets = ["bert.encoder.layer.2.attention.self.query", "bert.encoder.layer.2.attention.self.value"]
    formula = lora_formula(base, targets, 4)
    model = apply_lora(base, LoraSettings(r=4), targets)
    adapted = {n.split(".lora_")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert adapted == {"base_model.model." + t for t in targets}
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == formula == 2 * 4 * (32 + 32)


def test_training_arguments_from_config(tmp_path):
    cfg = TrainingConfig(group_by_length=True, eval_steps=5, batch_size=4, warmup=0.1, save_total_limit=3)
    args = training_arguments(cfg, tmp_path, seed=3, device="cpu", precision="fp32", report_to=[])
    assert args.train_sampling_strategy == "group_by_length"
    assert args.eval_strategy == "steps" == args.save_strategy and args.eval_steps == 5 == args.save_steps
    assert args.per_device_eval_batch_size == 8 and args.warmup_steps == 0.1 and args.seed == 3 == args.data_seed
    assert args.load_best_model_at_end and args.metric_for_best_model == "accuracy" and args.save_total_limit == 3
    args = training_arguments(TrainingConfig(), tmp_path, seed=0, device="cpu", precision="fp32", report_to=[])
    assert args.eval_strategy == "epoch" and args.train_sampling_strategy == "random"
    assert args.use_cpu and not args.dataloader_pin_memory and args.remove_unused_columns


def test_training_arguments_without_checkpoints(tmp_path):
    """What the CLIP run asks for: no checkpoints (it keeps its best state itself), its own inputs kept."""
    args = training_arguments(TrainingConfig(eval_steps=5, warmup=3), tmp_path, seed=1, device=torch.device("cpu"),
                              precision="fp32", report_to=[], checkpoints=False, remove_unused_columns=False)
    assert args.save_strategy == "no" and not args.load_best_model_at_end and args.eval_strategy == "steps"
    assert not args.remove_unused_columns and args.warmup_steps == 3 and args.use_cpu


def test_precision_resolution():
    assert resolve_precision("auto", "cpu") == "fp32"  # training's auto on a CPU
    assert resolve_precision("auto", "cpu", cpu_auto="bf16") == ("bf16" if bf16_supported("cpu") else "fp32")
    assert resolve_precision("fp32", "cpu") == "fp32"
    with pytest.raises(TransferlabError, match="training.precision=fp16 needs a CUDA GPU"):
        resolve_precision("fp16", "cpu", key="training.precision")
    if not bf16_supported("cpu"):
        with pytest.raises(TransferlabError, match="bf16 is not supported"):
            resolve_precision("bf16", "cpu")


@pytest.mark.slow
def test_config_errors_are_one_line(capsys, tmp_path):
    for override, message in [("training.batch_size=0", "training.batch_size must be at least 1"),
                              ("lora.r=0", "lora.r must be at least 1"),
                              ("method=adapters", "method' must be one of full, lora"),
                              ("training.learning_rat=0.1", "did you mean 'training.learning_rate'"),
                              ("max_length=100000", "exceeds the 512 positions")]:
        assert main(["finetune", "--output-dir", str(tmp_path), override]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1, err
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_nan_loss_stops_keeps_the_last_good_checkpoint_and_says_so(capsys, tmp_path, tiny_text_models,
                                                                  monkeypatch):
    original = transformers.Trainer.compute_loss

    def poisoned(self, model, inputs, *args, **kwargs):
        loss = original(self, model, inputs, *args, **kwargs)
        return loss * math.nan if model.training and self.state.global_step >= 10 else loss

    monkeypatch.setattr(transformers.Trainer, "compute_loss", poisoned)
    code = main(["finetune", "--output-dir", str(tmp_path), *finetune_overrides(tiny_text_models["distilbert"])])
    (err,) = error_lines(capsys.readouterr().err)
    assert code == 2
    assert "the loss became NaN at step 11" in err and "checkpoint-8" in err and "learning_rate" in err
    (run_dir,) = tmp_path.glob("finetune/*")
    assert [c.name for c in list_checkpoints(run_dir)] == ["checkpoint-8"]
    weights = load_file(latest_checkpoint(run_dir) / "model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())
    status = read_json(run_dir / "status.json")
    assert status["status"] == "failed" and "NaN" in status["error"]
    assert not (run_dir / "metrics.json").exists()


@pytest.mark.slow
def test_out_of_memory_names_the_settings_to_lower(capsys, tmp_path, tiny_text_models, monkeypatch):
    def oom(self, *args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(transformers.Trainer, "training_step", oom)
    code = main(["finetune", "--output-dir", str(tmp_path), *finetune_overrides(tiny_text_models["distilbert"])])
    (err,) = error_lines(capsys.readouterr().err)
    assert code == 2
    assert "out of memory" in err and "training.batch_size (now 16" in err and "max_length (now 64)" in err
    assert "gradient_accumulation_steps" in err and "method=lora" in err
    (run_dir,) = tmp_path.glob("finetune/*")
    assert read_json(run_dir / "status.json")["status"] == "failed"


def test_checkpoint_info_is_written_into_each_checkpoint(finetuned_run):
    for checkpoint in list_checkpoints(finetuned_run):
        info = json.loads((checkpoint / "transferlab.json").read_text())
        assert info["architecture"] == "distilbert" and info["method"] == "full"
        assert info["label_names"] == ["neg", "pos"]


def test_incomplete_checkpoints_are_skipped(tmp_path):
    for step, files in [(4, ["trainer_state.json", "transferlab.json"]), (8, ["trainer_state.json"]),
                        (12, []), (16, ["transferlab.json"])]:
        folder = tmp_path / "checkpoints" / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        for name in files:
            (folder / name).write_text("{}")
    (tmp_path / "checkpoints" / "checkpoint-x").mkdir()
    assert [c.name for c in list_checkpoints(tmp_path)] == ["checkpoint-4"]
    assert latest_checkpoint(tmp_path).name == "checkpoint-4" and latest_checkpoint(tmp_path / "none") is None


def test_keep_best_holds_the_best_evaluation_and_restores_it():
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from transferlab.training.callbacks import KeepBest

    model = torch.nn.Linear(2, 1)
    keep, state = KeepBest("eval_accuracy"), TrainerState()
    for step, value, weight in [(5, 0.5, 1.0), (10, 0.7, 2.0), (15, 0.7, 3.0), (20, 0.6, 4.0)]:
        state.global_step = step
        with torch.no_grad():
            model.weight.fill_(weight)
        keep.on_evaluate(TrainingArguments(output_dir="unused", report_to=[]), state, TrainerControl(),
                         metrics={"eval_accuracy": value}, model=model)
    assert (keep.best.step, keep.best.value, keep.last_step) == (10, 0.7, 20)  # a tie keeps the earlier step
    keep.restore(model)
    assert torch.equal(model.weight, torch.full((1, 2), 2.0))


class Toy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 2)

    def forward(self, x=None, labels=None):
        logits = self.linear(torch.nn.functional.dropout(x, 0.5, self.training))
        return {"loss": torch.nn.functional.cross_entropy(logits, labels), "logits": logits}


@pytest.mark.slow
def test_evaluating_trainer_evaluates_with_a_function_and_leaves_the_random_stream_alone(tmp_path):
    from transferlab.training.callbacks import KeepBest
    from transferlab.training.trainer import EvaluatingTrainer

    data = [{"x": torch.randn(2), "labels": torch.tensor(i % 2)} for i in range(8)]
    keep, seen = KeepBest("eval_accuracy"), []
    args = training_arguments(TrainingConfig(eval_steps=2, max_steps=4, batch_size=4), tmp_path, seed=0,
                              device="cpu", precision="fp32", report_to=[], progress=False, checkpoints=False)

    def evaluator(model):
        seen.append(model.training)
        return {"accuracy": 0.25 * len(seen)}

    trainer = EvaluatingTrainer(model=Toy(), args=args, train_dataset=data, eval_dataset=data, callbacks=[keep],
                                evaluator=evaluator)
    before = torch.get_rng_state()
    assert trainer.evaluate()["eval_accuracy"] == 0.25
    assert torch.equal(before, torch.get_rng_state()) and trainer.model.training  # back to training mode
    trainer.train()
    assert seen == [False, False, False] and keep.best.step == 4 and keep.last_step == 4
    assert not list(tmp_path.iterdir())  # no checkpoint, nothing written
