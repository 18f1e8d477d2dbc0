"""Helpers shared by the tests (plain functions; the fixtures that use them are in conftest.py)."""

from __future__ import annotations

import re
from pathlib import Path

import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"  # ../shared/data beside the checkout


def build_vocab(texts: list[str], size: int = 2000) -> list[str]:
    counts: dict[str, int] = {}
    for text in texts:
        for word in re.findall(r"\w+|[^\w\s]", text.lower()):
            counts[word] = counts.get(word, 0) + 1
    words = sorted(counts, key=lambda w: (-counts[w], w))[: size]
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words


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


def finetune_overrides(model_dir: Path, **extra) -> list[str]:
    """A small real fine-tuning job (tiny model, 128 real reviews per split, 40 steps, eval/save every 8)."""
    settings = {"model": str(model_dir), "data.limit": 128, "max_length": 64, "training.epochs": 5,
                "training.batch_size": 16, "training.learning_rate": 0.003, "training.lr_scheduler": "constant",
                "training.eval_steps": 8, "training.logging_steps": 2, "training.torch_threads": 1,
                "training.warmup": 0.0, "training.precision": "fp32", "training.optim": "adamw_torch",
                "training.group_by_length": False,  # the scripted 40 steps, whatever the preset
                "tracking.tensorboard": True, **extra}
    return [f"{k}={v}" for k, v in settings.items()]


def trials_of(storage, name: str) -> list:
    """The trials of study ``name`` in ``storage`` (a URL or an Optuna storage); none while the command being
    watched has not created the study yet (its database file can exist a moment before the study's record)."""
    import optuna

    try:
        return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    except KeyError:  # optuna: 'Record does not exist.'
        return []


def one_retry(trials: list, killed) -> tuple:
    """A search of two trials whose ``killed`` trial lost its worker: that trial failed, one retry that
    Optuna's callback linked to it ran its settings to completion, the other trial completed. Returns
    ``(failed, retry)``."""
    assert sorted(t.state.name for t in trials) == ["COMPLETE", "COMPLETE", "FAIL"]
    (failed,) = [t for t in trials if t.state.name == "FAIL"]
    (retry,) = [t for t in trials if "failed_trial" in t.system_attrs]
    assert failed.number == killed.number
    assert retry.system_attrs["failed_trial"] == killed.number and retry.user_attrs["retry_of"] == killed.number
    assert retry.state.name == "COMPLETE" and retry.params == killed.params
    return failed, retry
