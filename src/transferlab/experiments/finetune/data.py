"""Tokenised splits for the Trainer: truncation only; padding happens per batch in the collator."""

from __future__ import annotations

from datasets import DatasetDict

from transferlab.errors import TransferlabError


def tokenize_splits(splits: DatasetDict, tokenizer, max_length: int, with_length: bool = False) -> DatasetDict:
    """``input_ids``/``attention_mask``/``labels`` (and ``length`` for length-grouped sampling), no padding."""

    def encode(batch):
        out = tokenizer(batch["text"], truncation=True, max_length=max_length)
        out["labels"] = batch["label"]
        if with_length:
            out["length"] = [len(ids) for ids in out["input_ids"]]
        return out

    return splits.map(encode, batched=True, remove_columns=["text", "label"], desc="tokenizing")


def check_max_length(model_config, max_length: int) -> None:
    """Refuse a ``max_length`` beyond the model's position embeddings (before any run directory exists)."""
    limit = getattr(model_config, "max_position_embeddings", None)
    if limit and max_length > limit:
        raise TransferlabError(f"max_length={max_length} exceeds the {limit} positions this model has: "
                               f"set max_length={min(limit, 512)} or less")
