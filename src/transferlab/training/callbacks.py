"""Trainer callbacks: TensorBoard curves written once per (tag, step), checkpoint provenance, the best
state of a run that keeps no checkpoints (``KeepBest``), early stopping that records where it stopped, and
``run_callbacks``: what every Trainer run adds (early stopping when configured, and the callbacks a caller
installed with ``extra_callbacks``, e.g. a hyper-parameter search reporting each evaluation to its trial)."""

from __future__ import annotations

import contextlib
import contextvars
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
from torch import nn
from transformers import EarlyStoppingCallback, TrainerCallback
from transformers.integrations import TensorBoardCallback

from transferlab.errors import TransferlabError
from transferlab.training.checkpoints import CHECKPOINT_INFO
from transferlab.training.config import TrainingConfig

_EXTRA: contextvars.ContextVar[tuple[TrainerCallback, ...]] = contextvars.ContextVar("extra_callbacks", default=())


class OncePerStepTensorBoard(TensorBoardCallback):
    """The Trainer's TensorBoard writer, in a folder we choose, never writing a (tag, step) twice.

    The Trainer adds ``epoch`` to every log record, so an evaluation at a logging step would write
    ``train/epoch`` twice; a resumed run purges the steps after its checkpoint (``purge_step``)."""

    def __init__(self, log_dir: str | Path, purge_step: int | None = None):
        super().__init__()
        self.logging_dir = str(log_dir)
        self.purge_step = purge_step
        self.written: set[tuple[str, int]] = set()

    def _init_summary_writer(self, args):
        self.tb_writer = self._SummaryWriter(log_dir=self.logging_dir, purge_step=self.purge_step)
        self.purge_step = None  # purge once, at the first writer of a resumed run

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        if self.tb_writer is None:
            self._init_summary_writer(args)
        # The Trainer's args/model-config texts are left out: config.yaml in the run holds them.

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        fresh = {}
        for key, value in logs.items():
            if (key, state.global_step) not in self.written:
                self.written.add((key, state.global_step))
                fresh[key] = value
        super().on_log(args, state, control, logs=fresh, **kwargs)


def use_tensorboard_dir(trainer, log_dir: str | Path, purge_step: int | None = None) -> None:
    """Point the Trainer's TensorBoard callback (added by ``report_to``) at ``log_dir``."""
    if trainer.pop_callback(TensorBoardCallback) is not None:
        trainer.add_callback(OncePerStepTensorBoard(log_dir, purge_step))


class CheckpointInfoCallback(TrainerCallback):
    """Writes what a checkpoint was trained from into it, so ``--resume`` can refuse a mismatch."""

    def __init__(self, info: dict):
        self.info = info

    def on_train_begin(self, args, state, control, **kwargs):
        """A resumed state names its best checkpoint by path: a moved or copied run names the old place, or
        anywhere a received trainer_state.json says. Only this run's own checkpoints are used."""
        best = state.best_model_checkpoint
        if best and Path(best).resolve().parent != Path(args.output_dir).resolve():
            local = Path(args.output_dir) / Path(best).name
            if not local.is_dir():
                raise TransferlabError(f"the resumed checkpoint names its best checkpoint {best}, outside this "
                                       f"run's {args.output_dir}, and no {local.name} is here: start a new run")
            state.best_model_checkpoint = str(local)  # the run was moved: its own copy of that checkpoint

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                (folder / CHECKPOINT_INFO).write_text(json.dumps(self.info, indent=2) + "\n")


@dataclass
class Best:
    step: int
    value: float
    state: dict[str, torch.Tensor]  # the trainable parameters at that step (CPU copies)


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


class KeepBest(TrainerCallback):
    """A copy of the trainable weights at the evaluation with the best ``metric`` (strictly better, so the
    earliest step wins a tie), for runs that save no checkpoints. After training: ``best`` (a
    :class:`Best`), ``last_step`` (the last evaluated step) and ``restore(model)``."""

    def __init__(self, metric: str = "eval_accuracy"):
        self.metric = metric
        self.best: Best | None = None
        self.last_step: int | None = None

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        value = float(metrics[self.metric])
        self.last_step = state.global_step
        if self.best is None or value > self.best.value:
            self.best = Best(state.global_step, value, trainable_state(model))

    def restore(self, model: nn.Module) -> None:
        model.load_state_dict(self.best.state, strict=False)


class EarlyStopping(EarlyStoppingCallback):
    """transformers' ``EarlyStoppingCallback`` (stop after ``patience`` evaluations that do not beat the best
    by more than ``threshold``), recording ``stopped_step``: the step whose evaluation stopped the run, or
    ``None`` if it ran to the end. The Trainer tracks the best value (``metric_for_best_model``) for every run;
    the best state comes back either way: the best checkpoint reloaded (fine-tuning) or ``KeepBest``
    (runs without checkpoints), so the base class's warning about ``load_best_model_at_end`` does not apply."""

    def __init__(self, patience: int, threshold: float = 0.0):
        super().__init__(early_stopping_patience=patience, early_stopping_threshold=threshold)
        self.stopped_step: int | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        if args.metric_for_best_model is None or args.eval_strategy == "no":
            raise ValueError("early stopping needs an evaluation schedule and metric_for_best_model")

    def on_evaluate(self, args, state, control, metrics, **kwargs):
        super().on_evaluate(args, state, control, metrics, **kwargs)
        exhausted = self.early_stopping_patience_counter >= self.early_stopping_patience
        if exhausted and self.stopped_step is None and state.global_step < state.max_steps:
            self.stopped_step = state.global_step

    def record(self) -> dict:
        return {"patience": self.early_stopping_patience, "threshold": self.early_stopping_threshold,
                "stopped_at_step": self.stopped_step}

    def state(self) -> dict:
        """What a checkpoint keeps of it, in the form ``from_state`` rebuilds (this class's own arguments)."""
        return {"args": {"patience": self.early_stopping_patience, "threshold": self.early_stopping_threshold},
                "attributes": {"early_stopping_patience_counter": self.early_stopping_patience_counter,
                               "stopped_step": self.stopped_step}}


@contextlib.contextmanager
def extra_callbacks(*callbacks: TrainerCallback) -> Iterator[None]:
    """Inside: every Trainer run built here also gets ``callbacks`` (through ``run_callbacks``)."""
    token = _EXTRA.set(_EXTRA.get() + callbacks)
    try:
        yield
    finally:
        _EXTRA.reset(token)


def run_callbacks(training: TrainingConfig) -> list[TrainerCallback]:
    """Early stopping when ``training.early_stopping_patience`` is set, then the callbacks installed by
    ``extra_callbacks`` (after the run's own, so they see each evaluation last)."""
    stopping = [EarlyStopping(training.early_stopping_patience, training.early_stopping_threshold)] \
        if training.early_stopping_patience else []
    return stopping + list(_EXTRA.get())


def early_stopping_record(trainer) -> dict | None:
    """``{patience, threshold, stopped_at_step}`` of the run's early stopping, or ``None`` when it had none."""
    found = [c for c in trainer.callback_handler.callbacks if isinstance(c, EarlyStopping)]
    return found[0].record() if found else None
