"""Image encoding of each dual-encoder family through transferlab's path against a bare bf16 loop.

For CLIP (ViT-B/16: ``CLIPVisionConfig`` with 16-pixel patches, its other defaults the base sizes), SigLIP
(``SiglipVisionConfig`` defaults: ViT-B/16 at 224 px) and SigLIP 2 NaFlex (``Siglip2VisionConfig`` defaults:
ViT-B/16, 256 patches), each built from its config with random weights (speed does not depend on them, and
the GPU machine has no network): the same preprocessed pixel tensors (decoding and resizing are not timed:
they are the data loader's, apart) encoded

- ``ours``: transferlab's path on a GPU, as zero-shot and the LoRA run's feature encoding call it
  (``models.zero_shot.encode_pixel_batches``, the same function, with ``model.encode_with: auto``'s choice
  there: ``cast``, a bf16 copy of the fp32 model made in the call, its time included);
- ``autocast``: the same function with ``model.encode_with=autocast`` (fp32 weights under bf16 autocast);
- ``bare``: the model cast to bf16 and a plain ``model.get_image_features`` loop over the same batches.

Measured side by side in one run, alternating, best of ``--repeats``; prints images/s and the ratios
(ours' time over bare's: the goal is within 1.2x; autocast's over bare's) and the embeddings' agreement
(cosine), and writes JSON.

    python benchmarks/gpu_models.py --json OUT/gpu_models.json   # on a GPU (about a minute on an H100)
    python benchmarks/gpu_models.py --smoke --json out.json       # tiny models on the CPU: checks the script
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from transferlab.models.clip_hf import FAMILIES, pack_naflex, pooled  # noqa: E402
from transferlab.models.zero_shot import encode_pixel_batches  # noqa: E402

GOAL = 1.2
TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)


def family_model(family: str, smoke: bool):
    """The family's model with random weights: base sizes (ViT-B/16) or, ``smoke``, 2 layers of width 32."""
    import transformers

    tiny_text = dict(TINY, vocab_size=64, max_position_embeddings=16, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    if family == "clip":
        vision = dict(TINY, image_size=32, patch_size=8) if smoke else dict(patch_size=16)
        config = transformers.CLIPConfig(vision_config=vision, text_config=tiny_text if smoke else None,
                                         projection_dim=16 if smoke else 512)
    elif family == "siglip":
        vision = dict(TINY, image_size=32, patch_size=8) if smoke else {}
        config = transformers.SiglipConfig(vision_config=vision, text_config=tiny_text if smoke else None)
    else:
        vision = dict(TINY, num_patches=16, patch_size=8) if smoke else {}
        config = transformers.Siglip2Config(vision_config=vision, text_config=tiny_text if smoke else None)
    return getattr(transformers, FAMILIES[family].model_class)(config)


def pixel_batches(family: str, model, n: int, batch: int) -> tuple[list, list]:
    """``(ours, bare)``: the same random preprocessed pixels as each path takes them (CPU tensors): CLIP and
    SigLIP images x channels x height x width; SigLIP 2 NaFlex, the processor's patches, mask and grid
    shapes, packed for transferlab (``pack_naflex``) and as keyword arguments for the bare loop."""
    generator = torch.Generator().manual_seed(0)
    vision = model.config.vision_config
    ours, bare = [], []
    for start in range(0, n, batch):
        size = min(batch, n - start)
        if family != "siglip2":
            pixels = torch.randn(size, 3, vision.image_size, vision.image_size, generator=generator)
            ours.append(pixels)
            bare.append({"pixel_values": pixels})
            continue
        side = int(vision.num_patches ** 0.5)
        patches = torch.randn(size, vision.num_patches, 3 * vision.patch_size ** 2, generator=generator)
        mask = torch.ones(size, vision.num_patches, dtype=torch.int32)
        shapes = torch.tensor([[side, side]] * size)
        ours.append(pack_naflex(patches, mask, shapes))
        bare.append({"pixel_values": patches, "pixel_attention_mask": mask, "spatial_shapes": shapes})
    return ours, bare


def encode_ours(encoder, batches: list, device: torch.device, cast: bool = True) -> torch.Tensor:
    """transferlab's step (``models.zero_shot.image_embeddings``, the batches already preprocessed)."""
    return encode_pixel_batches(encoder, batches, "bf16", cast=cast)


def encode_bare(model, batches: list, device: torch.device) -> torch.Tensor:
    """A plain bf16 ``get_image_features`` loop over the same batches."""
    out = []
    with torch.inference_mode():
        for kwargs in batches:
            inputs = {k: v.to(device, torch.bfloat16) if v.is_floating_point() else v.to(device)
                      for k, v in kwargs.items()}
            out.append(pooled(model.get_image_features(**inputs)))
    return torch.cat(out).float().cpu()


def timed(fn, device: torch.device) -> tuple[float, torch.Tensor]:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, result


def bench_family(family: str, args, device: torch.device) -> dict:
    torch.manual_seed(0)
    model = family_model(family, args.smoke).eval()
    bare_model = copy.deepcopy(model).to(device, torch.bfloat16)  # the same weights, cast to bf16
    encoder = FAMILIES[family](model, None).to(device).eval()  # transferlab's wrapper (fp32 weights)
    ours_batches, bare_batches = pixel_batches(family, model, args.images, args.batch)
    encode_ours(encoder, ours_batches[:1], device)  # warm-up: kernels chosen, memory pools grown
    encode_ours(encoder, ours_batches[:1], device, cast=False)
    encode_bare(bare_model, bare_batches[:1], device)
    times = {"ours": [], "autocast": [], "bare": []}
    for _ in range(args.repeats):  # alternating, so drift (clocks, heat) falls on all three
        seconds, ours = timed(lambda: encode_ours(encoder, ours_batches, device), device)
        times["ours"].append(seconds)
        seconds, autocast = timed(lambda: encode_ours(encoder, ours_batches, device, cast=False), device)
        times["autocast"].append(seconds)
        seconds, bare = timed(lambda: encode_bare(bare_model, bare_batches, device), device)
        times["bare"].append(seconds)
    transfer, _ = timed(lambda: [b.to(device) for b in ours_batches], device)  # the fp32 pixels' copy alone
    cosine = torch.nn.functional.cosine_similarity(ours, bare, dim=-1)
    cosine_autocast = torch.nn.functional.cosine_similarity(autocast, bare, dim=-1)
    best = {k: min(v) for k, v in times.items()}
    vision = model.config.vision_config
    return {"family": family, "model_class": FAMILIES[family].model_class,
            "vision": {k: getattr(vision, k, None) for k in ("hidden_size", "num_hidden_layers", "image_size",
                                                              "patch_size", "num_patches")},
            "images": args.images, "batch": args.batch, "repeats": args.repeats,
            "ours_images_per_s": args.images / best["ours"], "bare_images_per_s": args.images / best["bare"],
            "autocast_images_per_s": args.images / best["autocast"],
            "ratio": best["ours"] / best["bare"], "within_goal": best["ours"] / best["bare"] <= GOAL,
            "autocast_ratio": best["autocast"] / best["bare"],
            "seconds": times, "fp32_pixel_copy_s": transfer, "min_cosine_ours_vs_bare": float(cosine.min()),
            "min_cosine_autocast_vs_bare": float(cosine_autocast.min()),
            "peak_gpu_memory_gib": torch.cuda.max_memory_allocated() / 2 ** 30 if device.type == "cuda" else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny models on the CPU: checks the script runs")
    parser.add_argument("--families", default="clip,siglip,siglip2", help="comma-separated, of " + ",".join(FAMILIES))
    parser.add_argument("--images", type=int, default=4096, help="images encoded per pass")
    parser.add_argument("--batch", type=int, default=256, help="images per batch (the paper preset's)")
    parser.add_argument("--repeats", type=int, default=3, help="passes of each path (the fastest counts)")
    parser.add_argument("--json", default=None, help="write the results to this JSON file")
    args = parser.parse_args()
    if args.smoke:
        args.images, args.batch, args.repeats = 24, 8, 2
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
    print(f"device {name}; torch {torch.__version__}; {args.images} images a pass, batch {args.batch}", flush=True)
    results = {"device": name, "goal_ratio": GOAL, "smoke": args.smoke, "families": {}}
    for family in args.families.split(","):
        r = results["families"][family] = bench_family(family, args, device)
        print(f"{family} ({r['model_class']}, {r['vision']['num_hidden_layers']} layers x "
              f"{r['vision']['hidden_size']}): transferlab {r['ours_images_per_s']:.0f} images/s, bare bf16 "
              f"get_image_features {r['bare_images_per_s']:.0f} images/s, ratio {r['ratio']:.2f}x "
              f"({'within' if r['within_goal'] else 'OVER'} {GOAL}x; autocast {r['autocast_images_per_s']:.0f} "
              f"images/s, {r['autocast_ratio']:.2f}x); embeddings' cosine >= {r['min_cosine_ours_vs_bare']:.4f} "
              f"(autocast {r['min_cosine_autocast_vs_bare']:.4f})", flush=True)
        if args.json:  # after each family: a run cut short by its time limit keeps the families it finished
            Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
