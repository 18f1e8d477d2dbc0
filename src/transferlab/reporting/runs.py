"""Read finished run directories back: config, metrics, status, TensorBoard scalars. No recomputation.

A run folder may be one someone sent: every file the report reads from it (config.yaml, metrics.json,
status.json, predictions/, tensorboard/) must, links resolved, lie inside it (:func:`check_contained`); a link
to a file elsewhere is a one-line error, never read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from transferlab.errors import TransferlabError
from transferlab.evaluation.predictions import read_predictions
from transferlab.evaluation.schema import RunMetrics
from transferlab.tracking.files import check_links_inside
from transferlab.tracking.liveness import describe_status
from transferlab.tracking.rundir import read_run

# The reference lab's reported numbers, per evaluated method: (what it ran, {metric: value}).
REFERENCE = {
    "features": ("DistilBERT [CLS] + SVC", {"validation/accuracy": 0.82, "test/accuracy": 0.79}),
    "finetune": ("DistilBERT fine-tuned", {"validation/accuracy": 0.852, "test/accuracy": 0.842}),
    "zero_shot": ("CLIP ViT-B/16 zero-shot, 200 classes", {"test/accuracy": 0.6425, "test/f1": 0.6417}),
    "lora": ("CLIP ViT-B/16 + LoRA r=8, 200 classes", {"test/accuracy": 0.7667, "test/f1": 0.7669}),
}
# The class count of the lab's task per method (Rotten Tomatoes: 2, Tiny ImageNet: 200): a figure draws the
# lab's figure only beside ours on as many classes.
LAB_CLASSES = {"features": 2, "finetune": 2, "zero_shot": 200, "lora": 200}
LAB_TEXT_SETS = {"rotten_tomatoes", "cornell-movie-review-data/rotten_tomatoes"}  # the lab's text data, by name


def on_lab_data(dataset: str, n_classes: int | None, image: bool) -> bool:
    """Whether a figure is on the reference lab's own task: Rotten Tomatoes' two classes for the text
    experiments, Tiny ImageNet's 200 for the image ones. On any other data nothing is said about the lab."""
    if image:
        return n_classes == 200 and "tiny-imagenet" in dataset.lower().replace("_", "-")
    return n_classes in (None, 2) and dataset in LAB_TEXT_SETS


def on_lab_task(record: "RunRecord") -> bool:
    """:func:`on_lab_data` for a run, from its recorded data settings and class count."""
    data = record.config.get("data") or {}
    n_classes = record.metrics.n_classes if record.metrics else None
    if "image_size" in data or "val_per_class" in data or record.experiment in ("zeroshot", "lora"):
        where = str(data.get("path") or data.get("hub_id") or "")
        return on_lab_data(Path(where).name if data.get("path") else where, n_classes, image=True)
    source = data.get("source")
    name = "rotten_tomatoes" if source == "rotten_tomatoes" else str(data.get("name")) if source == "hub" else ""
    return on_lab_data(name, n_classes, image=False)


@dataclass
class RunRecord:
    path: Path
    config: dict
    metrics: RunMetrics | None  # None while (or because) metrics.json was never written
    status: dict
    scalars: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    cache: dict = field(default_factory=dict, repr=False, compare=False)  # predictions and figures, read once

    def rows(self, method: str, split: str = "test") -> list[dict]:
        """This run's ``predictions/<method>.jsonl`` rows of ``split`` (``[]`` without a file)."""
        if ("rows", method) not in self.cache:
            self.cache[("rows", method)] = read_predictions(self.path, method)
        return [r for r in self.cache[("rows", method)] if r.get("split") == split]

    @property
    def seed(self):
        return self.config.get("seed")

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def experiment(self) -> str:
        return self.metrics.experiment if self.metrics else self.path.parent.name

    @property
    def state(self) -> str:
        """The status to show: a run that says completed but has no metrics is not passed off as a result."""
        status = self.status.get("status", "unknown")
        status = describe_status(self.status) if status == "running" else status  # alive, or gone without a word
        return f"{status} (no metrics.json)" if self.metrics is None and status == "completed" else status

    @property
    def model(self) -> str:
        """The model actually used, so a stand-in is never mistaken for the paper's model."""
        if self.metrics is None:
            return "?"
        model = self.metrics.model
        keys = ("name", "description", "architecture", "method", "pooling", "classifier")
        return ", ".join(f"{k}={model[k]}" for k in keys if k in model)

    @property
    def trainable_parameters(self) -> int | None:
        value = self.metrics.parameters.get("trainable") if self.metrics else None
        return int(value) if value is not None else None

    def evaluations(self) -> dict[str, dict]:
        """``{method: {"validation": {...}, "test": {...}}}``, the primary method first."""
        if self.metrics is None:
            return {}
        methods = self.metrics.methods
        return {self.metrics.primary: methods[self.metrics.primary], **methods}


def read_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, list[tuple[int, float]]] = {}
    for file in sorted(folder.rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(file), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return {tag: sorted(points) for tag, points in out.items()}


READ = ("config.yaml", "metrics.json", "status.json", "predictions", "tensorboard")


def check_contained(path: Path) -> None:
    """Refuse (one line) a run folder whose files the report reads resolve outside it (a planted link)."""
    check_links_inside(path, READ, "run folder")


def load_record(path: str | Path) -> RunRecord:
    """A run directory read back; a malformed metrics.json is a one-line error naming it, a file linked from
    outside the folder another (:func:`check_contained`)."""
    path = Path(path)
    if path.is_dir():
        check_contained(path)
    config, metrics, status = read_run(path)
    record = RunMetrics.from_dict(metrics, str(path / "metrics.json")) if metrics else None
    scalars = read_scalars(path / "tensorboard") if (path / "tensorboard").is_dir() else {}
    return RunRecord(path, config, record, status, scalars)
