"""Shared fixtures (session-scoped): real Rotten Tomatoes, tiny randomly initialised encoders saved to disk,
a finished fine-tuning run, a tiny CLIP and a Tiny ImageNet tree. Plain helpers live in ``helpers.py``.

The tiny models go through the same ``from_pretrained(path)`` code path a user's real checkpoint takes.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no network here: fail fast instead of retrying
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_SILENT", "true")

import torch  # noqa: E402

torch.set_num_threads(1)

from helpers import build_vocab, finetune_overrides, save_tiny_classifier_base  # noqa: E402


@pytest.fixture(scope="session")
def rt_data():
    from transferlab.data.rotten_tomatoes import load_rotten_tomatoes

    return load_rotten_tomatoes()


@pytest.fixture(scope="session")
def tiny_distilbert(tiny_text_models) -> Path:
    """A 2-layer, 32-dim DistilBERT with a word-level vocabulary from the real training texts."""
    return tiny_text_models["distilbert"]


@pytest.fixture(scope="session")
def tiny_text_models(tmp_path_factory, rt_data) -> dict[str, Path]:
    """``{"distilbert": folder, "bert": folder}``: tiny base encoders whose tokenizers know the real words."""
    root = tmp_path_factory.mktemp("tiny-text-models")
    vocab = build_vocab(rt_data["train"]["text"][:2000] + rt_data["train"]["text"][-2000:])
    return {kind: save_tiny_classifier_base(root / kind, kind, vocab) for kind in ("distilbert", "bert")}


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
