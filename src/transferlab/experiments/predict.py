"""Predictors of finished runs: label probabilities for texts from a features run (encoder + saved classifier),
a finetune run (the saved fine-tuned model) or a SetFit run (its tuned body and logistic-regression head, with
the run's label names); ``transferlab predict`` is their command."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from transferlab.errors import TransferlabError
from transferlab.tracking.files import check_links_inside
from transferlab.tracking.rundir import load_run

Predictor = Callable[[Sequence[str]], tuple[np.ndarray, list[str]]]  # texts -> (probabilities, class names)


def read_texts(file: str, column: str = "text") -> list[str]:
    """Texts of ``--file``: one a line, or a CSV / JSON Lines file's ``column`` (read as the data loader reads
    files, so a broken one is named with its line and cause)."""
    from transferlab.data.text import read_records, read_utf8

    path = Path(file)
    if not path.is_file():
        raise TransferlabError(f"--file {file!r} does not exist: give a text file (one text a line), CSV or JSONL")
    if path.suffix.lower() not in (".csv", ".jsonl", ".json"):
        texts = [line.strip() for line in read_utf8(path, "--file").splitlines() if line.strip()]
        if not texts:
            raise TransferlabError(f"--file {file!r} holds no texts")
        return texts
    rows = [row for _, row in read_records(path, what="--file")]
    if not rows or not all(column in r for r in rows):
        found = sorted({k for r in rows for k in r})
        raise TransferlabError(f"--file {file!r} has no {column!r} column; columns found: {', '.join(found)}. "
                               f"Pass --text-column")
    texts = [str(r[column]) for r in rows if str(r[column] or "").strip()]
    if len(texts) < len(rows):  # said, so that no one pairs the output with the input by position
        print(f"note: skipped {len(rows) - len(texts)} row(s) of {file} with an empty {column!r}", file=sys.stderr)
    if not texts:
        raise TransferlabError(f"--file {file!r} holds no texts")
    return texts


def load_predictor(run_dir: str | Path, device: str = "auto", batch_size: int = 32,
                   trust_pickle: bool = False) -> Predictor:
    """A function texts -> (probability of every class, the class names) for the model a run saved. Nothing
    in the run directory runs code: weights are safetensors, the classifier a skops file (an old pickle is
    loaded only with ``trust_pickle``)."""
    from transferlab.models.classifiers import CLASSIFIER_FILE, PICKLE_FILE

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise TransferlabError(f"{run_dir} is not a folder: pass a run directory printed by transferlab "
                               f"features, finetune or setfit")
    check_links_inside(run_dir, ("config.yaml", "metrics.json", "model", CLASSIFIER_FILE, PICKLE_FILE), "run folder")
    config, metrics = load_run(run_dir)
    if metrics.get("experiment") == "setfit" or (run_dir / "model" / "config_setfit.json").is_file():
        saved, load = run_dir / "model", lambda: setfit_predictor(run_dir / "model", device, batch_size)
    elif (run_dir / "model" / "config.json").is_file():
        saved, load = run_dir / "model", lambda: finetuned_predictor(run_dir / "model", device, batch_size)
    elif (run_dir / CLASSIFIER_FILE).is_file() or (run_dir / PICKLE_FILE).is_file():
        saved = run_dir / (CLASSIFIER_FILE if (run_dir / CLASSIFIER_FILE).is_file() else PICKLE_FILE)
        load = lambda: features_predictor(run_dir, device, trust_pickle)  # noqa: E731
    else:
        raise TransferlabError(f"run {run_dir} has no saved model (no model/ or {CLASSIFIER_FILE}): "
                               f"predict takes runs of transferlab features, finetune or setfit")
    try:
        return load()
    except (OSError, ValueError, EOFError, KeyError, pickle.UnpicklingError) as exc:  # deleted weights, a cut file
        raise TransferlabError(f"cannot load the model saved in {saved} ({exc.__class__.__name__}: "
                               f"{(str(exc) or 'unreadable').splitlines()[0]}): the run directory is damaged; "
                               f"rerun the experiment") from None


def finetuned_predictor(model_dir: Path, device: str, batch_size: int) -> Predictor:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from transferlab.models.device import resolve_device

    dev = resolve_device(device, "--device")
    if not list(model_dir.glob("*.safetensors")) and list(model_dir.glob("*.bin")):
        raise TransferlabError(f"{model_dir} holds pickled weights ({next(model_dir.glob('*.bin')).name}), and "
                               f"loading a pickle can run code: predict reads safetensors only; rerun the experiment")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, use_safetensors=True).to(dev).eval()
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    max_length = min(getattr(model.config, "max_position_embeddings", 512) or 512, 512)

    def predict(texts: Sequence[str]):
        probs = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                batch = tokenizer(list(texts[start:start + batch_size]), padding=True, truncation=True,
                                  max_length=max_length, return_tensors="pt").to(dev)
                probs.append(torch.softmax(model(**batch).logits.float(), -1).cpu().numpy())
        return np.concatenate(probs), names

    return predict


def setfit_predictor(model_dir: Path, device: str, batch_size: int) -> Predictor:
    """The SetFit model a run saved (body and head, never a pickle), with the run's label names."""
    from transferlab.experiments.setfit.runner import load_saved_setfit
    from transferlab.models.device import resolve_device

    dev = resolve_device(device, "--device")
    model, label_names = load_saved_setfit(model_dir, str(dev))
    classes = list(getattr(model.model_head, "classes_", []))
    if not classes or not all(isinstance(c, (int, np.integer)) and 0 <= c < len(label_names) for c in classes):
        raise TransferlabError(f"the SetFit head in {model_dir} does not match its {len(label_names)} label names: "
                               f"rerun the experiment")
    names = [str(label_names[int(c)]) for c in classes]

    def predict(texts: Sequence[str]):
        probs = model.predict_proba(list(texts), batch_size=batch_size, as_numpy=True, show_progress_bar=False)
        return np.asarray(probs, dtype=np.float64), names

    return predict


def features_predictor(run_dir: Path, device: str, trust_pickle: bool = False) -> Predictor:
    from transferlab.experiments.features import load_classifier
    from transferlab.models.classifiers import predict_proba
    from transferlab.models.device import bf16_supported, resolve_device
    from transferlab.models.text_encoder import encode, load_encoder

    bundle = load_classifier(run_dir, trust_pickle)
    enc = bundle["encoder"]
    dev = resolve_device(device if device != "auto" else enc.get("device", "auto"), "--device")
    precision = bundle.get("precision", "fp32")
    if precision == "bf16" and not bf16_supported(dev):
        precision = "fp32"
    tokenizer, model = load_encoder(enc["model"], dev)
    pipe = bundle["pipeline"]

    def predict(texts: Sequence[str]):
        vectors = encode(list(texts), tokenizer, model, enc["pooling"], enc["max_length"], enc["batch_size"],
                         precision, progress=False, layers=enc.get("layers", [-1]))
        return predict_proba(pipe, vectors), [bundle["label_names"][int(c)] for c in pipe.classes_]

    return predict
