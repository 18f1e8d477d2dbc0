"""The saved model's ``README.md``: a Hugging Face model card with the data, settings and metrics."""

from __future__ import annotations

from pathlib import Path

import yaml


def write_model_card(folder: Path, *, base_model: str, method: str, data: dict, training: dict,
                     metrics: dict, label_names: list[str], parameters: dict, max_length: int) -> Path:
    header = {"library_name": "transformers", "pipeline_tag": "text-classification",
              "tags": ["transferlab", "text-classification", *(["lora", "peft"] if method == "lora" else [])],
              "model-index": [{"name": folder.parent.name, "results": [
                  {"task": {"type": "text-classification"},
                   "dataset": {"name": data.get("name") if data.get("source") == "hub" else data.get("source"),
                               "type": "text-classification", "split": split},
                   "metrics": [{"type": m, "value": round(float(metrics[split][m]), 4)}
                               for m in ("accuracy", "f1") if m in metrics[split]]}
                  for split in ("validation", "test") if split in metrics]}]}
    rows = "\n".join(f"| {split} | {metrics[split]['accuracy']:.4f} | {metrics[split]['f1']:.4f} | "
                     f"{metrics[split]['n_examples']} |" for split in ("validation", "test") if split in metrics)
    settings = "\n".join(f"- {k}: {v}" for k, v in training.items())
    text = f"""---
{yaml.safe_dump(header, sort_keys=False).strip()}
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

| split | accuracy | macro F1 | examples |
|---|---|---|---|
{rows}

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
