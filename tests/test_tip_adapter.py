"""Tip-Adapter and Tip-Adapter-F (models.tip_adapter): the blend, the cache, the alpha/beta search, the fine-tuning."""

import numpy as np
import torch
import torch.nn.functional as F

from transferlab.models.tip_adapter import (cache_logits, cache_model, finetune_keys, search_alpha_beta,
                                            tip_logits)


def clustered(n_per_class: int, n_classes: int = 4, dim: int = 16, noise: float = 0.3, seed: int = 0):
    """Features around one random centre per class, their labels, and the centres."""
    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(n_classes, dim, generator=g), dim=-1)
    labels = np.repeat(np.arange(n_classes), n_per_class)
    return centres[labels] + noise * torch.randn(len(labels), dim, generator=g), labels, centres


def test_alpha_zero_is_zero_shot_exactly():
    x, y, centres = clustered(3)
    keys, values = cache_model(x, y, 4)
    zero_shot = 14.3 * F.normalize(torch.randn(len(x), 16), dim=-1) @ centres.T
    for beta in (0.5, 5.5, 7.0):
        assert torch.equal(tip_logits(zero_shot, x, keys, values, 0.0, beta), zero_shot)


def test_cache_is_one_hot_values_over_normalised_keys():
    x, y, _ = clustered(2)
    keys, values = cache_model(x * 5.0, y, 4)
    assert torch.allclose(keys.norm(dim=-1), torch.ones(len(x)))
    assert values.sum(1).eq(1).all() and (values.argmax(1).numpy() == y).all()
    # each key is its own best match: affinity exp(0) = 1, and a large beta leaves only that one
    logits = cache_logits(x, keys, values, beta=200.0)
    assert (logits.argmax(1).numpy() == y).all()
    assert torch.allclose(logits.max(1).values, torch.ones(len(x)), atol=1e-3)


def test_search_takes_the_cache_when_zero_shot_is_wrong_and_not_when_it_is_right():
    train, y_train, centres = clustered(4, seed=1)
    val, y_val, _ = clustered(2, seed=1)
    val = val + 0.01  # other points around the same centres
    keys, values = cache_model(train, y_train, 4)
    wrong = 10.0 * torch.roll(torch.eye(4), 1, dims=1)[y_val]  # zero-shot confidently one class off
    alpha, beta, record = search_alpha_beta(wrong, val, y_val, keys, values, [0.0, 1.0, 100.0], [1.0, 5.0])
    assert alpha == 100.0 and record["validation_accuracy"] > 0.9 and len(record["grid"]) == 6
    right = 10.0 * torch.eye(4)[y_val]
    alpha, beta, record = search_alpha_beta(right, val, y_val, keys, values, [0.0, 1.0, 100.0], [1.0, 5.0])
    assert (alpha, beta) == (0.0, 1.0) and record["validation_accuracy"] == 1.0  # a tie goes to the first point


def test_finetuned_keys_lower_the_training_loss_and_are_seeded():
    x, y, centres = clustered(4, noise=0.8, seed=2)
    keys, values = cache_model(x, y, 4)
    zero_shot = torch.zeros(len(x), 4)
    tuned, losses = finetune_keys(keys, values, x, zero_shot, y, alpha=1.0, beta=1.0, epochs=20,
                                  learning_rate=1e-2, batch_size=5, seed=0)
    assert tuned.shape == keys.shape and not torch.equal(tuned, keys)
    assert len(losses) == 20 and losses[-1] < losses[0]
    again, _ = finetune_keys(keys, values, x, zero_shot, y, 1.0, 1.0, 20, 1e-2, 5, seed=0)
    assert torch.equal(tuned, again)
    assert torch.equal(keys, cache_model(x, y, 4)[0])  # the training-free cache is left as it was
