"""Early stopping (``training.early_stopping_patience`` / ``_threshold``, transformers' EarlyStoppingCallback):
a scripted sequence of validation values stops a real Trainer at the expected step, with checkpoints (the
fine-tuning path: the best checkpoint reloaded) and without (the LoRA path: ``KeepBest``)."""

from __future__ import annotations

import pytest
import torch

from transferlab.errors import TransferlabError
from transferlab.training.arguments import training_arguments
from transferlab.training.callbacks import KeepBest, early_stopping_record, run_callbacks
from transferlab.training.config import TrainingConfig
from transferlab.training.trainer import EvaluatingTrainer, GuardedTrainer


class Toy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 2)

    def forward(self, x=None, labels=None):
        logits = self.linear(x)
        return {"loss": torch.nn.functional.cross_entropy(logits, labels), "logits": logits}


DATA = [{"x": torch.randn(2), "labels": torch.tensor(i % 2)} for i in range(8)]


def scripted(values):
    """An evaluator returning ``values`` one per evaluation."""
    it = iter(values)
    return lambda *_: {"accuracy": next(it)}


@pytest.mark.parametrize("values, patience, threshold, stop", [
    ([0.5, 0.6, 0.6, 0.7, 0.65, 0.68, 0.9, 0.9, 0.9, 0.9], 2, 0.0, 6),  # best at 4, two worse ones: stop at 6
    ([0.5, 0.6, 0.6, 0.7, 0.65, 0.8, 0.7, 0.7, 0.9, 0.9], 2, 0.0, 8),  # 0.8 at 6 resets the count
    ([0.5, 0.505, 0.509, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6], 2, 0.01, 3),  # gains under the threshold do not count
    ([0.5, 0.6, 0.7, 0.8, 0.9, 0.91, 0.92, 0.93, 0.94, 0.95], 1, 0.0, None),  # always better: runs to the end
])
@pytest.mark.slow
def test_early_stopping_without_checkpoints_stops_at_the_expected_step(tmp_path, values, patience, threshold, stop):
    cfg = TrainingConfig(eval_steps=1, max_steps=10, batch_size=4, early_stopping_patience=patience,
                         early_stopping_threshold=threshold)
    args = training_arguments(cfg, tmp_path, seed=0, device="cpu", precision="fp32", report_to=[], progress=False,
                              checkpoints=False)
    keep = KeepBest("eval_accuracy")
    trainer = EvaluatingTrainer(model=Toy(), args=args, train_dataset=DATA, eval_dataset=DATA,
                                callbacks=[keep, *run_callbacks(cfg)], evaluator=scripted(values))
    trainer.train()
    assert trainer.state.global_step == (stop or 10)
    assert early_stopping_record(trainer) == {"patience": patience, "threshold": threshold, "stopped_at_step": stop}
    best = max(values[:stop or 10])
    assert keep.best.value == best and keep.best.step == values.index(best) + 1  # the earliest best step


@pytest.mark.slow
def test_early_stopping_with_checkpoints_reloads_the_best_and_records_the_step(tmp_path):
    values = [0.5, 0.8, 0.7, 0.6, 0.9, 0.9]
    cfg = TrainingConfig(eval_steps=1, max_steps=6, batch_size=4, early_stopping_patience=2, save_total_limit=1)
    args = training_arguments(cfg, tmp_path, seed=0, device="cpu", precision="fp32", report_to=[], progress=False)
    trainer = GuardedTrainer(model=Toy(), args=args, train_dataset=DATA, eval_dataset=DATA,
                             compute_metrics=scripted(values), callbacks=run_callbacks(cfg))
    trainer.train()
    assert trainer.state.global_step == 4  # 0.8 at step 2, then 0.7 and 0.6
    assert trainer.state.best_metric == 0.8 and trainer.state.best_global_step == 2
    assert trainer.state.best_model_checkpoint.endswith("checkpoint-2")  # reloaded at the end
    assert early_stopping_record(trainer)["stopped_at_step"] == 4


def test_no_early_stopping_by_default_and_bad_settings_are_one_line_errors():
    assert run_callbacks(TrainingConfig()) == []
    with pytest.raises(TransferlabError, match="early_stopping_patience must be at least 1"):
        TrainingConfig(early_stopping_patience=0).validate()
    with pytest.raises(TransferlabError, match="early_stopping_threshold must be at least 0"):
        TrainingConfig(early_stopping_threshold=-0.1).validate()


@pytest.mark.slow
def test_a_finetune_run_records_where_early_stopping_stopped(tmp_path, tiny_distilbert):
    import json

    from helpers import finetune_overrides

    from transferlab.cli import main

    assert main(["finetune", "--output-dir", str(tmp_path),
                 *finetune_overrides(tiny_distilbert, run_name="es", **{"training.early_stopping_patience": 1})]) == 0
    training = json.loads((tmp_path / "finetune" / "es" / "metrics.json").read_text())["details"]["training"]
    evals = [h["eval_accuracy"] for h in training["history"] if "eval_accuracy" in h]
    stopped = training["early_stopping"]["stopped_at_step"]
    # patience 1: the first evaluation not better than the best so far stops the run, there and only there
    first_worse = next((i for i in range(1, len(evals)) if evals[i] <= max(evals[:i])), None)
    assert stopped == (None if first_worse is None else 8 * (first_worse + 1)) == (
        None if stopped is None else training["global_step"])
    assert training["best_validation_accuracy"] == max(evals)


def test_a_checkpoint_s_early_stopping_state_rebuilds_the_callback():
    """The Trainer rebuilds a callback from ``state()`` with ``cls(**args)`` when it restores callback states:
    the base class's argument names would not fit this class's."""
    from transferlab.training.callbacks import EarlyStopping

    callback = EarlyStopping(patience=3, threshold=0.01)
    callback.early_stopping_patience_counter, callback.stopped_step = 2, 40
    rebuilt = EarlyStopping.from_state(callback.state())
    assert (rebuilt.early_stopping_patience, rebuilt.early_stopping_threshold) == (3, 0.01)
    assert (rebuilt.early_stopping_patience_counter, rebuilt.stopped_step) == (2, 40)
