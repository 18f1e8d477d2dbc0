"""Trainer callbacks: TensorBoard curves written once per (tag, step), and checkpoint provenance."""

from __future__ import annotations

import json
from pathlib import Path

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
