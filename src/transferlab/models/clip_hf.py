"""Hugging Face dual encoders by family, behind the dual-encoder interface.

The family is the checkpoint config's ``model_type`` (``FAMILIES``), each with its model class, its
processor's preprocessing and tokenizer padding, its zero-shot scoring and training objective, and its
trunk/head split of the image tower (``image_trunk`` / ``image_head``, for the cached-trunk path):

- ``clip`` (``CLIPModel``): ``softmax(logit_scale * cosine)`` over the classes, texts padded to the batch's
  longest; the class token after ``post_layernorm`` and ``visual_projection``.
- ``siglip`` (``SiglipModel``; fixed-resolution SigLIP 2 checkpoints such as
  ``google/siglip2-base-patch16-224`` are this family): a sigmoid per class, ``sigmoid(logit_scale *
  cosine + logit_bias)`` (``torch.sigmoid(logits_per_image)``, as the model card computes it), texts padded
  to the maximum length (the model was trained so, its pooled token is the last position); the image
  embedding is the attention-pooling head over ``post_layernorm``'d patches.
- ``siglip2`` (``Siglip2Model``, NaFlex): as SigLIP, with images as variable-size patch sequences: the
  processor's ``pixel_values`` (images x patches x channels), ``pixel_attention_mask`` and
  ``spatial_shapes`` travel as one tensor (``pack_naflex``: the mask and the two shape numbers appended to
  every patch), so batching, caching and the Trainer's collation see a plain tensor; ``encode_images``
  unpacks it for ``get_image_features``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from transferlab.errors import TransferlabError
from transferlab.models.dual_encoder import DualEncoder


def pooled(output) -> torch.Tensor:
    """transformers 5 returns a model output from ``get_*_features``; 4.x returned the tensor."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def run_layers(layers, hidden: torch.Tensor, start: int, stop: int | None, mask=None) -> torch.Tensor:
    """Transformer layers ``[start, stop)`` with an (already expanded) attention ``mask`` or none (4.x layers
    return a tuple)."""
    for layer in layers[start:stop]:
        out = layer(hidden, mask)
        hidden = out[0] if isinstance(out, tuple) else out
    return hidden


def model_type(ref: str) -> str:
    from transformers import AutoConfig

    from transferlab.models.resolve import from_pretrained

    return getattr(from_pretrained(AutoConfig, ref), "model_type", "") or ""


class HFDualEncoder(DualEncoder):
    """The CLIP family (``CLIPModel``); the other families subclass it. ``from_pretrained`` picks the family."""

    family, model_class = "clip", "CLIPModel"
    towers = {"vision": "model.vision_model", "text": "model.text_model"}
    pad_to_max = False  # CLIP: pad each batch to its longest text
    # measured (benchmarks/images.py --clip, ViT-B/16 on a 2-core AVX512-BF16 CPU): bf16 1.8x fp32;
    # channels-last pixels do not help a ViT (its one convolution is the patch embedding)
    preferred_cpu_precision = "bf16"

    def __init__(self, model, processor):
        super().__init__()
        self.model = model
        self.processor = processor

    @classmethod
    def from_pretrained(cls, ref: str) -> "HFDualEncoder":
        """The family's dual encoder for a checkpoint (Hub id or folder), by its config's ``model_type``."""
        import transformers
        from transformers import AutoProcessor

        from transferlab.models.resolve import from_pretrained

        kind = model_type(ref)
        if kind not in FAMILIES:
            names = ", ".join(f"{k} ({c.model_class})" for k, c in FAMILIES.items())
            raise TransferlabError(f"model {ref!r} is a {kind or 'model without a model_type'} checkpoint, not a "
                                   f"supported dual encoder: the families are {names}")
        family = FAMILIES[kind]
        return family(from_pretrained(getattr(transformers, family.model_class), ref),
                      from_pretrained(AutoProcessor, ref))

    def description(self) -> str:
        name = getattr(self.model.config, "name_or_path", "") or "a local folder"
        return f"{self.model.config.model_type} dual encoder ({name})"

    def base_model_name(self) -> str | None:
        return getattr(self.model, "name_or_path", None) or None

    def adapter_base(self) -> tuple[torch.nn.Module, str]:
        """peft wraps the checkpoint's own model, so the saved adapter names its layers as the plain base
        model does (``PeftModel.from_pretrained(CLIPModel.from_pretrained(base), adapter)`` loads it)."""
        return self.model, "model."

    def preprocess(self, images: list) -> torch.Tensor:
        return self.processor(images=images, return_tensors="pt")["pixel_values"]

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """The processor's tokenizer with the family's padding, truncated to the text tower's positions."""
        limit = self.model.config.text_config.max_position_embeddings
        max_length = min(self.processor.tokenizer.model_max_length or limit, limit)
        out = self.processor(text=list(texts), padding="max_length" if self.pad_to_max else True, truncation=True,
                             max_length=max_length, return_tensors="pt")
        if "attention_mask" not in out:
            out["attention_mask"] = torch.ones_like(out["input_ids"])
        return {"input_ids": out["input_ids"], "attention_mask": out["attention_mask"]}

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return pooled(self.model.get_image_features(pixel_values=pixel_values))

    def image_trunk(self, pixel_values: torch.Tensor, start: int | None = None) -> torch.Tensor:
        """CLIP's patch embeddings, pre-norm and encoder layers ``[0, start)``: the hidden states entering
        layer ``start``."""
        vision = self.model.vision_model
        hidden = vision.pre_layrnorm(vision.embeddings(pixel_values))
        return run_layers(vision.encoder.layers, hidden, 0, start)

    def image_head(self, hidden: torch.Tensor, start: int | None = None) -> torch.Tensor:
        """Encoder layers ``[start, end)``, the class token's post-norm and the visual projection."""
        vision = self.model.vision_model
        layers = vision.encoder.layers
        hidden = run_layers(layers, hidden, len(layers) if start is None else start, None)
        return self.model.visual_projection(vision.post_layernorm(hidden[:, 0]))

    def encode_texts(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return pooled(self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask))

    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale.exp()

    def save_pretrained(self, folder: str | Path) -> None:
        self.model.save_pretrained(folder)
        self.processor.save_pretrained(folder)


class SiglipDualEncoder(HFDualEncoder):
    """SigLIP (and fixed-resolution SigLIP 2): sigmoid scoring with the model's bias, max-length padding."""

    family, model_class = "siglip", "SiglipModel"
    pad_to_max = True  # SigLIP was trained on max-length padded texts (its processor docs say so)
    scoring, default_loss = "sigmoid", "sigmoid"

    def logit_bias(self) -> torch.Tensor:
        return self.model.logit_bias

    def image_trunk(self, pixel_values: torch.Tensor, start: int | None = None) -> torch.Tensor:
        """Patch embeddings (with positions) and encoder layers ``[0, start)``."""
        vision = self.model.vision_model
        return run_layers(vision.encoder.layers, vision.embeddings(pixel_values), 0, start)

    def image_head(self, hidden: torch.Tensor, start: int | None = None) -> torch.Tensor:
        """Encoder layers ``[start, end)``, ``post_layernorm`` and the attention-pooling head."""
        vision = self.model.vision_model
        layers = vision.encoder.layers
        hidden = run_layers(layers, hidden, len(layers) if start is None else start, None)
        return vision.head(vision.post_layernorm(hidden))


NAFLEX_EXTRA = 3  # channels appended to each patch: its attention-mask value and the image's (rows, columns)


def pack_naflex(pixel_values: torch.Tensor, mask: torch.Tensor, spatial_shapes: torch.Tensor) -> torch.Tensor:
    """(images x patches x (channels + 3)): each patch, its mask value and its image's patch grid shape."""
    n, patches = mask.shape
    shapes = spatial_shapes[:, None, :].expand(n, patches, 2)
    return torch.cat([pixel_values.float(), mask[..., None].float(), shapes.float()], dim=-1)


def unpack_naflex(packed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(pixel_values, pixel_attention_mask, spatial_shapes)`` as the processor gave them."""
    mask = packed[..., -NAFLEX_EXTRA].round().to(torch.int32)
    return packed[..., :-NAFLEX_EXTRA], mask, packed[:, 0, -2:].round().long()


class Siglip2DualEncoder(SiglipDualEncoder):
    """SigLIP 2 NaFlex (``Siglip2Model``): padded patch sequences with a mask and each image's grid shape."""

    family, model_class = "siglip2", "Siglip2Model"

    def preprocess(self, images: list) -> torch.Tensor:
        out = self.processor(images=images, return_tensors="pt")
        return pack_naflex(out["pixel_values"], out["pixel_attention_mask"], out["spatial_shapes"])

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        pixels, mask, shapes = unpack_naflex(pixel_values)
        return pooled(self.model.get_image_features(pixel_values=pixels, pixel_attention_mask=mask,
                                                    spatial_shapes=shapes))

    def layer_mask(self, hidden: torch.Tensor, mask: torch.Tensor):
        from transformers.masking_utils import create_bidirectional_mask

        return create_bidirectional_mask(config=self.model.vision_model.config, inputs_embeds=hidden,
                                         attention_mask=mask)

    def image_trunk(self, pixel_values: torch.Tensor, start: int | None = None) -> torch.Tensor:
        """Patch and resized position embeddings and encoder layers ``[0, start)``, the patch mask appended
        as one more channel (the head needs it)."""
        vision = self.model.vision_model
        pixels, mask, shapes = unpack_naflex(pixel_values)
        hidden = vision.embeddings(pixels, shapes)
        hidden = run_layers(vision.encoder.layers, hidden, 0, start, self.layer_mask(hidden, mask))
        return torch.cat([hidden, mask[..., None].to(hidden.dtype)], dim=-1)

    def image_head(self, hidden: torch.Tensor, start: int | None = None) -> torch.Tensor:
        """Encoder layers ``[start, end)`` under the patch mask, ``post_layernorm``, the masked pooling head."""
        vision = self.model.vision_model
        layers = vision.encoder.layers
        mask = hidden[..., -1].round().to(torch.int32)
        hidden = hidden[..., :-1]
        hidden = run_layers(layers, hidden, len(layers) if start is None else start, None,
                            self.layer_mask(hidden, mask))
        return vision.head(vision.post_layernorm(hidden), mask)


FAMILIES: dict[str, type[HFDualEncoder]] = {"clip": HFDualEncoder, "siglip": SiglipDualEncoder,
                                            "siglip2": Siglip2DualEncoder}
