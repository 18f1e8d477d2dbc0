"""Balanced K-shot draws: K labelled examples of every class, seeded, nested across K by default.

The few-shot protocol of CLIP-LoRA, CoOp, Tip-Adapter and SetFit: train on exactly ``shots`` examples of
each class. Within one seed, each class's pool is put in one seeded order and a draw takes its first
``shots`` examples, so the K = 2 draw contains the K = 1 draw (``nested=True``, the default).
``nested=False`` orders each class anew for every K (independent draws).

A few-shot user has no large labelled validation set, so :func:`fewshot_split` also draws a validation
set of the same small size (``min(shots, 4)`` per class by default) from the END of the same order:
it never shares an example with the train draw, and it is nested too.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from transferlab.errors import TransferlabError

DEFAULT_VALIDATION_SHOTS = 4


def class_orders(labels: Sequence[int], seed: int, shots: int | None = None) -> dict[int, np.ndarray]:
    """Each class's indices in one seeded order; ``shots`` enters the seed only for independent draws."""
    labels = np.asarray(labels)
    orders = {}
    for label in np.unique(labels):
        key = [int(seed), int(label)] + ([] if shots is None else [int(shots)])
        rng = np.random.default_rng(np.random.SeedSequence(key))
        orders[int(label)] = rng.permutation(np.flatnonzero(labels == label))
    return orders


def check_shots(shots: int, needed: int, orders: dict[int, np.ndarray], what: str = "shots") -> None:
    if isinstance(shots, bool) or not isinstance(shots, (int, np.integer)) or shots < 1:
        raise TransferlabError(f"{what} must be a positive integer (examples per class), got {shots!r}")
    short = {label: len(order) for label, order in orders.items() if len(order) < needed}
    if short:
        label, size = min(short.items(), key=lambda item: item[1])
        raise TransferlabError(f"{what}: {shots} needs {needed} examples of every class, but class {label} has "
                               f"{size} ({len(short)} classes are short): choose fewer shots")


def shot_indices(labels: Sequence[int], shots: int, seed: int, *, nested: bool = True) -> np.ndarray:
    """Sorted indices of ``shots`` examples of every class in ``labels``."""
    orders = class_orders(labels, seed, None if nested else shots)
    check_shots(shots, shots, orders)
    return np.sort(np.concatenate([order[:shots] for order in orders.values()]))


def fewshot_split(labels: Sequence[int], shots: int, seed: int, *, nested: bool = True,
                  validation_shots: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(train, validation)`` sorted indices: ``shots`` per class to train on, ``validation_shots`` per class
    (default ``min(shots, 4)``) to choose settings on, disjoint, both from the same pool."""
    validation_shots = min(shots, DEFAULT_VALIDATION_SHOTS) if validation_shots is None else validation_shots
    if isinstance(validation_shots, bool) or not isinstance(validation_shots, (int, np.integer)) \
            or validation_shots < 0:
        raise TransferlabError(f"validation_shots must be a whole number >= 0, got {validation_shots!r}")
    orders = class_orders(labels, seed, None if nested else shots)
    check_shots(shots, shots + validation_shots, orders, f"shots (with {validation_shots} for validation)")
    train = [order[:shots] for order in orders.values()]
    validation = [order[len(order) - validation_shots:] for order in orders.values()] if validation_shots else []
    return (np.sort(np.concatenate(train)),
            np.sort(np.concatenate(validation)) if validation else np.array([], dtype=np.int64))
