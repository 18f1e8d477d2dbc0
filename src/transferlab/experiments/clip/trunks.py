"""What the LoRA run trains from: cached image embeddings (image tower frozen), cached trunk outputs
(adapters only in the image tower's last blocks: the frozen part runs once per image and view), or
pixels (adapters from the first block on: end to end).

``image_inputs`` returns the base model's image embeddings of every split (the zero-shot baseline's and
the probe's features) and, in the trunk mode, each split's trunk outputs, the training split's
augmented views (``objective.train_views``) appended; the embeddings are then the base head over the
cached trunk, so no image goes through the trunk twice.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from transferlab.experiments.clip.config import ClipConfig
from transferlab.experiments.clip.inputs import Inputs, cached_split, encode_splits, encoding_key
from transferlab.models.trunk_cache import RANDOM_VIEWS, head_embeddings, trunk_outputs


def training_source(config: ClipConfig, start: int | None) -> str:
    """``embeddings`` (no image-side adapter), ``trunk`` (adapters from block ``start`` > 0 on) or ``pixels``."""
    if not config.objective.cache_image_features:
        return "pixels"
    if start is None:
        return "embeddings"
    return "trunk" if start > 0 else "pixels"


def image_inputs(inputs: Inputs, config: ClipConfig, names: list[str], source: str, start: int | None,
                 use_cache: bool, progress: bool) -> tuple[dict, dict | None]:
    """``(embeddings, trunks)``: ``{split: (base image embeddings, labels)}`` and, for the ``trunk``
    source, ``{split: (trunk outputs, labels)}`` (train with its views appended; else ``None``)."""
    if source != "trunk":
        return encode_splits(inputs, config, names, use_cache=use_cache, progress=progress), None
    trunks = {name: split_trunk(inputs, config, name, start, None, use_cache, progress) for name in names}
    embeddings = {name: (head_embeddings(inputs.model, hidden, start, config.model.batch_size, inputs.precision),
                         labels) for name, (hidden, labels) in trunks.items()}
    if "train" in trunks:
        views = [trunks["train"]] + [split_trunk(inputs, config, "train", start, view, use_cache, progress, i)
                                     for i, view in enumerate(config.objective.train_views)]
        trunks["train"] = (torch.cat([h for h, _ in views]), np.concatenate([y for _, y in views]))
    return embeddings, trunks


def split_trunk(inputs: Inputs, config: ClipConfig, name: str, start: int, view: str | None, use_cache: bool,
                progress: bool, index: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """One split's trunk outputs (of one view, the ``index``-th of ``objective.train_views``: a random view
    named twice is drawn twice), from ``model.feature_cache`` when set."""
    from transferlab.models.feature_cache import weights_fingerprint

    m, model = config.model, inputs.model
    folder = Path(m.feature_cache).expanduser() if m.feature_cache and use_cache else None
    weights = weights_fingerprint(model.get_submodule(model.towers["vision"])) if folder else None  # the trunk's
    base = config.seed if config.objective.view_seed is None else config.objective.view_seed
    seed = base + (1 + index if view else 0)
    key = {"kind": "image-trunk", "model": m.name, "weights": weights, "image_size": m.image_size, "start": start,
           "view": view, "seed": seed if view in RANDOM_VIEWS else None, "precision": inputs.precision,
           **encoding_key(inputs)}
    if getattr(model, "family", "clip") != "clip":  # SigLIP's cached "trunk" was its pixels until it was split
        key["trunk_split"] = 2
    hidden = cached_split(folder, key, inputs.data, name, lambda split, label: trunk_outputs(
        model, split, start, view, seed, m.batch_size, config.data.num_workers, inputs.precision,
        desc=f"{label} {view or ''}".strip(), progress=progress, cast=inputs.cast)[0].numpy(), inputs.images_encoded)
    return torch.from_numpy(hidden), np.asarray(getattr(inputs.data, name)["label"])
