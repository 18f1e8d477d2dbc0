"""Zero-shot classification with a dual encoder, in small pure steps (as open_clip's
``build_zero_shot_classifier``): ``class_embeddings`` (each class's prompts encoded in batches,
templates averaged) -> ``image_embeddings`` (images decoded in bulk per batch and encoded) ->
``scores`` (one matrix product) -> ``predictions``.

``precision`` is a resolved precision (``transferlab.models.device.resolve_precision``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from transferlab.data.images import open_rgb
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


class DecodedBatches(torch.utils.data.Dataset):
    """A split as pixel batches: item ``indices`` -> ``(pixel_values, labels)``, the rows read in one
    ``dataset[indices]`` call and decoded and preprocessed in bulk (no per-row transform or stacking)."""

    def __init__(self, dataset, preprocess):
        self.dataset, self.preprocess = dataset, preprocess

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, indices) -> tuple[torch.Tensor, list]:
        rows = self.dataset[list(indices)]
        return self.preprocess([open_rgb(x) for x in rows["image"]]), list(rows["label"])


def batches(dataset, batch_size: int, preprocess, num_workers: int = 0):
    """Pixel batches of a split, in order: ``(pixel_values, labels)``. ``num_workers`` > 0 decodes in
    worker processes (one torch thread each); 0 decodes inline, best on 2 cores where workers and the
    encoder would share them (BENCHMARKS.md)."""
    from torch.utils.data import BatchSampler, DataLoader, SequentialSampler

    sampler = BatchSampler(SequentialSampler(range(len(dataset))), batch_size, drop_last=False)
    return DataLoader(DecodedBatches(dataset, preprocess), sampler=sampler, batch_size=None,
                      num_workers=num_workers, collate_fn=lambda b: b)


@torch.inference_mode()
def image_embeddings(model: DualEncoder, dataset, batch_size: int = 128, num_workers: int = 0,
                     precision: str = "fp32", desc: str = "images",
                     progress: bool = True) -> tuple[torch.Tensor, np.ndarray]:
    """(embeddings, labels) of a split of paths/images, decoded in bulk per batch."""
    out, labels = [], []
    loader = batches(dataset, batch_size, model.preprocess, num_workers)
    for pixels, batch_labels in tqdm(loader, desc=desc, leave=False, mininterval=5, disable=not progress):
        with autocast(precision, model.device):
            out.append(model.encode_images(pixels.to(model.device)).float().cpu())
        labels.extend(batch_labels)
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
