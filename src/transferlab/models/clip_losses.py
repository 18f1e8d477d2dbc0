"""Training losses of a dual encoder over image embeddings and class-prompt embeddings.

Both treat a class, not an image, as the unit of contrast, so two images of the same class in one
batch are never negatives of each other (plain CLIP loss over a batch's captions would push them
apart whenever two captions are the same class prompt).

- ``class_ce`` (default): cross-entropy of each image over ALL class prompts. Every step sees every
  class as a negative, which is what zero-shot classification later scores against.
- ``contrastive``: symmetric CLIP-style loss over the classes present in the batch, one column per
  class (not per image); text->image targets spread uniformly over that class's images.
- ``sigmoid``: SigLIP's pairwise sigmoid loss at the class level: every (image, class) pair is a binary
  question, positive for the image's own class and negative for every other class, ``-log sigmoid(+-z)``
  with the logits ``z`` holding the model's scale and bias, summed over the classes and averaged over the
  images. SigLIP sums each text's row over the batch's images and averages over its texts; on a batch of
  one image per class, with those classes the only ones, the two are the same number (a test checks it
  against ``SiglipModel(return_loss=True)``). Over all classes, as ``class_ce``, every class is a negative
  at every step, and two images of one class are both positives of it, never negatives of each other.

``objective.loss=auto`` means the model family's own (``DualEncoder.default_loss``): ``sigmoid`` for SigLIP
and SigLIP 2, ``class_ce`` for CLIP and the stand-in.
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


def sigmoid(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``logits``: images x all classes (scale and bias included)."""
    signs = 2 * F.one_hot(labels, logits.shape[1]).to(logits.dtype) - 1
    return -F.logsigmoid(signs * logits).sum(dim=1).mean()


LOSSES = {"class_ce": class_ce, "contrastive": contrastive, "sigmoid": sigmoid}


def resolve_loss(name: str, default: str) -> str:
    """``auto`` -> the model family's ``default``; anything else as given."""
    return default if name == "auto" else name
