"""K-shot draws: exactly K per class, nested within a seed, reproducible, validation apart from train."""

from __future__ import annotations

import numpy as np
import pytest

from transferlab.data.fewshot import fewshot_split, shot_indices
from transferlab.data.rotten_tomatoes import load_rotten_tomatoes
from transferlab.errors import TransferlabError


@pytest.fixture(scope="module")
def labels():
    return np.asarray(load_rotten_tomatoes()["train"]["label"])  # the real 8,530 training labels


@pytest.mark.parametrize("shots", [1, 8, 64])
def test_each_class_gets_exactly_k(labels, shots):
    chosen = shot_indices(labels, shots, seed=0)
    assert len(set(chosen.tolist())) == len(chosen) == 2 * shots
    assert np.bincount(labels[chosen]).tolist() == [shots, shots]


def test_draws_are_nested_within_a_seed_and_reproducible(labels):
    draws = [set(shot_indices(labels, k, seed=3).tolist()) for k in (1, 2, 4, 8, 16)]
    assert all(small < large for small, large in zip(draws, draws[1:]))
    assert set(shot_indices(labels, 8, seed=3).tolist()) == draws[3]  # same seed, same draw
    assert set(shot_indices(labels, 8, seed=4).tolist()) != draws[3]  # another seed, another draw


def test_independent_draws_are_not_nested(labels):
    one, two = (set(shot_indices(labels, k, seed=0, nested=False).tolist()) for k in (16, 32))
    assert not one < two


def test_validation_is_small_apart_from_train_and_nested(labels):
    train, val = fewshot_split(labels, 8, seed=1)
    assert np.bincount(labels[val]).tolist() == [4, 4]  # min(K, 4) per class
    assert not set(train.tolist()) & set(val.tolist())
    train2, val2 = fewshot_split(labels, 2, seed=1)
    assert set(train2.tolist()) < set(train.tolist()) and set(val2.tolist()) < set(val.tolist())
    assert np.array_equal(train, shot_indices(labels, 8, seed=1))
    assert len(fewshot_split(labels, 8, seed=1, validation_shots=0)[1]) == 0


def test_too_many_shots_is_one_clear_error():
    labels = np.array([0] * 5 + [1] * 3)
    with pytest.raises(TransferlabError, match="class 1 has 3"):
        shot_indices(labels, 4, seed=0)
    with pytest.raises(TransferlabError, match="with 2 for validation"):
        fewshot_split(labels, 2, seed=0)
    with pytest.raises(TransferlabError, match="positive integer"):
        shot_indices(labels, 0, seed=0)
