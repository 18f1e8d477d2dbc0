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


def test_layers_concatenate_each_pooled_hidden_state(encoder):
    tokenizer, model = encoder
    top = encode(TEXTS, tokenizer, model, "mean", progress=False)
    both = encode(TEXTS, tokenizer, model, "mean", progress=False, layers=[-2, -1])
    width = model.config.dim
    assert both.shape == (len(TEXTS), 2 * width)
    np.testing.assert_allclose(both[:, width:], top, atol=1e-5)  # the last layer, as the default gives it
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.inference_mode():
        below = model(**batch, output_hidden_states=True).hidden_states[-2]
    np.testing.assert_allclose(both[:, :width], pool(below, batch["attention_mask"], "mean").numpy(), atol=1e-5)


def test_a_layer_the_model_lacks_is_a_one_line_error(encoder):
    from transferlab.errors import TransferlabError

    tokenizer, model = encoder
    n = model.config.num_hidden_layers
    with pytest.raises(TransferlabError, match=f"encoder.layers: {n + 1} is out of range for a model with {n} layers"):
        encode(TEXTS, tokenizer, model, "mean", progress=False, layers=[n + 1])


def test_layers_are_checked_in_the_config():
    from transferlab.errors import TransferlabError
    from transferlab.models.text_encoder import EncoderConfig

    for bad in ([], [-1, -1]):
        with pytest.raises(TransferlabError, match="encoder.layers must list distinct"):
            EncoderConfig(layers=bad).validate()
