import numpy as np
import pytest
import torch

from transferlab.models.text_encoder import encode, load_encoder, pool


@pytest.fixture(scope="module")
def encoder(tiny_distilbert):
    return load_encoder(str(tiny_distilbert), torch.device("cpu"))


TEXTS = ["a gorgeous , witty , seductive movie .",
         "the film is strictly routine .",
         "if you sometimes like to go to the movies to have fun , wasabi is a good place to start .",
         "bad ."]


def test_mean_pooling_ignores_padding(encoder):
    tokenizer, model = encoder
    alone = encode(TEXTS[3:], tokenizer, model, "mean", batch_size=1, progress=False)
    padded = encode(TEXTS, tokenizer, model, "mean", batch_size=4, progress=False)  # padded to the longest
    np.testing.assert_allclose(alone[0], padded[3], atol=1e-5)


def test_batching_and_order_do_not_change_vectors(encoder):
    tokenizer, model = encoder
    one_by_one = np.stack([encode([t], tokenizer, model, "cls", progress=False)[0] for t in TEXTS])
    batched = encode(TEXTS, tokenizer, model, "cls", batch_size=2, progress=False)
    reversed_ = encode(TEXTS[::-1], tokenizer, model, "cls", batch_size=3, progress=False)[::-1]
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    np.testing.assert_allclose(reversed_, one_by_one, atol=1e-5)


def test_pool_definitions():
    hidden = torch.arange(2 * 3 * 2, dtype=torch.float32).reshape(2, 3, 2)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    assert torch.equal(pool(hidden, mask, "cls"), hidden[:, 0])
    assert torch.allclose(pool(hidden, mask, "mean"), torch.stack([hidden[0, :2].mean(0), hidden[1].mean(0)]))


def test_truncation_at_max_length(encoder):
    tokenizer, model = encoder
    long = " ".join(["movie"] * 300)
    out = encode([long], tokenizer, model, "mean", max_length=16, progress=False)
    assert out.shape == (1, model.config.dim) and np.isfinite(out).all()
