"""Read finished run directories back: config, metrics, status, TensorBoard scalars. No recomputation."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from transferlab.runs import read_run

# The reference lab's reported numbers, per experiment: (what it ran, {metric: value}).
REFERENCE = {
    "features": ("DistilBERT [CLS] + SVC", {"validation/accuracy": 0.82, "test/accuracy": 0.79}),
    "finetune": ("DistilBERT fine-tuned", {"validation/accuracy": 0.852, "test/accuracy": 0.842}),
    "zeroshot": ("CLIP ViT-B/16 zero-shot", {"test/accuracy": 0.6425, "test/f1": 0.6417}),
    "zero_shot": ("CLIP ViT-B/16 zero-shot", {"test/accuracy": 0.6425, "test/f1": 0.6417}),
    "lora": ("CLIP ViT-B/16 + LoRA r=8", {"test/accuracy": 0.7667, "test/f1": 0.7669}),
}


@dataclass
class RunRecord:
    path: Path
    experiment: str
    config: dict
    metrics: dict
    status: dict
    scalars: dict[str, list[tuple[int, float]]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def model(self) -> str:
        """The model actually used, so a stand-in is never mistaken for the paper's model."""
        model = self.metrics.get("model") or self.metrics.get("info", {}).get("model")
        if isinstance(model, dict):
            keys = ("base", "encoder", "name", "description", "architecture", "method", "pooling", "classifier")
            return ", ".join(f"{k}={model[k]}" for k in keys if k in model)
        return str(model) if model else "?"

    @property
    def trainable_parameters(self) -> int | None:
        for source in (self.metrics.get("model"), self.metrics.get("info"), self.metrics):
            if not isinstance(source, dict):
                continue
            params = source.get("parameters")
            if isinstance(params, dict) and "trainable" in params:
                return int(params["trainable"])
            if "trainable_parameters" in source:
                return int(source["trainable_parameters"])
        return None

    def evaluations(self) -> dict[str, dict]:
        """``{label: {"validation": {...}, "test": {...}}}``: the run's own result, plus the baselines that
        runs comparing methods hold (the LoRA run keeps zero-shot and linear-probe results beside its own)."""
        out = {self.experiment: self.metrics} if "test" in self.metrics else {}
        out.update({key: value for key, value in self.metrics.items()
                    if isinstance(value, dict) and isinstance(value.get("test"), dict)
                    and "accuracy" in value["test"]})
        return out


def read_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, list[tuple[int, float]]] = {}
    for file in sorted(folder.rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(file), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return {tag: sorted(points) for tag, points in out.items()}


def load_record(path: str | Path) -> RunRecord:
    path = Path(path)
    config, metrics, status = read_run(path)
    scalars = read_scalars(path / "tensorboard") if (path / "tensorboard").is_dir() else {}
    return RunRecord(path, path.parent.name, config, metrics, status, scalars)
