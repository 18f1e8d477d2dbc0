"""Image-encoding throughput: the project's own ``image_embeddings`` path against the bare image tower's
best loop and against decoding alone, same model (the stand-in's EfficientNet-Lite0), same images, one
process. Each variant is timed ``--repeats`` times, interleaved, and its best run is kept (the machine
may be shared; interleaving spreads other jobs' load over every variant alike).

- decode+resize: ``open_rgb`` + ``to_pixels`` alone (PIL), batches of 128;
- previous path: the per-row lazy transform (``with_pixels``: one tensor per row, stacked), per-image
  float conversion, NCHW tower, fp32 (what ``precision=auto`` resolved to before);
- ours: ``transferlab.models.zero_shot.image_embeddings`` at ``precision=auto`` (and fp32);
- bare tower: pixels decoded beforehand, ``extract_features`` + mean pool in batches of 128, fp32 NCHW
  and bf16 autocast with a channels-last model and input (the best loop measured).

The floor is the tower's forward FLOPs (every convolution and linear layer, counted by forward hooks on
one image) over the dense matmul rate measured here (``benchmarks/features.py``'s ``matmul_rate``), in
fp32 and bf16: an optimistic bound, since depthwise convolutions never run at the matmul rate.

``--clip`` adds a randomly initialised CLIP ViT-B/16 vision tower (no weights needed): fp32, bf16, and
bf16 with channels-last pixels (only the patch embedding is a convolution).

    python benchmarks/images.py [--images 1024] [--data DIR] [--repeats 3] [--threads N] [--clip]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from features import matmul_rate  # benchmarks/features.py, beside this file

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "tiny-imagenet-200"


def image_paths(data: str | None, n: int) -> list[str]:
    from transferlab.data.images import DEMO_PATH

    root = Path(data) if data else SHARED if SHARED.is_dir() else DEMO_PATH
    folder = root / "val" / "images" if (root / "val" / "images").is_dir() else root
    paths = sorted(str(p) for p in folder.rglob("*.JPEG"))
    return (paths * (n // max(len(paths), 1) + 1))[:n]


def image_only_standin():
    """The stand-in's image side (pretrained EfficientNet-Lite0); the text side is not used here."""
    from torch import nn

    from transferlab.models.standin import StandInDualEncoder, TextToImageMap, efficientnet_lite0

    return StandInDualEncoder(efficientnet_lite0(), nn.Identity(), None,
                              TextToImageMap(torch.zeros(1, 1), torch.zeros(1, 1), 0.1)).eval()


def previous_path(tower, dataset, batch_size: int) -> torch.Tensor:
    """The path before issue 10: per-row transform, per-image float arrays, stacked rows, NCHW, fp32."""
    from PIL import Image

    from transferlab.data.images import with_pixels

    def pixels(images):
        arrays = [np.asarray(im.resize((128, 128), Image.BICUBIC), dtype=np.float32) for im in images]
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) / 127.5 - 1.0

    view, out = with_pixels(dataset, pixels), []
    with torch.inference_mode():
        for start in range(0, len(dataset), batch_size):
            batch = view[start:start + batch_size]
            out.append(tower.extract_features(torch.stack(batch["pixel_values"])).mean(dim=(2, 3)))
    return torch.cat(out)


def tower_flops(tower, image_size: int) -> float:
    """Forward FLOPs (2 x multiply-adds) of one image through every convolution and linear layer."""
    from torch import nn

    total = [0]

    def count(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            total[0] += 2 * output.numel() * k
        else:
            total[0] += 2 * output.numel() * module.in_features

    hooks = [m.register_forward_hook(count) for m in tower.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.inference_mode():
            tower.extract_features(torch.zeros(1, 3, image_size, image_size))
    finally:
        for hook in hooks:
            hook.remove()
    return float(total[0])


def bare_loop(tower, pixels: torch.Tensor, batch_size: int, bf16: bool, channels_last: bool) -> torch.Tensor:
    out = []
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for start in range(0, len(pixels), batch_size):
            x = pixels[start:start + batch_size]
            x = x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
            out.append(tower.extract_features(x).mean(dim=(2, 3)).float())
    return torch.cat(out)


def best_of(variants: dict, repeats: int, n: int) -> tuple[dict, dict]:
    """Images/s of each variant (best of ``repeats`` interleaved runs, one warm-up each) and its output."""
    rates, outputs, threads = {name: [] for name in variants}, {}, torch.get_num_threads()
    for name, (prepare, fn) in variants.items():
        torch.set_num_threads(threads)
        prepare()
        fn(warmup=True)
    for _ in range(repeats):
        for name, (prepare, fn) in variants.items():
            torch.set_num_threads(threads)
            prepare()  # the tower's memory format (and a variant's thread count)
            start = time.perf_counter()
            outputs[name] = fn(warmup=False)
            rates[name].append(n / (time.perf_counter() - start))
    torch.set_num_threads(threads)
    return {name: max(r) for name, r in rates.items()}, outputs


def cosine(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    c = torch.nn.functional.cosine_similarity(a.float(), b.float())
    return float(c.mean()), float(c.min())


def bench(data: str | None = None, images: int = 1024, batch_size: int = 128, repeats: int = 3) -> dict:
    import datasets

    from transferlab.data.images import open_rgb
    from transferlab.models.device import resolve_precision
    from transferlab.models.standin import to_pixels
    from transferlab.models.zero_shot import image_embeddings

    paths = image_paths(data, images)
    model = image_only_standin()
    tower, auto = model.image_tower, resolve_precision("auto", "cpu", cpu_auto=model.preferred_cpu_precision)
    split = datasets.Dataset.from_dict({"image": paths, "label": [0] * len(paths)})
    small = split.select(range(min(batch_size, len(paths))))
    pixels = to_pixels([open_rgb(p) for p in paths], model.image_size)

    def fmt(cl: bool):
        return lambda: tower.to(memory_format=torch.channels_last if cl else torch.contiguous_format)

    def one_thread():
        fmt(True)()
        torch.set_num_threads(1)

    def ours(precision: str, workers: int = 0):
        return lambda warmup: image_embeddings(model, small if warmup else split, batch_size, workers,
                                               precision=precision, progress=False)[0]

    def bare(bf16: bool, cl: bool):
        return lambda warmup: bare_loop(tower, pixels[:batch_size] if warmup else pixels, batch_size, bf16, cl)

    decode = lambda warmup: torch.cat([to_pixels([open_rgb(p) for p in paths[i:i + batch_size]],  # noqa: E731
                                                 model.image_size) for i in range(0, len(paths), batch_size)])
    variants = {"decode+resize": (fmt(True), decode),
                "previous path (fp32)": (fmt(False), lambda warmup: previous_path(
                    tower, small if warmup else split, batch_size)),
                f"ours (auto={auto})": (fmt(True), ours(auto)), "ours (fp32)": (fmt(True), ours("fp32")),
                f"ours (auto={auto}, 1 thread)": (one_thread, ours(auto)),
                f"ours (auto={auto}, 1 decoding worker)": (fmt(True), ours(auto, workers=1)),
                "bare tower fp32 NCHW": (fmt(False), bare(False, False)),
                "bare tower bf16 channels-last": (fmt(True), bare(auto == "bf16", True))}
    rates, outputs = best_of(variants, repeats, len(paths))
    reference = outputs["ours (fp32)"]
    flops = tower_flops(tower.to(memory_format=torch.contiguous_format), model.image_size)
    floors = {"fp32": matmul_rate() / flops, "bf16": matmul_rate(torch.bfloat16) / flops}
    return {"images": len(paths), "threads": torch.get_num_threads(), "auto": auto, "rates": rates,
            "gflops_per_image": flops / 1e9, "floor_fp32": floors["fp32"], "floor_bf16": floors["bf16"],
            "ours_vs_previous": rates[f"ours (auto={auto})"] / rates["previous path (fp32)"],
            "bare_best_vs_ours": rates["bare tower bf16 channels-last"] / rates[f"ours (auto={auto})"],
            "cosine_auto_vs_fp32": cosine(outputs[f"ours (auto={auto})"], reference),
            "cosine_previous_vs_fp32": cosine(outputs["previous path (fp32)"], reference)}


def clip_bench(images: int = 8, repeats: int = 2) -> dict:
    """A random CLIP ViT-B/16 vision tower (224 px): fp32, bf16, bf16 with channels-last pixels."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    model = CLIPVisionModelWithProjection(CLIPVisionConfig(patch_size=16, projection_dim=512)).eval()
    pixels = torch.randn(images, 3, 224, 224)

    def run(bf16: bool, cl: bool):
        def fn(warmup):
            x = pixels[:2] if warmup else pixels
            x = x.contiguous(memory_format=torch.channels_last) if cl else x
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                return torch.cat([model(pixel_values=x[i:i + 8]).image_embeds.float() for i in range(0, len(x), 8)])
        return fn

    def fmt(cl: bool):
        return lambda: model.to(memory_format=torch.channels_last if cl else torch.contiguous_format)

    variants = {"clip fp32": (fmt(False), run(False, False)), "clip bf16": (fmt(False), run(True, False)),
                "clip bf16 channels-last": (fmt(True), run(True, True))}
    rates, outputs = best_of(variants, repeats, images)
    return {"rates": rates, "cosine_bf16_vs_fp32": cosine(outputs["clip bf16"], outputs["clip fp32"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="a Tiny ImageNet folder (default: ../shared's, else the demo)")
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--clip", action="store_true", help="also a random CLIP ViT-B/16 vision tower")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    r = bench(args.data, args.images, args.batch_size, args.repeats)
    if args.clip:
        r["clip"] = clip_bench()
    if args.json:
        print(json.dumps(r))
        return
    print(f"{r['images']} images at 128 px, {r['threads']} torch threads, precision=auto -> {r['auto']}, "
          f"best of {args.repeats}")
    for name, rate in r["rates"].items():
        print(f"  {name:32s} {rate:8.1f} images/s")
    print(f"  floor fp32 / bf16 ({r['gflops_per_image']:.3f} GFLOP an image / matmul rate): "
          f"{r['floor_fp32']:.1f} / {r['floor_bf16']:.1f} images/s")
    print(f"ours / previous path: {r['ours_vs_previous']:.2f}x; bare best / ours: {r['bare_best_vs_ours']:.2f}x")
    print(f"cosine to ours fp32: auto mean {r['cosine_auto_vs_fp32'][0]:.5f} min {r['cosine_auto_vs_fp32'][1]:.5f}; "
          f"previous path mean {r['cosine_previous_vs_fp32'][0]:.6f}")
    for name, rate in r.get("clip", {}).get("rates", {}).items():
        print(f"  {name:32s} {rate:8.2f} images/s (random ViT-B/16, 224 px)")


if __name__ == "__main__":
    main()
