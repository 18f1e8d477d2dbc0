"""Zero-shot classification with a dual encoder, in small pure steps (as open_clip's
``build_zero_shot_classifier``): ``class_embeddings`` (each class's prompts encoded in batches,
templates averaged) -> ``image_embeddings`` (images decoded in bulk per batch and encoded) ->
``scores`` (one matrix product; the model's logits, its bias included) -> ``predictions``.
``class_probabilities`` are the family's own probabilities (CLIP: softmax over the classes; SigLIP: a
sigmoid per class, what ``torch.sigmoid(logits_per_image)`` gives); ``reported_scores`` what
``metrics.json`` and ``predictions/`` read as a distribution over the classes (below).

``precision`` is a resolved precision (``transferlab.models.device.resolve_precision``).
"""

from __future__ import annotations

import contextlib
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from transferlab.data.images import open_rgb
from transferlab.models.device import HALF_DTYPES, autocast
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
                     precision: str = "fp32", desc: str = "images", progress: bool = True,
                     cast: bool = False) -> tuple[torch.Tensor, np.ndarray]:
    """(embeddings, labels) of a split of paths/images, decoded in bulk per batch (``cast``: with a copy of
    the model cast to the half ``precision``, ``encode_pixel_batches``)."""
    labels = []
    loader = batches(dataset, batch_size, model.preprocess, num_workers)

    def pixels():
        for batch_pixels, batch_labels in tqdm(loader, desc=desc, leave=False, mininterval=5, disable=not progress):
            labels.extend(batch_labels)
            yield batch_pixels

    return encode_pixel_batches(model, pixels(), precision, cast), np.asarray(labels)


@torch.inference_mode()
def encode_pixel_batches(model: DualEncoder, pixel_batches: Iterable[torch.Tensor], precision: str,
                         cast: bool = False) -> torch.Tensor:
    """The image tower over preprocessed pixel batches: one autocast context for the whole loop (``cast``
    and a half precision: none, a copy of the model cast to it instead, ``DualEncoder.cast_copy``), each batch
    copied without waiting, and the embeddings kept on the device until the end (a copy back per batch would
    make every batch wait). The benchmark ``benchmarks/gpu_models.py`` times this very function."""
    out = []
    cast = cast and precision in HALF_DTYPES
    encoder = model.cast_copy(HALF_DTYPES[precision]) if cast else model
    with contextlib.nullcontext() if cast else autocast(precision, model.device):
        for pixels in pixel_batches:
            out.append(encoder.encode_images(pixels.to(model.device, non_blocking=True)).float())
    return torch.cat(out).cpu() if out else torch.empty(0)


@torch.no_grad()
def scores(model: DualEncoder, image_embeds: torch.Tensor, class_embeds: torch.Tensor) -> np.ndarray:
    """(images x classes) scaled cosine similarities."""
    return model.logits(image_embeds.to(class_embeds.device).float(), class_embeds.float()).cpu().numpy()


@torch.no_grad()
def class_probabilities(model: DualEncoder, image_embeds: torch.Tensor, class_embeds: torch.Tensor) -> np.ndarray:
    """(images x classes): the model family's probabilities (softmax over the classes, or a sigmoid per class)."""
    return model.probabilities(torch.from_numpy(scores(model, image_embeds, class_embeds))).numpy()


def reported_scores(model: DualEncoder, logits: np.ndarray) -> np.ndarray:
    """The scores ``write_results`` records (calibration, ``predictions/``), which it reads as a distribution
    over the classes (a softmax of anything that is not one). A softmax family: its logits (that softmax is
    the model's own probability). A sigmoid family (SigLIP): its per-class sigmoid probabilities divided by
    their sum. The sigmoids answer "is it this class?" one class at a time and need not sum to one; dividing
    keeps their ratios, so the model's bias still counts (a softmax of the logits would cancel it) and, for a
    trained SigLIP (bias about -16), where all but the top classes sit far below zero, it is close to the
    softmax. The ranking, and so every accuracy, is the logits'."""
    if model.scoring != "sigmoid":
        return logits
    log_sigmoid = F.logsigmoid(torch.from_numpy(np.asarray(logits, dtype=np.float64)))
    return torch.softmax(log_sigmoid, dim=1).numpy()  # sigmoid / row sum, computed without underflow


def predictions(model: DualEncoder, image_embeds: torch.Tensor, labels: np.ndarray,
                class_embeds: torch.Tensor) -> tuple:
    """``(y_true, y_pred, scores)``, as ``write_results`` takes it (``reported_scores``)."""
    s = scores(model, image_embeds, class_embeds)
    return labels, s.argmax(1), reported_scores(model, s)


def zero_shot_predictions(model: DualEncoder, prompt_sets: Sequence[Sequence[str]],
                          encoded: dict[str, tuple[torch.Tensor, np.ndarray]], batch_size: int = 256,
                          precision: str = "fp32") -> dict[str, tuple]:
    """``{split: (y_true, y_pred, scores)}`` for already encoded splits; the class embeddings computed once."""
    class_embeds = class_embeddings(model, prompt_sets, batch_size, precision)
    return {split: predictions(model, embeds, labels, class_embeds) for split, (embeds, labels) in encoded.items()}
