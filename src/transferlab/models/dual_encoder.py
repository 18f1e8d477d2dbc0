"""One interface for image-text dual encoders: CLIP-family checkpoints and the offline stand-in.

A dual encoder turns images and texts into vectors of one space (``encode_images``,
``encode_texts``) and scores them with cosine similarity times a logit scale, plus a logit bias where the
family has one (``logits``); ``probabilities`` are the family's own: a softmax over the classes (CLIP, the
stand-in) or a sigmoid per class (SigLIP: ``scoring = "sigmoid"``).
``towers`` names each tower's module prefix, so LoRA can target one tower or both.

The implementations (``models/clip_hf.py``, ``models/standin.py``) import this module, never the
reverse; ``models/dual_encoder_factory.py`` picks one by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def cast_tensor(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A floating tensor in ``dtype`` (a parameter stays a frozen parameter); any other tensor itself."""
    if not tensor.is_floating_point():
        return tensor
    out = tensor.detach().to(dtype)
    return nn.Parameter(out, requires_grad=False) if isinstance(tensor, nn.Parameter) else out


class DualEncoder(nn.Module):
    towers: dict[str, str] = {}  # "vision"/"text" -> module-name prefix
    preferred_cpu_precision = "fp32"  # what precision=auto means on a CPU with bf16: the measured faster one
    scoring = "softmax"  # how logits become probabilities: "softmax" over the classes, or "sigmoid" per class
    default_loss = "class_ce"  # the training objective objective.loss=auto means (models.clip_losses)

    def preprocess(self, images: list) -> torch.Tensor:  # RGB PIL images -> pixel_values
        raise NotImplementedError

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encode_texts(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def image_trunk(self, pixel_values: torch.Tensor, start: int | None = None) -> torch.Tensor:
        """The image tower before its block ``start`` (what adapters from that block on leave unchanged);
        a model that cannot be split returns the pixels, so its trunk is empty."""
        return pixel_values

    def image_head(self, hidden: torch.Tensor, start: int | None = None) -> torch.Tensor:
        """The rest of the image tower: ``encode_images(p) == image_head(image_trunk(p, s), s)``."""
        return self.encode_images(hidden)

    def text_trunk(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, start: int) -> torch.Tensor | None:
        """The text tower's hidden states entering its block ``start``; ``None``: this model is not split."""
        return None

    def text_head(self, hidden: torch.Tensor, attention_mask: torch.Tensor, start: int) -> torch.Tensor:
        """Blocks ``[start, end)`` and the text embedding: ``encode_texts == text_head(text_trunk(...))``."""
        raise NotImplementedError

    def logit_scale(self) -> torch.Tensor:
        raise NotImplementedError

    def logit_bias(self) -> torch.Tensor | None:
        """Added to every scaled cosine (SigLIP's learnt bias); ``None``: no bias."""
        return None

    def save_pretrained(self, folder: str | Path) -> None:
        raise NotImplementedError

    def adapter_base(self) -> tuple[nn.Module, str]:
        """``(module peft wraps, the prefix its names carry here)``: this whole module by default; a Hugging
        Face checkpoint's own model, so a saved adapter loads on the plain base model."""
        return self, ""

    def base_model_name(self) -> str | None:
        """The Hub id or folder a saved adapter applies to (``None``: no loadable base model)."""
        return None

    def cast_copy(self, dtype: torch.dtype) -> "DualEncoder":
        """A copy with every weight in ``dtype``, for frozen encoding (open_clip's ``pure_bf16``: no weight
        cast per batch, norms and the residual stream in ``dtype``, as a model loaded with ``dtype=``). The
        processor, tokenizer and other plain attributes are shared, not copied; this model is unchanged."""
        import copy

        memo = {id(v): v for k, v in vars(self).items()  # not nn.Module's own _modules, _parameters, ...
                if not k.startswith("_") and not isinstance(v, (nn.Module, torch.Tensor))}
        for tensor in (*self.parameters(), *self.buffers()):  # cast straight from the originals: no fp32 copy
            memo[id(tensor)] = cast_tensor(tensor, dtype)
        return copy.deepcopy(self, memo)

    def description(self) -> str:
        """What this model is, in words (the report names it next to the reference lab's model)."""
        return type(self).__name__

    def logits(self, image_embeds: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
        """Scaled cosine similarities (plus the bias, if any), images x texts."""
        logits = self.logit_scale() * F.normalize(image_embeds, dim=-1) @ F.normalize(text_embeds, dim=-1).T
        bias = self.logit_bias()
        return logits if bias is None else logits + bias

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """The family's probabilities of ``logits`` (images x classes): softmax over the classes, or a sigmoid
        per class (each in [0, 1] on its own; rows need not sum to one)."""
        return torch.sigmoid(logits) if self.scoring == "sigmoid" else torch.softmax(logits, dim=-1)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


def prompts(templates: Sequence[str], names: Sequence[str], definitions: Sequence[str | None]) -> list[list[str]]:
    """Per template, one prompt per class; ``{definition}`` falls back to the name where unknown."""
    definitions = list(definitions) or [None] * len(names)
    return [[t.format(name=n, definition=d or n) for n, d in zip(names, definitions)] for t in templates]
