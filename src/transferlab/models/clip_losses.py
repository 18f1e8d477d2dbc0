"""Training losses of a dual encoder over image embeddings and class-prompt embeddings.

Both treat a class, not an image, as the unit of contrast, so two images of the same class in one
batch are never negatives of each other (plain CLIP loss over a batch's captions would push them
apart whenever two captions are the same class prompt).

- ``class_ce`` (default): cross-entropy of each image over ALL class prompts. Every step sees every
  class as a negative, which is what zero-shot classification later scores against.
- ``contrastive``: symmetric CLIP-style loss over the classes present in the batch, one column per
  class (not per image); text->image targets spread uniformly over that class's images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def class_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``logits``: images x all classes."""
    return F.cross_entropy(logits, labels)


def contrastive(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    classes, target = labels.unique(return_inverse=True)
    sub = logits[:, classes]  # images x classes in the batch
    image_to_text = F.cross_entropy(sub, target)
    positives = (target[None, :] == torch.arange(len(classes), device=labels.device)[:, None]).to(sub.dtype)
    positives = positives / positives.sum(dim=1, keepdim=True)
    text_to_image = -(positives * F.log_softmax(sub.T, dim=1)).sum(dim=1).mean()
    return (image_to_text + text_to_image) / 2


LOSSES = {"class_ce": class_ce, "contrastive": contrastive}
