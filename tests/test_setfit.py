"""SetFit through the `setfit` library on a tiny sentence encoder built here (a random 2-layer BERT saved with
sentence-transformers modules), on a K-shot draw of the real Rotten Tomatoes reviews."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from transferlab.config import load_config
from transferlab.errors import TransferlabError


@pytest.fixture(scope="module")
def tiny_sentence_encoder(tiny_text_models, tmp_path_factory) -> Path:
    """The tiny BERT as a sentence-transformers model (Transformer + mean Pooling, modules.json)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    folder = tmp_path_factory.mktemp("tiny-st") / "encoder"
    word = Transformer(str(tiny_text_models["bert"]), max_seq_length=64)
    SentenceTransformer(modules=[word, Pooling(word.get_embedding_dimension(), "mean")],
                        device="cpu").save(str(folder))
    return folder


def setfit_config(model: Path, **extra):
    from transferlab.experiments.setfit import SetFitConfig

    settings = {"model": str(model), "data.limit": 300, "data.shots": 8, "max_length": 64,
                "training.num_iterations": 5, "tracking.tensorboard": False, "device": "cpu", **extra}
    return load_config(SetFitConfig, "setfit", "offline", [f"{k}={v}" for k, v in settings.items()])


def body_weights(folder: Path) -> np.ndarray:
    from safetensors.numpy import load_file

    files = sorted(folder.rglob("model.safetensors"))
    return np.concatenate([v.ravel() for f in files for _, v in sorted(load_file(f).items())])


@pytest.mark.slow
def test_setfit_trains_the_body_and_scores_the_whole_test_split(tiny_sentence_encoder, tmp_path):
    from transferlab.experiments.setfit import run_setfit

    cfg = setfit_config(tiny_sentence_encoder)
    run = run_setfit(cfg, tmp_path, progress=False)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["experiment"] == "setfit" and metrics["primary"] == "setfit"
    assert metrics["n_examples"] == {"train": 16, "validation": 8, "test": 300}  # 8 + 4 per class; test whole
    assert metrics["details"]["fewshot"]["shots"] == 8
    assert metrics["details"]["pairs_per_epoch"] == 2 * 5 * 16
    test = metrics["methods"]["setfit"]["test"]
    rows = [json.loads(line) for line in (run / "predictions" / "setfit.jsonl").open()]
    test_rows = [r for r in rows if r["split"] == "test"]
    assert len(test_rows) == 300
    assert np.mean([r["label"] == r["prediction"] for r in test_rows]) == pytest.approx(test["accuracy"])
    assert test["intervals"]["accuracy"][0] <= test["accuracy"] <= test["intervals"]["accuracy"][1]
    # the contrastive phase moved the body: the saved model differs from the encoder it started from
    assert not np.allclose(body_weights(run / "model"), body_weights(tiny_sentence_encoder))
    assert metrics["timings"]["train_s"] > 0


def test_setfit_refuses_a_model_without_sentence_transformers_modules(tiny_text_models, tmp_path):
    from transferlab.experiments.setfit import run_setfit

    with pytest.raises(TransferlabError, match="not a sentence-transformers model"):
        run_setfit(setfit_config(tiny_text_models["bert"]), tmp_path, progress=False)
    assert not (tmp_path / "setfit").exists()  # refused before any run directory
