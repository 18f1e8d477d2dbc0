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
def tiny_distilbert(tiny_text_models) -> Path:
    """A 2-layer, 32-dim DistilBERT with a word-level vocabulary from the real training texts."""
    return tiny_text_models["distilbert"]


def make_csv(path: Path, rows: list[dict]) -> Path:
    import csv

    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def save_tiny_classifier_base(folder: Path, kind: str, vocab: list[str]) -> Path:
    """A tiny randomly initialised DistilBERT or BERT (2 layers, 32 wide) with a working word-level tokenizer.

    (transformers 5 tokenizers take ``vocab=``; ``vocab_file=`` is ignored and leaves 5 tokens.)"""
    from transformers import BertConfig, BertModel, BertTokenizerFast, DistilBertConfig, DistilBertModel, \
        DistilBertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    torch.manual_seed(0)
    if kind == "distilbert":
        tokenizer = DistilBertTokenizerFast(vocab=str(folder / "vocab.txt"))
        model = DistilBertModel(DistilBertConfig(vocab_size=len(vocab), dim=32, n_layers=2, n_heads=2,
                                                 hidden_dim=64, max_position_embeddings=128))
    else:
        tokenizer = BertTokenizerFast(vocab=str(folder / "vocab.txt"))
        model = BertModel(BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=128))
    assert len(tokenizer) == len(vocab)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_text_models(tmp_path_factory, rt_data) -> dict[str, Path]:
    """``{"distilbert": folder, "bert": folder}``: tiny base encoders whose tokenizers know the real words."""
    root = tmp_path_factory.mktemp("tiny-text-models")
    vocab = build_vocab(rt_data["train"]["text"][:2000] + rt_data["train"]["text"][-2000:])
    return {kind: save_tiny_classifier_base(root / kind, kind, vocab) for kind in ("distilbert", "bert")}


def finetune_overrides(model_dir: Path, **extra) -> list[str]:
    """A small real fine-tuning job (tiny model, 128 real reviews per split, 40 steps, eval/save every 8)."""
    settings = {"model": str(model_dir), "data.limit": 128, "max_length": 64, "training.epochs": 5,
                "training.batch_size": 16, "training.learning_rate": 0.003, "training.lr_scheduler": "constant",
                "training.eval_steps": 8, "training.logging_steps": 2, "training.torch_threads": 1,
                "tracking.tensorboard": True, **extra}
    return [f"{k}={v}" for k, v in settings.items()]


@pytest.fixture(scope="session")
def finetuned_run(tmp_path_factory, tiny_text_models) -> Path:
    """A finished ``transferlab finetune`` run (full fine-tuning of the tiny DistilBERT)."""
    from transferlab.config import load_config
    from transferlab.experiments.finetune import FinetuneConfig, run_finetune

    out = tmp_path_factory.mktemp("finetune-logs")
    cfg = load_config(FinetuneConfig, "finetune", "offline",
                      finetune_overrides(tiny_text_models["distilbert"], run_name="reference"))
    return run_finetune(cfg, out, progress=False)


@pytest.fixture(scope="session")
def clip_folder(tmp_path_factory) -> Path:
    """A tiny random CLIPModel with its processor, saved (see clip_fixtures.tiny_clip)."""
    from clip_fixtures import tiny_clip

    return tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="session")
def tree(tmp_path_factory) -> Path:
    """A generated Tiny ImageNet folder: 3 classes, 6 train and 2 val images each (read-only for tests)."""
    from clip_fixtures import tiny_imagenet_tree

    return tiny_imagenet_tree(tmp_path_factory.mktemp("data") / "tiny", n_train=6, n_val=2)
