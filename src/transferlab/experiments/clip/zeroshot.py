"""Zero-shot classification: class text embeddings once per evaluation, images in batches.

Small pure steps (in the manner of open_clip's ``zero_shot_classifier``): ``class_embeddings`` ->
``image_embeddings`` -> ``model.logits`` -> metrics.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from transferlab.data.images import ImageData, load_images, with_pixels
from transferlab.models.dual_encoder import DualEncoder, autocast, default_device, load_dual_encoder, prompts


def class_embeddings(model: DualEncoder, prompt_sets: Sequence[Sequence[str]], batch_size: int = 256,
                     precision: str = "auto") -> torch.Tensor:
    """(classes x dim): each template's prompts encoded in batches, L2-normalised, averaged, renormalised."""
    per_template = []
    for texts in prompt_sets:
        chunks = []
        for i in range(0, len(texts), batch_size):
            tokens = {k: v.to(model.device) for k, v in model.tokenize(texts[i:i + batch_size]).items()}
            with autocast(precision, model.device):
                chunks.append(F.normalize(model.encode_texts(**tokens).float(), dim=-1))
        per_template.append(torch.cat(chunks))
    return F.normalize(torch.stack(per_template).mean(0), dim=-1)


def batches(dataset, batch_size: int, num_workers: int = 0):
    """Index batches of a transformed ``datasets`` split: each batch is decoded in one transform call."""
    from torch.utils.data import BatchSampler, DataLoader, SequentialSampler

    sampler = BatchSampler(SequentialSampler(range(len(dataset))), batch_size, drop_last=False)
    return DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=num_workers,
                      collate_fn=lambda b: b)


@torch.inference_mode()
def image_embeddings(model: DualEncoder, dataset, batch_size: int = 128, num_workers: int = 0,
                     precision: str = "auto", desc: str = "images") -> tuple[torch.Tensor, np.ndarray]:
    """(embeddings, labels) of a split of paths/images, decoded lazily per batch."""
    out, labels = [], []
    loader = batches(with_pixels(dataset, model.preprocess), batch_size, num_workers)
    for batch in tqdm(loader, desc=desc, leave=False, mininterval=5):
        pixels = torch.stack(batch["pixel_values"]).to(model.device)
        with autocast(precision, model.device):
            out.append(model.encode_images(pixels).float().cpu())
        labels.extend(batch["labels"])
    return torch.cat(out), np.asarray(labels)


def scores(model: DualEncoder, image_embeds: torch.Tensor, class_embeds: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model.logits(image_embeds.to(class_embeds.device).float(), class_embeds.float()).cpu().numpy()


def split_result(model: DualEncoder, image_embeds: torch.Tensor, labels: np.ndarray,
                 class_embeds: torch.Tensor) -> tuple:
    """``(y_true, y_pred, scores)`` as ``write_results`` takes it."""
    s = scores(model, image_embeds, class_embeds)
    return labels, s.argmax(1), s


def prepare(config) -> tuple[ImageData, DualEncoder, list[list[str]]]:
    """Data, model (on the default device, eval mode) and class prompts; every input error is raised here."""
    data = load_images(config.data, config.seed)
    model = load_dual_encoder(config.model, data.class_ids, data.class_names).to(default_device()).eval()
    return data, model, prompts(config.model.templates, data.class_names, data.definitions)


def split_fingerprint(dataset) -> str:
    """Content key of a split: its image references (with size and mtime for files) and labels."""
    import hashlib
    import os

    h = hashlib.sha256()
    for image, label in zip(dataset["image"], dataset["label"]):
        if isinstance(image, str):
            stat = os.stat(image)
            h.update(f"{image}|{stat.st_size}|{stat.st_mtime_ns}|{label}\n".encode())
        else:
            h.update(repr((image, label)).encode())
    return h.hexdigest()[:16]


def encode_splits(model: DualEncoder, data: ImageData, config, names: Sequence[str]) -> dict:
    """``{split: (embeddings, labels)}`` for the named splits: each image encoded once per run, and
    reused across runs from ``model.feature_cache`` when set (keyed by weights, preprocessing, data)."""
    from transferlab.models.feature_cache import cached, weights_fingerprint

    m = config.model
    weights = weights_fingerprint(model) if m.feature_cache else None
    out = {}
    for name in names:
        split = getattr(data, name)
        key = {"kind": "image-embeddings", "model": m.name, "weights": weights, "image_size": m.image_size,
               "precision": m.precision, "split": name, "data": split_fingerprint(split) if weights else None}
        embeds, _ = cached(m.feature_cache and Path(m.feature_cache).expanduser(), key, lambda: image_embeddings(
            model, split, m.batch_size, config.data.num_workers, m.precision, desc=name)[0].numpy())
        out[name] = (torch.from_numpy(np.asarray(embeds)), np.asarray(split["label"]))
    return out


def zero_shot_results(model: DualEncoder, prompt_sets, encoded: dict, config) -> tuple[dict, float]:
    start = time.perf_counter()
    with torch.inference_mode():
        class_embeds = class_embeddings(model, prompt_sets, config.model.batch_size, config.model.precision)
    seconds = time.perf_counter() - start
    return {split: split_result(model, emb, y, class_embeds) for split, (emb, y) in encoded.items()}, seconds


def run_zeroshot(config, output_dir: str | Path) -> Path:
    from transferlab.config import to_dict
    from transferlab.evaluation.results import write_results
    from transferlab.runs import Run, set_seed
    from transferlab.tracking.tracker import Tracker

    set_seed(config.seed)
    data, model, prompt_sets = prepare(config)
    run = Run.create(output_dir, "zeroshot", config.run_name, to_dict(config), default_name=config.model.name)
    with run.guard(), Tracker(run.path, config.tracking, to_dict(config)) as tracker:
        start = time.perf_counter()
        encoded = encode_splits(model, data, config, ["validation", "test"])
        encode_s = time.perf_counter() - start
        splits, text_s = zero_shot_results(model, prompt_sets, encoded, config)
        metrics = write_results(run, tracker, splits, data.class_names, top_k=(1, 5))
        n_images = sum(len(y) for _, y in encoded.values())
        metrics["info"] = {"model": config.model.name, "n_classes": len(data.class_names),
                           "prompts": prompt_sets[0][:3], "skipped_unreadable_images": data.skipped,
                           "images_per_second": round(n_images / max(encode_s, 1e-9), 1),
                           "class_embedding_seconds": round(text_s, 3)}
        run.save_metrics(metrics)
        print(f"zero-shot top-1: validation {metrics['validation']['accuracy']:.4f}, "
              f"test {metrics['test']['accuracy']:.4f} ({len(data.class_names)} classes)")
    return run.path
