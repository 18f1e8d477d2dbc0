"""A trial, not a feature: static int8 quantisation of the stand-in's EfficientNet-Lite0 image tower
(``torch.ao.quantization.quantize_fx``, x86 backend, default qconfig, 256 calibration images) against
fp32 and bf16 channels-last, same 512 Tiny ImageNet images at 128 px, one process: images/s and the
cosine of each to the fp32 features. BENCHMARKS.md (issue 10) records why it is not an option.

    python benchmarks/int8_tower.py [--images 512] [--threads 1]
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

from images import image_only_standin, image_paths  # benchmarks/images.py, beside this file


class PooledFeatures(torch.nn.Module):
    def __init__(self, tower):
        super().__init__()
        self.tower = tower

    def forward(self, x):
        return self.tower.extract_features(x).mean(dim=(2, 3))


def rate(fn, pixels: torch.Tensor, batch_size: int = 128) -> tuple[float, torch.Tensor]:
    with torch.inference_mode():
        fn(pixels[:64])  # warm-up
        start = time.perf_counter()
        out = torch.cat([fn(pixels[i:i + batch_size]).float() for i in range(0, len(pixels), batch_size)])
    return len(pixels) / (time.perf_counter() - start), out


def main() -> None:
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    from transferlab.data.images import open_rgb
    from transferlab.models.standin import to_pixels

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    model = PooledFeatures(image_only_standin().image_tower).eval()
    pixels = to_pixels([open_rgb(p) for p in image_paths(None, args.images)], 128).contiguous()
    prepared = prepare_fx(model, get_default_qconfig_mapping("x86"), example_inputs=(pixels[:8],))
    with torch.inference_mode():
        for i in range(0, min(256, len(pixels)), 64):
            prepared(pixels[i:i + 64])  # calibration
    int8 = convert_fx(prepared)

    def bf16(x):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return model(x.contiguous(memory_format=torch.channels_last))

    fp32_rate, fp32 = rate(model, pixels)
    model.to(memory_format=torch.channels_last)
    bf16_rate, bf16_out = rate(bf16, pixels)
    model.to(memory_format=torch.contiguous_format)
    int8_rate, int8_out = rate(int8, pixels)
    cos = torch.nn.functional.cosine_similarity
    print(f"{len(pixels)} images, {args.threads} thread(s): fp32 {fp32_rate:.1f}, bf16 channels-last "
          f"{bf16_rate:.1f}, int8 {int8_rate:.1f} images/s; cosine to fp32: int8 mean "
          f"{cos(int8_out, fp32).mean():.4f} min {cos(int8_out, fp32).min():.4f}, bf16 mean "
          f"{cos(bf16_out, fp32).mean():.4f}")


if __name__ == "__main__":
    main()
