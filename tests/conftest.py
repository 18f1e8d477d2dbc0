"""Shared fixtures: real Rotten Tomatoes slices and tiny randomly initialised encoders saved to disk.

The tiny models go through the same ``from_pretrained(path)`` code path a user's real checkpoint takes.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no network here: fail fast instead of retrying
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_SILENT", "true")

import torch  # noqa: E402

torch.set_num_threads(1)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def build_vocab(texts: list[str], size: int = 2000) -> list[str]:
    counts: dict[str, int] = {}
    for text in texts:
        for word in re.findall(r"\w+|[^\w\s]", text.lower()):
            counts[word] = counts.get(word, 0) + 1
    words = sorted(counts, key=lambda w: (-counts[w], w))[: size]
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words


@pytest.fixture(scope="session")
def rt_data():
    from transferlab.data.rotten_tomatoes import load_rotten_tomatoes

    return load_rotten_tomatoes()


@pytest.fixture(scope="session")
def tiny_distilbert(tmp_path_factory, rt_data) -> Path:
    """A 2-layer, 32-dim DistilBERT with a word-level vocabulary from the real training texts."""
    from transformers import DistilBertConfig, DistilBertModel, DistilBertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-distilbert")
    vocab = build_vocab(rt_data["train"]["text"][:2000] + rt_data["train"]["text"][-2000:])
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = DistilBertTokenizerFast(vocab_file=str(folder / "vocab.txt"))
    torch.manual_seed(0)
    config = DistilBertConfig(vocab_size=len(vocab), dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                              max_position_embeddings=128)
    DistilBertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def make_csv(path: Path, rows: list[dict]) -> Path:
    import csv

    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path
