"""Zero-shot throughput: the lab's way against ours, same model, same images, one run.

The lab's way: one image at a time through the processor and the full model, with a text pass over
every class prompt for each image. Ours: class embeddings once, images in batches, one matrix product.

    python benchmarks/zeroshot.py                                   # stand-in, vendored demo (20 classes)
    python benchmarks/zeroshot.py --data ../shared/data/tiny-imagenet-200 --images 200
    python benchmarks/zeroshot.py --model /path/to/clip-folder-or-hub-id
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def lab_way(model, images: list, texts: list[str]) -> np.ndarray:
    """Per image: preprocess it and tokenize all prompts, run the whole model, argmax."""
    from transferlab.models.clip_hf import HFDualEncoder

    preds = []
    with torch.inference_mode():
        for image in images:
            if isinstance(model, HFDualEncoder):  # exactly the lab's CLIPProcessor + CLIPModel call
                inputs = model.processor(text=texts, images=[image], return_tensors="pt", padding=True)
                logits = model.model(**inputs).logits_per_image
            else:
                pixels = model.preprocess([image])
                logits = model.logits(model.encode_images(pixels), model.encode_texts(**model.tokenize(texts)))
            preds.append(int(logits.argmax(-1)[0]))
    return np.asarray(preds)


def our_way(model, dataset, prompt_sets, batch_size: int) -> np.ndarray:
    from transferlab.models.zero_shot import class_embeddings, image_embeddings

    with torch.inference_mode():
        classes = class_embeddings(model, prompt_sets, batch_size)
        embeds, _ = image_embeddings(model, dataset, batch_size)
        return model.logits(embeds, classes).argmax(-1).numpy()


def bench(model_name: str = "standin", data: str | None = None, images: int = 100, batch_size: int = 128,
          template: str = "a photo of a {name}, {definition}") -> dict:
    """Both ways on the same model and the first ``images`` test images; throughput, accuracy, agreement."""
    from transferlab.data.images import DEMO_PATH, load_folder, open_rgb
    from transferlab.experiments.clip.config import ModelConfig
    from transferlab.models.dual_encoder import prompts
    from transferlab.models.dual_encoder_factory import load_dual_encoder

    dataset = load_folder(data or DEMO_PATH, val_per_class=1)
    model = load_dual_encoder(ModelConfig(name=model_name), dataset.class_ids, dataset.class_names).eval()
    subset = dataset.test.select(range(min(images, len(dataset.test))))
    prompt_sets = prompts([template], dataset.class_names, dataset.definitions)

    start = time.perf_counter()
    ours = our_way(model, subset, prompt_sets, batch_size)
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    decoded = [open_rgb(x) for x in subset["image"]]  # decoding counted in the lab's time too
    lab = lab_way(model, decoded, prompt_sets[0])
    lab_s = time.perf_counter() - start
    labels = np.asarray(subset["label"])
    return {"model": model_name, "classes": len(dataset.class_names), "images": len(subset),
            "threads": torch.get_num_threads(), "lab_images_per_s": len(subset) / lab_s,
            "ours_images_per_s": len(subset) / ours_s, "ratio": lab_s / ours_s,
            "lab_top1": float(np.mean(lab == labels)), "ours_top1": float(np.mean(ours == labels)),
            "agreement": float(np.mean(ours == lab))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="standin", help="standin (default), a model folder or a CLIP Hub id")
    parser.add_argument("--data", default=None, help="Tiny ImageNet folder (default: the vendored demo)")
    parser.add_argument("--images", type=int, default=100, help="test images timed (default 100)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--template", default="a photo of a {name}, {definition}")
    args = parser.parse_args()
    r = bench(args.model, args.data, args.images, args.batch_size, args.template)
    print(f"model {r['model']}, {r['classes']} classes, {r['images']} images, torch threads {r['threads']}")
    print(f"lab's way: {r['lab_images_per_s']:8.1f} images/s  (top-1 {r['lab_top1']:.3f})")
    print(f"ours:      {r['ours_images_per_s']:8.1f} images/s  (top-1 {r['ours_top1']:.3f}; "
          f"predictions agree on {r['agreement']:.1%})")
    print(f"speed-up:  {r['ratio']:.1f}x")


if __name__ == "__main__":
    main()
