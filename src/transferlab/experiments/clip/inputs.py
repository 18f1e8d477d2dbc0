"""What both CLIP runners start from: the data, the model and its class prompts, and each split's image
embeddings (computed once per run, and across runs from ``model.feature_cache`` when set)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from transferlab.config import to_dict
from transferlab.data.checks import image_split_notes
from transferlab.data.images import ImageData, load_images
from transferlab.errors import TransferlabError
from transferlab.experiments.clip.config import ClipConfig
from transferlab.experiments.lifecycle import open_run
from transferlab.models.device import resolve_device, resolve_precision
from transferlab.models.dual_encoder import DualEncoder, prompts
from transferlab.models.dual_encoder_factory import load_dual_encoder
from transferlab.training.distributed import process_device


SPLITS = ("validation", "test")  # the evaluated splits; "train" is encoded where the run needs it


@dataclass
class Inputs:
    data: ImageData
    model: DualEncoder  # on ``device``, in eval mode
    prompt_sets: list[list[str]]  # per template, one prompt per class
    device: torch.device
    precision: str  # resolved encoding precision (model.precision)
    cast: bool = False  # frozen image encoding with a copy of the model cast to the precision (model.encode_with)
    images_encoded: dict[str, int] = field(default_factory=dict)  # images through a tower in this run, by entry
    notes: list[str] = field(default_factory=list)  # what the data checks found (into metrics.json's notes)


def prepare(config: ClipConfig, experiment: str, resume: str | None = None) -> Inputs:
    """Data, model and prompts; every input error is raised here, before a run directory exists (a
    ``--resume`` given here too: ``zeroshot`` keeps no checkpoints; ``lora`` resolves its own resume)."""
    if resume:
        raise TransferlabError(f"{experiment} runs are not resumable (they keep no checkpoints): "
                               f"start the run again without --resume")
    if config.training.torch_threads:
        torch.set_num_threads(config.training.torch_threads)
    device = process_device(resolve_device(config.training.device, "training.device"))
    precision = resolve_precision(config.model.precision, device, cpu_auto="fp32", key="model.precision")
    data = load_images(config.data, config.seed)
    notes = image_split_notes(data) + data.draw_note()  # the same files in two splits, missing classes; the draw
    model = load_dual_encoder(config.model, data.class_ids, data.class_names).to(device).eval()
    precision = resolve_precision(config.model.precision, device, cpu_auto=model.preferred_cpu_precision,
                                  key="model.precision")  # auto on a CPU: what was measured fastest for it
    return Inputs(data, model, prompts(config.model.templates, data.class_names, data.definitions), device, precision,
                  cast_weights(config.model.encode_with, precision, device), notes=notes)


def cast_weights(encode_with: str, precision: str, device: torch.device) -> bool:
    """Whether frozen image encoding casts a copy of the model (``model.encode_with``; auto: on a GPU)."""
    return precision != "fp32" and (encode_with == "cast" or (encode_with == "auto" and device.type != "cpu"))


@contextlib.contextmanager
def open_clip_run(experiment: str, config: ClipConfig, inputs: Inputs, output_dir, resume_dir: Path | None = None,
                  **resolved):
    """``open_run`` with the CLIP config: the resolved device and precisions recorded in ``config.yaml``; a K-shot
    draw's ``split_manifest.jsonl`` written into the run directory; ``resume_dir``: the run a ``--resume``
    reopens."""
    resolved = dict(to_dict(config), resolved={"device": str(inputs.device), "precision": inputs.precision,
                                               "encode_with": encoding(inputs), **resolved})
    with open_run(experiment, seed=config.seed, output_dir=output_dir, run_name=config.run_name,
                  resolved=resolved, tracking=config.tracking, default_name=config.model.name,
                  resume_dir=resume_dir, cpu=inputs.device.type == "cpu") as ctx:
        if ctx.is_main:
            inputs.data.write_manifest(ctx.path)
        yield ctx


def model_record(config: ClipConfig, inputs: Inputs, **extra) -> dict:
    """The ``model`` entry of ``metrics.json``: the model actually used, named in full."""
    return {"name": config.model.name, "description": inputs.model.description(), "device": str(inputs.device),
            "precision": inputs.precision, "encode_with": encoding(inputs), **extra}


def encoding(inputs: Inputs) -> str:
    """How the frozen images were encoded, in ``model.encode_with``'s words (fp32: neither)."""
    return "fp32" if inputs.precision == "fp32" else "cast" if inputs.cast else "autocast"


def encoding_key(inputs: Inputs) -> dict:
    """What a feature-cache key adds for the encoding: a cast copy's numbers differ from autocast's (nothing
    for autocast and fp32, so their caches keep their keys)."""
    return {"cast": True} if inputs.cast else {}


def split_fingerprint(dataset) -> str:
    """Content key of a split: its image references (with size and mtime for files) and labels."""
    import hashlib
    import os

    h = hashlib.sha256()
    for image, label in zip(dataset["image"], dataset["label"]):
        if isinstance(image, str):
            stat = os.stat(image)
            h.update(f"{image}|{stat.st_size}|{stat.st_mtime_ns}|{label}\n".encode())
        else:
            h.update(repr((image, label)).encode())
    return h.hexdigest()[:16]


def cached_split(folder: Path | None, key: dict, data: ImageData, name: str,
                 compute: Callable[[object, str], np.ndarray], encoded: dict | None = None) -> np.ndarray:
    """One split's rows of an array cached in ``folder`` (``compute(dataset, label)`` on a miss; no folder:
    computed for the split alone). Train and validation, one seeded hold-out of ``data.source``, are read
    from the source's entry, so runs with other seeds (other hold-outs) share one encoding of each image;
    the entry is made when train is asked for (most of the source), and a run that needs validation only
    (``zeroshot``) uses it when it exists, else caches its split alone. A K-shot draw (``data.shots``)
    is rows of the source too. ``encoded`` counts the images actually computed, by label."""
    from transferlab.models.feature_cache import cached, entry_path

    def counted(dataset, label: str) -> np.ndarray:
        values = compute(dataset, label)
        if encoded is not None:
            tag = f"{label} {key.get('view') or ''}".strip()
            encoded[tag] = encoded.get(tag, 0) + len(values)
        return values

    source_key = None
    if folder is not None and data.source is not None and name in data.rows:
        source_key = {**key, "split": "holdout-source", "data": split_fingerprint(data.source)}
    if source_key and (name == "train" or entry_path(folder, source_key).is_file()):
        values, _ = cached(folder, source_key, lambda: counted(data.source, "train+validation"))
        return np.asarray(values)[data.rows[name]]
    split = getattr(data, name)
    key = {**key, "split": name, "data": split_fingerprint(split) if folder else None}
    return np.asarray(cached(folder, key, lambda: counted(split, name))[0])


def encode_splits(inputs: Inputs, config: ClipConfig, names: Sequence[str], use_cache: bool = True,
                  progress: bool = True) -> dict[str, tuple[torch.Tensor, np.ndarray]]:
    """``{split: (embeddings, labels)}`` for the named splits, each image encoded once; reused across runs
    from ``model.feature_cache`` (keyed by weights, preprocessing and data) when set and ``use_cache``."""
    from transferlab.models.feature_cache import weights_fingerprint
    from transferlab.models.zero_shot import image_embeddings

    m, model = config.model, inputs.model
    folder = Path(m.feature_cache).expanduser() if m.feature_cache and use_cache else None
    key = {"kind": "image-embeddings", "model": m.name, "weights": weights_fingerprint(model) if folder else None,
           "image_size": m.image_size, "precision": inputs.precision, **encoding_key(inputs)}
    out = {}
    for name in names:
        embeds = cached_split(folder, key, inputs.data, name, lambda split, label: image_embeddings(
            model, split, m.batch_size, config.data.num_workers, inputs.precision, desc=label,
            progress=progress, cast=inputs.cast)[0].numpy(), inputs.images_encoded)
        out[name] = (torch.from_numpy(embeds), np.asarray(getattr(inputs.data, name)["label"]))
    return out


def image_paths(data: ImageData) -> dict[str, list[str | None]] | None:
    """Per evaluated split, each image's file path (for ``predictions/``); ``None`` for in-memory images."""
    from datasets import Value

    if not all(getattr(data, s).features["image"] == Value("string") for s in SPLITS):
        return None  # decoded images (a Hub data set): nothing to point at
    return {s: list(getattr(data, s)["image"]) for s in SPLITS}
