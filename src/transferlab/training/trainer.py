"""A ``Trainer`` that stops on a non-finite loss (``GuardedTrainer``), one that evaluates with a function of
the model instead of a prediction loop (``EvaluatingTrainer``), and ``train`` turning NaN / out-of-memory
into one-line errors."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from transformers import Trainer

from transferlab.errors import TransferlabError
from transferlab.training.checkpoints import latest_checkpoint


class NonFiniteLoss(RuntimeError):
    def __init__(self, step: int, epoch: float | None, value: float):
        super().__init__(f"loss {value} at step {step}")
        self.step, self.epoch, self.value = step, epoch, value


class GuardedTrainer(Trainer):
    """Checks every training loss before the backward pass: a NaN/inf loss stops the run before it can
    corrupt the weights, so the last checkpoint on disk is the last good state. Evaluation and prediction
    keep the data's order even when training batches are grouped by length."""

    def _get_eval_sampler(self, eval_dataset):
        # transformers 5 also groups evaluation batches by length when training does, so ``predict`` would
        # return rows in another order than the labels it is compared with: keep the data's order.
        if eval_dataset is None or not hasattr(eval_dataset, "__len__"):
            return None
        return torch.utils.data.SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        result = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                      num_items_in_batch=num_items_in_batch)
        loss = result[0] if return_outputs else result
        if model.training and not torch.isfinite(loss.detach()).all():
            raise NonFiniteLoss(self.state.global_step + 1, self.state.epoch, float(loss.detach().float().mean()))
        return result


class EvaluatingTrainer(GuardedTrainer):
    """Evaluation is ``evaluator(model) -> {name: value}`` (e.g. validation accuracy against class embeddings
    recomputed with the current weights), logged as ``eval_<name>`` and passed to the callbacks'
    ``on_evaluate`` like the Trainer's own evaluation. Every process runs it on the whole split, so all
    agree; no data loader is created (the random stream of training is left as it is)."""

    def __init__(self, *args, evaluator: Callable[[nn.Module], dict[str, float]], **kwargs):
        super().__init__(*args, **kwargs)
        self.evaluator = evaluator

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        self.model.eval()
        try:
            values = self.evaluator(self.model)
        finally:
            self.model.train()
        metrics = {f"{metric_key_prefix}_{k}": v for k, v in values.items()}
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics=metrics)
        return metrics


def train(trainer: Trainer, resume_from: str | Path | None, hints: str, run_dir: Path):
    """``trainer.train`` with a crash turned into advice: which settings to lower, where the good checkpoint is."""
    try:
        try:
            return trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        except BaseException:
            close_progress_bars(trainer)  # so the error starts on a line of its own
            raise
    except NonFiniteLoss as exc:
        good = latest_checkpoint(run_dir)
        kept = (f"the last good checkpoint is kept at {good} (resume with --resume {run_dir} after changing "
                f"settings)" if good else "no checkpoint had been saved yet")
        raise TransferlabError(f"training stopped: the loss became {_fmt(exc.value)} at step {exc.step}; {kept}. "
                               f"Lower training.learning_rate, or use training.precision=fp32") from None
    except torch.OutOfMemoryError:
        raise TransferlabError(f"out of memory on the accelerator: lower {hints}, or set "
                               f"training.gradient_checkpointing=true or method=lora; checkpoints so far are kept in "
                               f"{run_dir / 'checkpoints'}") from None
    except RuntimeError as exc:  # MPS and some CUDA paths raise a plain RuntimeError
        if "out of memory" not in str(exc).lower():
            raise
        raise TransferlabError(f"out of memory on the accelerator: lower {hints}, or set "
                               f"training.gradient_checkpointing=true or method=lora") from None


def close_progress_bars(trainer: Trainer) -> None:
    from transformers.trainer_callback import ProgressCallback

    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, ProgressCallback):
            for name in ("training_bar", "prediction_bar"):
                bar = getattr(callback, name, None)
                if bar is not None:
                    bar.close()
                    setattr(callback, name, None)


def _fmt(value: float) -> str:
    return "NaN" if math.isnan(value) else str(value)
