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


@pytest.fixture(scope="module")
def setfit_run(tiny_sentence_encoder, tmp_path_factory) -> Path:
    from transferlab.experiments.setfit import run_setfit

    return run_setfit(setfit_config(tiny_sentence_encoder), tmp_path_factory.mktemp("setfit-logs"), progress=False)


@pytest.mark.slow
def test_setfit_trains_the_body_and_scores_the_whole_test_split(tiny_sentence_encoder, setfit_run):
    run = setfit_run
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


@pytest.mark.slow
def test_setfit_refuses_a_model_without_sentence_transformers_modules(tiny_text_models, tmp_path):
    from transferlab.experiments.setfit import run_setfit

    with pytest.raises(TransferlabError, match="not a sentence-transformers model"):
        run_setfit(setfit_config(tiny_text_models["bert"]), tmp_path, progress=False)
    assert not (tmp_path / "setfit").exists()  # refused before any run directory


@pytest.mark.slow
def test_predict_on_a_setfit_run_gives_the_runs_own_test_predictions(setfit_run, capsys):
    """predict loads the tuned body and the fitted head (skops; SetFit's pickle is not kept) with the run's
    label names, and gives what the run recorded for its test examples: same label, same probability."""
    from transferlab.cli import main

    model = setfit_run / "model"
    assert (model / "head.skops").is_file() and not (model / "model_head.pkl").exists()
    rows = [json.loads(line) for line in (setfit_run / "predictions" / "setfit.jsonl").open()]
    test_rows = [r for r in rows if r["split"] == "test"][:6]
    assert main(["predict", str(setfit_run), "--format", "jsonl", *[a for r in test_rows
                                                                   for a in ("--text", r["example"])]]) == 0
    predicted = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [p["prediction"] for p in predicted] == [r["prediction"] for r in test_rows]
    assert {p["prediction"] for p in predicted} <= {"neg", "pos"}  # the run's label names, not LABEL_0/LABEL_1
    assert [p["probability"] for p in predicted] == pytest.approx([r["probability"] for r in test_rows], abs=1e-4)


@pytest.mark.slow
def test_predict_refuses_a_setfit_head_that_is_a_pickle_or_holds_other_types(setfit_run, tmp_path, capsys):
    """A SetFit model folder whose head is SetFit's own pickle, or a skops file of another type, is refused with
    one line: nothing in a run directory runs code."""
    import shutil

    from fractions import Fraction

    import skops.io as sio
    from sklearn.linear_model import LogisticRegression
    from sklearn.tree import DecisionTreeClassifier

    from transferlab.cli import main

    def refused(run: Path) -> str:
        assert main(["predict", str(run), "--text", "a fine film"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ")
        return err[0]

    pickled = shutil.copytree(setfit_run, tmp_path / "pickled")
    (pickled / "model" / "head.skops").rename(pickled / "model" / "model_head.pkl")
    assert "model_head.pkl, which predict does not load" in refused(pickled)
    other = shutil.copytree(setfit_run, tmp_path / "other")
    sio.dump({"head": DecisionTreeClassifier(), "label_names": ["neg", "pos"]}, other / "model" / "head.skops")
    assert "does not hold a transferlab SetFit head" in refused(other)
    sio.dump({"head": LogisticRegression(), "label_names": ["neg", "pos"], "x": Fraction(1, 2)},
             other / "model" / "head.skops")
    assert "holds types transferlab never saves (fractions.Fraction)" in refused(other)
