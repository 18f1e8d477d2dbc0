"""CLIP-family checkpoints (``CLIPModel``; SigLIP loads the same way) behind the dual-encoder interface."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from transferlab.models.dual_encoder import DualEncoder


def pooled(output) -> torch.Tensor:
    """transformers 5 returns a model output from ``get_*_features``; 4.x returned the tensor."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def run_layers(layers, hidden: torch.Tensor, start: int, stop: int | None) -> torch.Tensor:
    """Transformer layers ``[start, stop)`` without attention mask (4.x layers return a tuple)."""
    for layer in layers[start:stop]:
        out = layer(hidden, None)
        hidden = out[0] if isinstance(out, tuple) else out
    return hidden


class HFDualEncoder(DualEncoder):
    towers = {"vision": "model.vision_model", "text": "model.text_model"}
    # measured (benchmarks/images.py --clip, ViT-B/16 on a 2-core AVX512-BF16 CPU): bf16 1.8x fp32;
    # channels-last pixels do not help a ViT (its one convolution is the patch embedding)
    preferred_cpu_precision = "bf16"

    def __init__(self, model, processor):
        super().__init__()
        self.model = model
        self.processor = processor
        self.pad_to_max = "siglip" in getattr(model.config, "model_type", "")  # SigLIP was trained so

    @classmethod
    def from_pretrained(cls, ref: str) -> "HFDualEncoder":
        from transformers import AutoModel, AutoProcessor

        from transferlab.models.resolve import from_pretrained

        return cls(from_pretrained(AutoModel, ref), from_pretrained(AutoProcessor, ref))

    def description(self) -> str:
        name = getattr(self.model.config, "name_or_path", "") or "a local folder"
        return f"{self.model.config.model_type} dual encoder ({name})"

    def preprocess(self, images: list) -> torch.Tensor:
        return self.processor.image_processor(images, return_tensors="pt")["pixel_values"]

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        out = self.processor.tokenizer(list(texts), padding="max_length" if self.pad_to_max else True,
                                       truncation=True, return_tensors="pt")
        if "attention_mask" not in out:
            out["attention_mask"] = torch.ones_like(out["input_ids"])
        return {"input_ids": out["input_ids"], "attention_mask": out["attention_mask"]}

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return pooled(self.model.get_image_features(pixel_values=pixel_values))

    def image_trunk(self, pixel_values: torch.Tensor, start: int | None = None) -> torch.Tensor:
        """CLIP's patch embeddings, pre-norm and encoder layers ``[0, start)``: the hidden states entering
        layer ``start``; other model types (SigLIP) are not split (their trunk is the pixels)."""
        vision = self.model.vision_model
        if not self.splittable:
            return pixel_values
        hidden = vision.pre_layrnorm(vision.embeddings(pixel_values))
        return run_layers(vision.encoder.layers, hidden, 0, start)

    def image_head(self, hidden: torch.Tensor, start: int | None = None) -> torch.Tensor:
        """Encoder layers ``[start, end)``, the class token's post-norm and the visual projection."""
        if not self.splittable:
            return self.encode_images(hidden)
        vision = self.model.vision_model
        layers = vision.encoder.layers
        hidden = run_layers(layers, hidden, len(layers) if start is None else start, None)
        return self.model.visual_projection(vision.post_layernorm(hidden[:, 0]))

    @property
    def splittable(self) -> bool:
        return getattr(self.model.config, "model_type", "") == "clip"

    def encode_texts(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return pooled(self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask))

    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale.exp()

    def save_pretrained(self, folder: str | Path) -> None:
        self.model.save_pretrained(folder)
        self.processor.save_pretrained(folder)
