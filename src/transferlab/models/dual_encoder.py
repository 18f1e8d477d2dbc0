"""One interface for image-text dual encoders: CLIP-family checkpoints and the offline stand-in.

A dual encoder turns images and texts into vectors of one space (``encode_images``,
``encode_texts``) and scores them with cosine similarity times a logit scale (``logits``).
``towers`` names each tower's module prefix, so LoRA can target one tower or both.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from transferlab.errors import TransferlabError


class DualEncoder(nn.Module):
    towers: dict[str, str] = {}  # "vision"/"text" -> module-name prefix

    def preprocess(self, images: list) -> torch.Tensor:  # RGB PIL images -> pixel_values
        raise NotImplementedError

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encode_texts(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def logit_scale(self) -> torch.Tensor:
        raise NotImplementedError

    def save_pretrained(self, folder: str | Path) -> None:
        raise NotImplementedError

    def logits(self, image_embeds: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
        """Scaled cosine similarities, images x texts."""
        return self.logit_scale() * F.normalize(image_embeds, dim=-1) @ F.normalize(text_embeds, dim=-1).T

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


def prompts(templates: Sequence[str], names: Sequence[str], definitions: Sequence[str | None]) -> list[list[str]]:
    """Per template, one prompt per class; ``{definition}`` falls back to the name where unknown."""
    definitions = list(definitions) or [None] * len(names)
    return [[t.format(name=n, definition=d or n) for n, d in zip(names, definitions)] for t in templates]


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast(precision: str, device: torch.device):
    """bf16/fp16 autocast on GPU for ``auto`` (bf16 where supported); fp32 on CPU unless asked."""
    if precision == "auto":
        if device.type != "cuda":
            return contextlib.nullcontext()
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def is_standin(ref: str) -> bool:
    return ref == "standin" or (Path(ref).expanduser() / "standin.json").is_file()


def load_dual_encoder(model_cfg, class_ids: Sequence[str] = (), class_names: Sequence[str] = ()) -> DualEncoder:
    """The model ``model_cfg.name`` names: ``standin`` (built now, never fitted on ``class_ids``),
    a saved stand-in folder, or a CLIP-family checkpoint (Hub id or folder)."""
    if model_cfg.name == "standin":
        from transferlab.models.standin import build_standin

        return build_standin(model_cfg.text_model, model_cfg.templates, model_cfg.image_size,
                             model_cfg.temperature, exclude_ids=class_ids, exclude_names=class_names)
    if is_standin(model_cfg.name):
        from transferlab.models.standin import StandInDualEncoder

        model = StandInDualEncoder.from_pretrained(model_cfg.name)
        overlap = set(model.fitted_on) & set(class_ids)
        if overlap:
            raise TransferlabError(f"stand-in {model_cfg.name} was fitted on {len(overlap)} of the evaluated "
                                   f"classes (e.g. {sorted(overlap)[0]}), so its zero-shot result would not be "
                                   f"zero-shot: use model.name=standin to build one without them")
        return model
    from transferlab.models.clip_hf import HFDualEncoder

    return HFDualEncoder.from_pretrained(model_cfg.name)
