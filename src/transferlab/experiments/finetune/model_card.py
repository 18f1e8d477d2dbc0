"""The saved model's ``README.md``: a Hugging Face model card with the data, settings and metrics.

The front matter is ``huggingface_hub``'s ``ModelCardData``: ``base_model`` (the Hub id the model was
fine-tuned from; a packaged model's origin), and a ``model-index`` whose results name the task, the data
set by its Hub id (``dataset.type``), the split and each metric's value, with its bootstrap interval in
the metric's name and ``args``. ``eval_results`` builds those entries for any experiment's card.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import yaml

# What the data sources are on the Hub: the vendored Rotten Tomatoes is split exactly as the Hub's.
DATASET_IDS = {"rotten_tomatoes": ("cornell-movie-review-data/rotten_tomatoes", "Rotten Tomatoes")}


def dataset_id(data: dict) -> tuple[str, str]:
    """``(Hub id or the files' description, readable name)`` of the fine-tuning data."""
    if data.get("source") == "hub":
        return data["name"], data["name"]
    if data.get("source") in DATASET_IDS:
        return DATASET_IDS[data["source"]]
    files = ", ".join(Path(f).name for f in (data.get("train_file"), data.get("test_file")) if f)
    return "local-files", f"local files ({files})"


def eval_results(results: dict, task: str, dataset: tuple[str, str], split_names: dict[str, str],
                 metric_names: Sequence[str] = ("accuracy", "f1"), dataset_args: dict | None = None) -> list:
    """``EvalResult`` entries of a method's ``{split: SPLIT}``: per split and metric its value, and the
    bootstrap interval (``SPLIT["intervals"]``) in the metric's name and ``args``. ``split_names``: each
    evaluated split's name in the data set."""
    from huggingface_hub import EvalResult

    out = []
    for split, name in split_names.items():
        figures = results.get(split)
        for metric in (m for m in metric_names if figures and m in figures):
            value, interval = round(float(figures[metric]), 4), figures.get("intervals", {}).get(metric)
            confidence = figures.get("intervals", {}).get("confidence", 0.95)
            label = metric.replace("_", " ")
            args = None
            if interval:
                interval = [round(float(v), 4) for v in interval]
                label += f" ({confidence:.0%} interval {interval[0]:.4f}-{interval[1]:.4f})"
                args = {"interval": interval, "confidence": confidence}
            out.append(EvalResult(task_type=task, dataset_type=dataset[0], dataset_name=dataset[1], dataset_split=name,
                                  dataset_args=dataset_args, metric_type=metric, metric_value=value,
                                  metric_name=label, metric_args=args))
    return out


def card_header(name: str, base_model: str, method: str, data: dict, metrics: dict) -> str:
    from huggingface_hub import ModelCardData

    from transferlab.models.resolve import hub_origin

    limits = {k: data[k] for k in ("limit", "shots") if data.get(k)}  # a split that is not the whole data set
    results = eval_results(metrics, "text-classification", dataset_id(data),
                           {s: s for s in ("validation", "test") if s in metrics}, dataset_args=limits or None)
    card = ModelCardData(base_model=hub_origin(base_model), library_name="transformers",
                         pipeline_tag="text-classification", model_name=name, eval_results=results,
                         tags=["transferlab", "text-classification", *(["lora", "peft"] if method == "lora" else [])])
    return card.to_yaml()


def with_interval(figures: dict, metric: str) -> str:
    """``0.8123 [0.795, 0.829]`` (the bootstrap interval, where recorded)."""
    interval = figures.get("intervals", {}).get(metric)
    return f"{figures[metric]:.4f}" + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")


def write_model_card(folder: Path, *, base_model: str, method: str, data: dict, training: dict,
                     metrics: dict, label_names: list[str], parameters: dict, max_length: int,
                     peft_method: str | None = None) -> Path:
    """The fine-tuned model's card; ``peft_method``: the peft variant of a ``method=lora`` run (merged)."""
    header = card_header(folder.parent.name, base_model, method, data, metrics)
    method = f"{method} ({peft_method}, merged)" if peft_method else method
    rows = "\n".join(f"| {split} | {with_interval(metrics[split], 'accuracy')} | "
                     f"{with_interval(metrics[split], 'f1')} | {metrics[split]['n_examples']} |"
                     for split in ("validation", "test") if split in metrics)
    confidence = next((metrics[s]["intervals"].get("confidence", 0.95) for s in metrics
                       if "intervals" in metrics[s]), 0.95)
    settings = "\n".join(f"- {k}: {v}" for k, v in training.items())
    text = f"""---
{header.strip()}
---

# {folder.parent.name}

Fine-tuned from `{base_model}` for text classification ({method} fine-tuning) by `transferlab finetune`.
Labels: {", ".join(f"{i} = {name}" for i, name in enumerate(label_names))}.

## Data

{yaml.safe_dump(data, sort_keys=False).strip()}

## Training

- method: {method}; trainable parameters {parameters['trainable']:,} of {parameters['total']:,}
- max_length: {max_length} (truncation; each batch padded to its own longest text)
{settings}

## Results

| split | accuracy [interval] | macro F1 [interval] | examples |
|---|---|---|---|
{rows}

Intervals: {confidence:.0%} percentile bootstrap over the examples.

## Use

```python
from transformers import pipeline
classify = pipeline("text-classification", model="{folder}")
classify("a gripping, beautifully acted film")
```
"""
    path = folder / "README.md"
    path.write_text(text)
    return path
