"""Trainer callbacks: TensorBoard curves written once per (tag, step), checkpoint provenance, and the best
state of a run that keeps no checkpoints (``KeepBest``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import TrainerCallback
from transformers.integrations import TensorBoardCallback

from transferlab.training.checkpoints import CHECKPOINT_INFO


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
