"""The module a dual encoder is trained as: images scored against every class prompt with the current weights.

``PromptClassifier`` holds the class prompts (tokenised once, as buffers) and a loss from
``clip_losses`` (``auto``: the model family's own); its forward takes pixels, cached image embeddings
(image tower frozen) or cached trunk outputs (``image_hidden``: the input of the first adapted image
block, ``image_start``; see ``models.trunk_cache``) and returns ``{"loss", "logits"}``, so the Hugging
Face ``Trainer`` trains it as any model. Class embeddings are recomputed from the text
tower at every step; ``split_predictions`` scores a split with the current weights (what an evaluation
during training and the final scoring both use).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from transferlab.models.clip_losses import LOSSES, resolve_loss
from transferlab.models.dual_encoder import DualEncoder
from transferlab.models.trunk_cache import head_embeddings
from transferlab.models.zero_shot import average_templates, image_embeddings, predictions


class PromptClassifier(nn.Module):
    CHUNKS = 4  # each template's prompts are encoded in this many length-sorted chunks: less padding

    def __init__(self, encoder: DualEncoder, prompt_sets: Sequence[Sequence[str]], loss: str = "auto",
                 image_start: int | None = None, text_start: int | None = None):
        super().__init__()
        self.encoder = encoder
        self.image_start = image_start  # cached ``image_hidden`` inputs enter the image tower at this block
        self.loss = resolve_loss(loss, encoder.default_loss)  # auto: the model family's own
        self.loss_fn = LOSSES[self.loss]
        self.chunks: list[list[str]] = []  # per template, the buffer prefixes of its chunks
        for i, texts in enumerate(prompt_sets):
            lengths = encoder.tokenize(texts)["attention_mask"].sum(1)
            order = torch.argsort(lengths, stable=True)
            self.register_buffer(f"prompt{i}_inverse", torch.argsort(order), persistent=False)
            self.chunks.append([])
            for j, chunk in enumerate(torch.tensor_split(order, min(self.CHUNKS, len(texts)))):
                for key, value in encoder.tokenize([texts[k] for k in chunk.tolist()]).items():
                    self.register_buffer(f"prompt{i}_{j}_{key}", value, persistent=False)
                self.chunks[i].append(f"prompt{i}_{j}_")
        self.text_start = self.cache_text_trunk(text_start) if text_start else None

    def cache_text_trunk(self, start: int) -> int | None:
        """The prompts' hidden states before text block ``start`` (frozen below it), computed once in eval
        mode as buffers; ``start`` if the encoder splits its text tower, else ``None``."""
        was_training = self.encoder.training
        self.encoder.eval()
        try:
            with torch.no_grad():
                for prefix in (p for chunks in self.chunks for p in chunks):
                    hidden = self.encoder.text_trunk(getattr(self, prefix + "input_ids"),
                                                     getattr(self, prefix + "attention_mask"), start)
                    if hidden is None:
                        return None
                    self.register_buffer(prefix + "hidden", hidden, persistent=False)
        finally:
            self.encoder.train(was_training)
        return start

    def encode_chunk(self, prefix: str) -> torch.Tensor:
        mask = getattr(self, prefix + "attention_mask")
        if self.text_start is not None:  # the adapted blocks only
            return self.encoder.text_head(getattr(self, prefix + "hidden"), mask, self.text_start)
        return self.encoder.encode_texts(getattr(self, prefix + "input_ids"), mask)

    def class_embeddings(self) -> torch.Tensor:
        """(classes x dim) with the current weights: templates averaged, L2-normalised."""
        per_template = [torch.cat([self.encode_chunk(p) for p in chunks])[getattr(self, f"prompt{i}_inverse")]
                        for i, chunks in enumerate(self.chunks)]
        return average_templates(per_template)

    def forward(self, labels=None, pixel_values=None, image_embeds=None, image_hidden=None):
        if image_hidden is not None:
            image_embeds = self.encoder.image_head(image_hidden, self.image_start)  # the adapted blocks only
        elif image_embeds is None:
            image_embeds = self.encoder.encode_images(pixel_values)  # each image once per step
        logits = self.encoder.logits(image_embeds, self.class_embeddings())
        loss = self.loss_fn(logits.float(), labels) if labels is not None else None
        return {"loss": loss, "logits": logits}


class EmbeddingDataset(torch.utils.data.Dataset):
    """Cached image embeddings (or trunk outputs, ``key="image_hidden"``) and their labels, as the
    classifier's input."""

    def __init__(self, embeds: torch.Tensor, labels: np.ndarray, key: str = "image_embeds"):
        self.embeds, self.labels, self.key = embeds, torch.as_tensor(labels), key

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {self.key: self.embeds[i], "labels": self.labels[i]}


def split_predictions(classifier: PromptClassifier, images: tuple[torch.Tensor, np.ndarray] | None = None,
                      split=None, batch_size: int = 128, num_workers: int = 0, precision: str = "fp32",
                      cast: bool = False) -> tuple:
    """``(y_true, y_pred, scores)`` with the current weights (class embeddings recomputed now) for cached
    ``images`` (embeddings, labels; trunk outputs when the classifier has an ``image_start``), or a
    ``split`` whose images are encoded now (``cast``: as ``image_embeddings``')."""
    classifier.eval()
    with torch.inference_mode():
        class_embeds = classifier.class_embeddings().float()
        if images is None:
            images = image_embeddings(classifier.encoder, split, batch_size, num_workers, precision, progress=False,
                                      cast=cast)
        elif classifier.image_start is not None:
            images = (head_embeddings(classifier.encoder, images[0], classifier.image_start, batch_size,
                                      precision), images[1])
        return predictions(classifier.encoder, images[0], images[1], class_embeds)


def param_groups(model: nn.Module, learning_rate: float, other_learning_rate: float | None,
                 weight_decay: float = 0.0, full: Sequence[nn.Parameter] = ()) -> list[dict]:
    """The optimizer's groups over every trainable parameter (``requires_grad``: what peft marked trainable,
    whatever the variant names it: LoRA's matrices, DoRA's magnitudes, IA3's vectors, LN tuning's norms) at
    ``learning_rate``, except ``full`` (parameters trained in full beside the adapters: the stand-in's map and
    logit scale) at ``other_learning_rate`` (default: the same). Each splits into decayed and not decayed
    (``no_decay``); empty groups are left out."""
    exempt, extra = no_decay(model), {id(p) for p in full}
    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = []
    for in_full, lr in ((False, learning_rate), (True, other_learning_rate or learning_rate)):
        for decayed in (True, False):
            params = [p for p in trainable if (id(p) in extra) == in_full and (id(p) not in exempt) == decayed]
            if params:
                groups.append({"params": params, "lr": lr, "weight_decay": weight_decay if decayed else 0.0})
    return groups


def no_decay(model: nn.Module) -> set[int]:
    """``id``s of the parameters a weight decay must not pull toward zero, as the Trainer's rule exempts norms
    and biases from it (the text fine-tune's optimizer): LayerNorms (LN tuning's trained copies too), biases,
    IA3's scaling vectors and DoRA's magnitudes, each starting where it leaves its layer unchanged."""
    from peft.tuners.ia3.layer import IA3Layer
    from peft.tuners.lora.dora import DoraEmbeddingLayer, DoraLinearLayer  # the convolutions' subclass the first

    found = {id(p) for n, p in model.named_parameters() if n.endswith("bias")}
    for module in model.modules():
        if isinstance(module, (nn.LayerNorm, DoraLinearLayer, DoraEmbeddingLayer)):
            found |= {id(p) for p in module.parameters()}
        elif isinstance(module, IA3Layer):
            found |= {id(p) for p in module.ia3_l.parameters()}
    return found
