"""On-disk cache of sentence vectors, keyed by everything that changes them.

Key: the model's weights (a hash of every parameter), its reference, pooling, max length,
precision, the data set split's content fingerprint and the split name. A changed input is a new
key, so a stale vector is never served.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch


def weights_fingerprint(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def cache_key(**parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def cached(folder: str | Path | None, key_parts: dict, compute: Callable[[], np.ndarray]) -> tuple[np.ndarray, bool]:
    """(vectors, hit): loads ``<folder>/<key>.npy`` if present, else computes and stores it."""
    if folder is None:
        return compute(), False
    folder = Path(folder)
    key = cache_key(**key_parts)
    path = folder / f"{key}.npy"
    if path.is_file():
        return np.load(path), True
    vectors = compute()
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"{key}.tmp.npy"
    np.save(tmp, vectors)
    tmp.replace(path)
    (folder / f"{key}.json").write_text(json.dumps(key_parts, indent=1, default=str))
    return vectors, False
