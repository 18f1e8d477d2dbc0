"""Run the frozen trunk of an image tower once: when LoRA adapters sit only in the tower's last blocks,
everything before the first adapted block gives the same output at every step, so it is computed once
per image (and per augmented view) and training runs the adapted blocks alone from that cache.

``trunk_outputs`` encodes a split up to block ``start`` (``DualEncoder.image_trunk``), optionally
through an augmented ``view`` of each image (``VIEWS``: a horizontal flip, a seeded random crop, or
both); ``head_embeddings`` finishes cached trunk outputs into image embeddings with the current weights
(``DualEncoder.image_head``). The batching is ``models.zero_shot.image_embeddings``'.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from transferlab.models.device import autocast
from transferlab.models.dual_encoder import DualEncoder
from transferlab.models.zero_shot import image_embeddings


def flip(images: list, rng: np.random.Generator) -> list:
    from PIL import Image

    return [im.transpose(Image.FLIP_LEFT_RIGHT) for im in images]


def crop(images: list, rng: np.random.Generator, min_side: float = 0.75) -> list:
    """A random square-ish crop of 75-100 % of each side (resized back by the model's preprocessing)."""
    out = []
    for im in images:
        w, h = im.size
        cw, ch = (max(1, int(round(s * rng.uniform(min_side, 1.0)))) for s in (w, h))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        out.append(im.crop((x, y, x + cw, y + ch)))
    return out


def flip_crop(images: list, rng: np.random.Generator) -> list:
    return crop(flip(images, rng), rng)


def resized_crop_box(width: int, height: int, rng: np.random.Generator, scale=(0.08, 1.0),
                     ratio=(3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """torchvision's ``RandomResizedCrop`` box: a random area fraction in ``scale`` and aspect ratio in
    ``ratio`` (log-uniform), ten tries, else the centred largest square."""
    for _ in range(10):
        area = width * height * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w, h = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
            return x, y, x + w, y + h
    side = min(width, height)
    x, y = (width - side) // 2, (height - side) // 2
    return x, y, x + side, y + side


def resized_crop_flip(images: list, rng: np.random.Generator) -> list:
    """CLIP-LoRA's training view: a random resized crop (8-100 % of the area, back to the image's size)
    and a horizontal flip with probability 1/2."""
    from PIL import Image

    out = []
    for im in images:
        im = im.resize(im.size, Image.BICUBIC, box=resized_crop_box(*im.size, rng))
        out.append(im.transpose(Image.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else im)
    return out


VIEWS: dict[str, Callable[[list, np.random.Generator], list]] = {"flip": flip, "crop": crop,
                                                                  "flip_crop": flip_crop,
                                                                  "resized_crop_flip": resized_crop_flip}
RANDOM_VIEWS = {"crop", "flip_crop", "resized_crop_flip"}  # views drawn from the seed (a flip is the same image
# whatever the seed)


class TrunkEncoder:
    """What ``image_embeddings`` needs of a model (``preprocess``, ``encode_images``, ``device``), with
    ``encode_images`` stopping at block ``start`` and ``preprocess`` seeing an augmented view."""

    def __init__(self, model: DualEncoder, start: int, view: str | None = None, seed: int = 0):
        self.model, self.start, self.device = model, start, model.device
        self.view = VIEWS[view] if view else None
        self.rng = np.random.default_rng(seed)

    def preprocess(self, images: list) -> torch.Tensor:
        return self.model.preprocess(self.view(images, self.rng) if self.view else images)

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model.image_trunk(pixel_values, self.start)

    def cast_copy(self, dtype: torch.dtype) -> "TrunkEncoder":
        """The same trunk of a copy of the model cast to ``dtype`` (``DualEncoder.cast_copy``)."""
        import copy

        clone = copy.copy(self)
        clone.model = self.model.cast_copy(dtype)
        return clone


def trunk_outputs(model: DualEncoder, dataset, start: int, view: str | None = None, seed: int = 0,
                  batch_size: int = 128, num_workers: int = 0, precision: str = "fp32", desc: str = "trunk",
                  progress: bool = True, cast: bool = False) -> tuple[torch.Tensor, np.ndarray]:
    """(trunk outputs, labels) of a split: the input of block ``start`` for each image (or its ``view``);
    ``cast``: as ``image_embeddings``'."""
    return image_embeddings(TrunkEncoder(model, start, view, seed), dataset, batch_size, num_workers, precision,
                            desc=desc, progress=progress, cast=cast)


@torch.inference_mode()
def head_embeddings(model: DualEncoder, hidden: torch.Tensor, start: int, batch_size: int = 512,
                    precision: str = "fp32") -> torch.Tensor:
    """Image embeddings of cached trunk outputs with the current weights, in batches."""
    out = []
    for i in range(0, len(hidden), batch_size):
        with autocast(precision, model.device):
            out.append(model.image_head(hidden[i:i + batch_size].to(model.device), start).float().cpu())
    return torch.cat(out) if out else torch.empty(0)
