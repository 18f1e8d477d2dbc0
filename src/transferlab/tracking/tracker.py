"""One tracker per run: TensorBoard event files in ``<run>/tensorboard`` and, optionally, Weights & Biases.

Each value is written once, by one writer. Experiments that train with the Hugging Face ``Trainer``
let the Trainer write the training curves (``report_to`` from :func:`trainer_report_to`) and use the
tracker only for the final metrics, so nothing is logged twice.

What goes where: scalar series hold measurements only (a count such as ``n_examples`` or ``n_bins`` is no
series: :func:`is_count`); the HParams tab holds the settings that define the run (:func:`hparams`: no
``None``, no environment, resolved device, tracking options, names or file locations).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from transferlab.config import TrackingConfig
from transferlab.errors import TransferlabError


def is_count(key: str) -> bool:
    """A leaf that counts something (``n_examples``, ``n_bins``, ``n_classes``): a size, not a measurement."""
    return str(key).startswith("n_")


def flatten(metrics: dict, prefix: str = "") -> dict[str, float]:
    """``{"test": {"accuracy": .8}}`` -> ``{"test/accuracy": .8}``; non-numeric leaves and counts are skipped."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, dict):
            out.update(flatten(value, name))
        elif isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
                and not is_count(key):
            out[name] = float(value)
    return out


# Config sections and keys that do not define what a run computes: where it ran and how it was tracked,
# what it was called, where its files and caches live.
NOT_HPARAMS = frozenset({"environment", "resolved", "tracking", "paths", "run_name", "source", "cache_dir",
                         "output_dir"})


def hparams(config: dict, prefix: str = "") -> dict[str, float | int | str | bool]:
    """The settings that define a run, as TensorBoard hparams: dotted keys, lists as text; ``None`` values and
    the sections and keys in ``NOT_HPARAMS`` left out."""
    out: dict = {}
    for key, value in config.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if key in NOT_HPARAMS or value is None:
            continue
        if isinstance(value, dict):
            out.update(hparams(value, name))
        elif isinstance(value, (bool, int, float, str)):
            out[name] = value
        else:
            out[name] = str(value)
    return out


def trainer_report_to(tracking: TrackingConfig) -> list[str]:
    """The Trainer's ``report_to`` list matching a tracking config."""
    targets = ["tensorboard"] if tracking.tensorboard else []
    if tracking.wandb != "off":
        targets.append("wandb")
    return targets


def configure_wandb_env(tracking: TrackingConfig, run_dir: Path) -> None:
    """Environment for wandb (also read by the Trainer's callback): mode, project, local dir."""
    if tracking.wandb == "off":
        return
    os.environ["WANDB_MODE"] = tracking.wandb
    os.environ.setdefault("WANDB_PROJECT", tracking.wandb_project)
    os.environ["WANDB_DIR"] = str(run_dir)
    os.environ.setdefault("WANDB_SILENT", "true")


class Tracker:
    def __init__(self, run_dir: str | Path, tracking: TrackingConfig, config: dict | None = None,
                 name: str | None = None):
        self.run_dir = Path(run_dir)
        self.writer = None
        self.wandb_run = None
        if tracking.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"))
        if tracking.wandb != "off":
            configure_wandb_env(tracking, self.run_dir)
            try:
                import wandb
            except ImportError:
                raise TransferlabError("tracking.wandb is on but wandb is not installed: "
                                       "pip install wandb, or set tracking.wandb=off") from None
            # Reuse the run the Trainer's callback opened, so one run holds everything.
            self.wandb_run = wandb.run or wandb.init(project=tracking.wandb_project, mode=tracking.wandb,
                                                     dir=str(self.run_dir), name=name or self.run_dir.name,
                                                     config=config or {})

    def log_metrics(self, metrics: dict, step: int = 0, prefix: str = "") -> None:
        flat = flatten(metrics, prefix)
        if self.writer is not None:
            for tag, value in flat.items():
                self.writer.add_scalar(tag, value, step)
        if self.wandb_run is not None:
            self.wandb_run.log(flat, step=step) if self.wandb_run.step <= step else self.wandb_run.summary.update(flat)

    def log_hparams(self, config: dict, metrics: dict[str, float]) -> None:
        """The run's settings and final metrics for TensorBoard's HParams tab (and the W&B summary)."""
        if self.writer is not None:
            self.writer.add_hparams(hparams(config), {f"hparam/{k}": v for k, v in metrics.items()}, run_name=".")
        if self.wandb_run is not None:
            self.wandb_run.summary.update(metrics)

    def log_text(self, tag: str, text: str, step: int = 0) -> None:
        if self.writer is not None:
            # Indent so TensorBoard's markdown renders it verbatim.
            self.writer.add_text(tag, "\n".join("    " + line for line in text.splitlines()), step)
        if self.wandb_run is not None:
            self.wandb_run.summary[tag] = text

    def log_image(self, tag: str, png_path: str | Path, step: int = 0) -> None:
        from PIL import Image

        image = np.asarray(Image.open(png_path).convert("RGB"))
        if self.writer is not None:
            self.writer.add_image(tag, image, step, dataformats="HWC")
        if self.wandb_run is not None:
            import wandb

            self.wandb_run.log({tag: wandb.Image(str(png_path))}, commit=False)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.wandb_run is not None:
            import wandb

            self.wandb_run.finish()
            self.wandb_run = None
            wandb.teardown()  # the next run in this process re-reads WANDB_DIR/WANDB_MODE instead of stale settings

    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
