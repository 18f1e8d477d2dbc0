"""Experiment 3a: zero-shot classification of Tiny ImageNet with class prompts.

Reads top to bottom: data, model and prompts (every input error before a run directory exists); the
validation and test images encoded once; the class embeddings once; scores with the model family's
scoring (``baselines.zero_shot``: CLIP's softmax, SigLIP's sigmoid with its bias); results. The library
steps are in ``transferlab.models.zero_shot``.
"""

from __future__ import annotations

import time
from pathlib import Path

from transferlab.evaluation.results import summary_line, write_results
from transferlab.evaluation.schema import RunMetrics
from transferlab.experiments.clip.baselines import evaluated_splits, zero_shot
from transferlab.experiments.clip.config import ClipConfig
from transferlab.experiments.clip.inputs import Inputs, encode_splits, image_paths, model_record, open_clip_run, prepare
from transferlab.experiments.lifecycle import RunContext

EXPERIMENT = "zeroshot"
METHOD = "zero_shot"


def run_zeroshot(config: ClipConfig, output_dir: str | Path = "logs", *, resume: str | None = None,
                 progress: bool = True) -> Path | None:
    inputs = prepare(config, EXPERIMENT, resume)
    with open_clip_run(EXPERIMENT, config, inputs, output_dir) as ctx:
        if ctx.is_main:  # nothing to share: other processes of a multi-process launch stay idle
            ctx.save_metrics(evaluate(ctx, config, inputs, progress))
    return ctx.path if ctx.is_main else None


def evaluate(ctx: RunContext, config: ClipConfig, inputs: Inputs, progress: bool) -> RunMetrics:
    data = inputs.data
    start = time.perf_counter()
    splits = evaluated_splits(config)  # score_test=false: validation only
    encoded = encode_splits(inputs, config, splits, progress=progress)
    encode_s = time.perf_counter() - start
    timings = {"encode_images_s": round(encode_s, 2)}
    methods = {METHOD: zero_shot(inputs, encoded, config, timings)[1]}
    n_images = sum(len(y) for _, y in encoded.values())
    metrics = RunMetrics(
        experiment=EXPERIMENT, model=model_record(config, inputs), primary=METHOD,
        methods=write_results(ctx.path, ctx.tracker, methods, data.class_names, primary=METHOD, top_k=(1, 5),
                              examples=image_paths(data), evaluation=config.evaluation),
        n_classes=len(data.class_names), n_examples={s: len(y) for s, (_, y) in encoded.items()},
        timings=timings, notes=list(inputs.notes),
        details={"prompts": inputs.prompt_sets[0][:3], "scoring": inputs.model.scoring,
                 "skipped_unreadable_images": data.skipped,
                 "images_per_second": round(n_images / max(encode_s, 1e-9), 1)})
    print("zero-shot top-1 (95% interval): " + ", ".join(summary_line(metrics.result, s) for s in splits)
          + f" ({len(data.class_names)} classes)")
    return metrics
