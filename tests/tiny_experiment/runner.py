"""The tiny experiment's runner: TF-IDF vectors of the texts, a ridge classifier, scored as every run is."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from transferlab.config import to_dict
from transferlab.data.text import load_text_data
from transferlab.errors import TransferlabError
from transferlab.evaluation.results import write_results
from transferlab.evaluation.schema import RunMetrics
from transferlab.experiments.lifecycle import open_run, set_seed

from tiny_experiment.config import RidgeConfig

EXPERIMENT = "ridge"


def probabilities(model, x) -> np.ndarray:
    scores = model.decision_function(x)
    scores = np.stack([-scores, scores], axis=1) if scores.ndim == 1 else scores
    exp = np.exp(scores - scores.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def run_ridge(config: RidgeConfig, output_dir: str | Path = "logs", *, resume: str | None = None,
              progress: bool = True) -> Path:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import RidgeClassifier

    if resume:
        raise TransferlabError("ridge runs do not resume: run again without --resume")
    set_seed(config.seed)
    data = load_text_data(config.data, seed=config.seed)
    with open_run(EXPERIMENT, seed=config.seed, output_dir=output_dir, run_name=config.run_name,
                  resolved=to_dict(config), tracking=config.tracking, default_name="ridge", cpu=True) as ctx:
        vectorizer = TfidfVectorizer().fit(data.splits["train"]["text"])
        model = RidgeClassifier(alpha=config.alpha).fit(vectorizer.transform(data.splits["train"]["text"]),
                                                        data.splits["train"]["label"])
        splits = ("validation", "test") if config.score_test else ("validation",)
        predictions = {EXPERIMENT: {}}
        for split in splits:
            x = vectorizer.transform(data.splits[split]["text"])
            predictions[EXPERIMENT][split] = (np.asarray(data.splits[split]["label"]), model.predict(x),
                                              probabilities(model, x))
        metrics = RunMetrics(
            experiment=EXPERIMENT, primary=EXPERIMENT, model={"name": "tfidf-ridge", "alpha": config.alpha},
            methods=write_results(ctx.path, ctx.tracker, predictions, data.label_names, primary=EXPERIMENT,
                                  examples={s: data.splits[s]["text"] for s in splits}, evaluation=config.evaluation),
            n_classes=len(data.label_names), n_examples={s: len(data.splits[s]) for s in data.splits},
            notes=data.notes)
        ctx.save_metrics(metrics)
    return ctx.path
