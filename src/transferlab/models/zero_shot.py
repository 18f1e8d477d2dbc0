"""Zero-shot classification with a dual encoder, in small pure steps (as open_clip's
``build_zero_shot_classifier``): ``class_embeddings`` (each class's prompts encoded in batches,
templates averaged) -> ``image_embeddings`` (images decoded lazily and encoded in batches) ->
``scores`` (one matrix product) -> ``predictions``.

``precision`` is a resolved precision (``transferlab.models.device.resolve_precision``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from transferlab.data.images import with_pixels
from transferlab.models.device import autocast
from transferlab.models.dual_encoder import DualEncoder


@torch.inference_mode()
def class_embeddings(model: DualEncoder, prompt_sets: Sequence[Sequence[str]], batch_size: int = 256,
                     precision: str = "fp32") -> torch.Tensor:
    """(classes x dim): each template's prompts encoded in batches, L2-normalised, averaged, renormalised."""
    per_template = []
    for texts in prompt_sets:
        chunks = []
        for i in range(0, len(texts), batch_size):
            tokens = {k: v.to(model.device) for k, v in model.tokenize(texts[i:i + batch_size]).items()}
            with autocast(precision, model.device):
                chunks.append(model.encode_texts(**tokens).float())
        per_template.append(torch.cat(chunks))
    return average_templates(per_template)


def average_templates(per_template: Sequence[torch.Tensor]) -> torch.Tensor:
    """(classes x dim): each template's class vectors L2-normalised, averaged over templates, renormalised."""
    return F.normalize(torch.stack([F.normalize(t, dim=-1) for t in per_template]).mean(0), dim=-1)


def batches(dataset, batch_size: int, num_workers: int = 0):
    """Index batches of a transformed ``datasets`` split: each batch is decoded in one transform call."""
    from torch.utils.data import BatchSampler, DataLoader, SequentialSampler

    sampler = BatchSampler(SequentialSampler(range(len(dataset))), batch_size, drop_last=False)
    return DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=num_workers,
                      collate_fn=lambda b: b)


@torch.inference_mode()
def image_embeddings(model: DualEncoder, dataset, batch_size: int = 128, num_workers: int = 0,
                     precision: str = "fp32", desc: str = "images",
                     progress: bool = True) -> tuple[torch.Tensor, np.ndarray]:
    """(embeddings, labels) of a split of paths/images, decoded lazily per batch."""
    out, labels = [], []
    loader = batches(with_pixels(dataset, model.preprocess), batch_size, num_workers)
    for batch in tqdm(loader, desc=desc, leave=False, mininterval=5, disable=not progress):
        pixels = torch.stack(batch["pixel_values"]).to(model.device)
        with autocast(precision, model.device):
            out.append(model.encode_images(pixels).float().cpu())
        labels.extend(batch["labels"])
    return torch.cat(out), np.asarray(labels)


@torch.no_grad()
def scores(model: DualEncoder, image_embeds: torch.Tensor, class_embeds: torch.Tensor) -> np.ndarray:
    """(images x classes) scaled cosine similarities."""
    return model.logits(image_embeds.to(class_embeds.device).float(), class_embeds.float()).cpu().numpy()


def predictions(model: DualEncoder, image_embeds: torch.Tensor, labels: np.ndarray,
                class_embeds: torch.Tensor) -> tuple:
    """``(y_true, y_pred, scores)``, as ``write_results`` takes it."""
    s = scores(model, image_embeds, class_embeds)
    return labels, s.argmax(1), s


def zero_shot_predictions(model: DualEncoder, prompt_sets: Sequence[Sequence[str]],
                          encoded: dict[str, tuple[torch.Tensor, np.ndarray]], batch_size: int = 256,
                          precision: str = "fp32") -> dict[str, tuple]:
    """``{split: (y_true, y_pred, scores)}`` for already encoded splits; the class embeddings computed once."""
    class_embeds = class_embeddings(model, prompt_sets, batch_size, precision)
    return {split: predictions(model, embeds, labels, class_embeds) for split, (embeds, labels) in encoded.items()}
