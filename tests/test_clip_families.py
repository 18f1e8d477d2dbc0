"""Dual-encoder families against the library itself: tiny random CLIP, SigLIP and SigLIP 2 (NaFlex) models built
from their config classes and saved; transferlab's zero-shot probabilities equal the model's own on real images
(softmax of ``logits_per_image`` for CLIP, its sigmoid for SigLIP, with a nonzero bias); the sigmoid objective
equals SigLIP's own pairwise loss; the trunk/head split gives the whole tower; every command runs on each."""

import json
from pathlib import Path

import datasets
import pytest
import torch

from clip_fixtures import tiny_clip, tiny_siglip, tiny_siglip2
from transferlab.cli import main
from transferlab.data.images import DEMO_PATH, open_rgb
from transferlab.errors import TransferlabError
from transferlab.config import load_config
from transferlab.experiments.clip.config import ClipConfig, ModelConfig
from transferlab.models.clip_hf import Siglip2DualEncoder, SiglipDualEncoder
from transferlab.models.clip_losses import LOSSES
from transferlab.models.dual_encoder_factory import load_dual_encoder
from transferlab.models.prompt_classifier import PromptClassifier
from transferlab.models.zero_shot import class_embeddings, class_probabilities, image_embeddings, reported_scores

BUILDERS = {"clip": tiny_clip, "siglip": tiny_siglip, "siglip2": tiny_siglip2}
NAMES = ["goldfish", "European fire salamander", "bullfrog", "tailed frog"]
TEMPLATE = "a photo of a {name}."


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    return {family: build(tmp_path_factory.mktemp(family)) for family, build in BUILDERS.items()}


@pytest.fixture(scope="module")
def images() -> list[str]:
    """Six real Tiny ImageNet images from the vendored demo subset (64 x 64)."""
    files = sorted((Path(DEMO_PATH) / "val").rglob("*.JPEG"))
    assert len(files) >= 6
    return [str(f) for f in files[:6]]


def load(folder: Path):
    return load_dual_encoder(ModelConfig(name=str(folder))).eval()


def library_probabilities(model, paths: list, texts: list[str], bias: float = 0.0) -> torch.Tensor:
    """The model's own probabilities from its processor and forward: softmax / sigmoid of ``logits_per_image``."""
    pil = [open_rgb(p) for p in paths]
    padding = "max_length" if model.family != "clip" else True  # SigLIP's processor docs: max_length
    inputs = model.processor(text=texts, images=pil, padding=padding, truncation=True, return_tensors="pt")
    with torch.no_grad():
        logits = model.model(**inputs).logits_per_image - bias
    return torch.sigmoid(logits) if model.family != "clip" else logits.softmax(-1)


def transferlab_probabilities(model, paths: list, texts: list[str]):
    """What ``transferlab zeroshot`` computes: class embeddings once, images in lazily decoded batches."""
    split = datasets.Dataset.from_dict({"image": paths, "label": [0] * len(paths)})
    embeds, _ = image_embeddings(model, split, batch_size=4, progress=False)
    return class_probabilities(model, embeds, class_embeddings(model, [texts]))


@pytest.mark.slow
@pytest.mark.parametrize("family", list(BUILDERS))
def test_zero_shot_probabilities_are_the_models_own(folders, images, family):
    model = load(folders[family])
    assert model.family == family
    paths = images[:5] + [images[5]]
    texts = [TEMPLATE.format(name=n) for n in NAMES]
    ours = torch.as_tensor(transferlab_probabilities(model, paths, texts))
    theirs = library_probabilities(model, paths, texts)
    assert ours.shape == (6, 4)
    assert torch.allclose(ours, theirs, atol=1e-5), (ours - theirs).abs().max()
    if family == "clip":
        assert torch.allclose(ours.sum(1), torch.ones(6), atol=1e-5)
    else:  # the bias counts: the same sigmoid without it is another answer
        bias = float(model.model.logit_bias.detach())
        assert bias == pytest.approx(-2.0)
        assert not torch.allclose(ours, library_probabilities(model, paths, texts, bias=bias), atol=1e-2)


def test_naflex_images_of_other_shapes_keep_their_masks(folders, images):
    """A non-square image takes fewer patches: its padding is masked in the model, not encoded as patches."""
    model = load(folders["siglip2"])
    wide = open_rgb(images[0]).crop((0, 0, 64, 24))
    packed = model.preprocess([wide, open_rgb(images[1])])
    inputs = model.processor(images=[wide, open_rgb(images[1])], return_tensors="pt")
    assert (inputs["pixel_attention_mask"][0] == 0).any() and (inputs["pixel_attention_mask"][1] == 1).all()
    with torch.no_grad():
        ours = model.encode_images(packed)
        theirs = model.model.get_image_features(**inputs).pooler_output
    assert torch.allclose(ours, theirs, atol=1e-5)


@pytest.mark.parametrize("family", list(BUILDERS))
def test_trunk_and_head_give_the_whole_tower(folders, images, family):
    model = load(folders[family])
    pil = [open_rgb(p) for p in images[:3]] + [open_rgb(images[3]).crop((0, 0, 64, 40))]
    pixels = model.preprocess(pil)
    with torch.no_grad():
        whole = model.encode_images(pixels)
        for start in (0, 1, 2):
            assert torch.allclose(model.image_head(model.image_trunk(pixels, start), start), whole, atol=1e-5)


def test_sigmoid_objective_equals_siglips_own_loss(folders, images):
    """One image per class, those classes the only ones: the class-level sigmoid loss is SigLIP's pairwise loss."""
    model = load(folders["siglip"])
    texts = [TEMPLATE.format(name=n) for n in NAMES]
    pil = [open_rgb(p) for p in images[:4]]
    inputs = model.processor(text=texts, images=pil, padding="max_length", truncation=True, return_tensors="pt")
    classifier = PromptClassifier(model, [texts]).eval()  # objective auto: the family's own
    assert classifier.loss == "sigmoid"
    with torch.no_grad():
        theirs = model.model(**inputs, return_loss=True).loss
        ours = classifier(labels=torch.arange(4), pixel_values=model.preprocess(pil))["loss"]
        direct = LOSSES["sigmoid"](model.logits(model.encode_images(inputs["pixel_values"]),
                                                model.encode_texts(**model.tokenize(texts))), torch.arange(4))
    assert float(theirs) > 0.1
    assert torch.allclose(ours, theirs, atol=1e-5) and torch.allclose(direct, theirs, atol=1e-5)


def test_sigmoid_objective_never_pushes_same_class_images_apart():
    classes = torch.nn.functional.normalize(torch.eye(3, 8), dim=-1)
    labels = torch.tensor([0, 0, 1, 2])
    torch.manual_seed(0)
    noisy = torch.nn.functional.normalize(classes[labels] + 0.3 * torch.randn(4, 8), dim=-1).requires_grad_(True)
    LOSSES["sigmoid"](10.0 * noisy @ classes.T - 2.0, labels).backward()
    moved = torch.nn.functional.normalize(noisy - 0.5 * noisy.grad, dim=-1)
    assert torch.dot(moved[0], moved[1]) >= torch.dot(noisy[0], noisy[1]) - 1e-6


def test_reported_scores_keep_the_bias_and_sum_to_one(folders):
    model = load(folders["siglip"])
    logits = torch.tensor([[1.0, -1.0, -3.0], [-4.0, -4.5, -20.0]]).numpy()
    scores = reported_scores(model, logits)
    sig = torch.sigmoid(torch.as_tensor(logits)).double()
    assert torch.allclose(torch.as_tensor(scores), sig / sig.sum(1, keepdim=True), atol=1e-12)
    assert not torch.allclose(torch.as_tensor(scores), torch.as_tensor(logits).double().softmax(1), atol=1e-3)


def test_an_unknown_family_is_one_line(tmp_path, capsys):
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(tmp_path / "bert")
    with pytest.raises(TransferlabError, match="clip .*siglip .*siglip2"):
        load(tmp_path / "bert")
    assert main(["zeroshot", "--output-dir", str(tmp_path / "out"), f"model.name={tmp_path / 'bert'}"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "bert checkpoint" in errors[0] and "Siglip2Model" in errors[0]


@pytest.mark.parametrize("family", list(BUILDERS))
def test_a_cast_copy_encodes_as_the_model_loaded_in_bf16_and_leaves_the_model_alone(folders, images, family):
    """``model.encode_with=cast``: the embeddings equal the library's own model cast to bf16 (a bare
    ``get_image_features`` loop, what the GPU benchmark compares against), stay close to autocast's, and the
    model itself keeps its fp32 weights; the cached trunk of the cast copy gives the same tower."""
    from transferlab.models.clip_hf import pooled, unpack_naflex
    from transferlab.models.trunk_cache import head_embeddings, trunk_outputs
    from transferlab.models.zero_shot import encode_pixel_batches

    model = load(folders[family])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pixels = model.preprocess([open_rgb(p) for p in images[:4]])
    cast = encode_pixel_batches(model, [pixels[:3], pixels[3:]], "bf16", cast=True)
    autocast = encode_pixel_batches(model, [pixels], "bf16")
    bare_model = load(folders[family]).model.to(torch.bfloat16)
    with torch.inference_mode():
        if family == "siglip2":
            patches, mask, shapes = unpack_naflex(pixels)
            bare = pooled(bare_model.get_image_features(pixel_values=patches.bfloat16(), pixel_attention_mask=mask,
                                                        spatial_shapes=shapes))
        else:
            bare = pooled(bare_model.get_image_features(pixel_values=pixels.bfloat16()))
    torch.testing.assert_close(cast, bare.float(), rtol=0, atol=0)
    assert torch.nn.functional.cosine_similarity(cast, autocast).min() > 0.99
    assert not torch.equal(cast, autocast)  # two ways, both close to fp32
    assert all(v.dtype == before[k].dtype and torch.equal(v, before[k]) for k, v in model.state_dict().items())
    split = datasets.Dataset.from_dict({"image": images[:4], "label": [0, 1, 2, 3]})
    hidden, _ = trunk_outputs(model, split, 1, batch_size=3, precision="bf16", progress=False, cast=True)
    whole, _ = image_embeddings(model, split, batch_size=3, precision="bf16", progress=False, cast=True)
    assert hidden.dtype == torch.float32 and torch.equal(whole, cast)
    head = head_embeddings(model, hidden, 1, precision="fp32")  # the trained head runs on the cast trunk
    assert torch.nn.functional.cosine_similarity(head, whole).min() > 0.99


def test_encode_with_auto_casts_on_a_gpu_only_and_never_at_fp32():
    from transferlab.experiments.clip.inputs import cast_weights

    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert cast_weights("auto", "bf16", gpu) and not cast_weights("auto", "bf16", cpu)
    assert cast_weights("cast", "bf16", cpu) and not cast_weights("autocast", "fp16", gpu)
    assert not any(cast_weights(mode, "fp32", d) for mode in ("auto", "cast") for d in (cpu, gpu))
    with pytest.raises(TransferlabError, match="model.encode_with"):
        load_config(ClipConfig, "clip", "offline", ["model.encode_with=pure_bf16"])


def cli_args(folder: Path, tree: Path, out: Path) -> list[str]:
    return ["--output-dir", str(out), f"model.name={folder}", f"data.path={tree}", "data.val_per_class=2",
            "model.batch_size=8", "model.precision=fp32"]


def last_run(capsys) -> Path:
    return Path(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("family", list(BUILDERS))
def test_zeroshot_end_to_end(folders, tree, tmp_path, capsys, family):
    assert main(["zeroshot"] + cli_args(folders[family], tree, tmp_path)) == 0
    run = last_run(capsys)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["model"]["description"].startswith(f"{family} dual encoder")
    assert metrics["details"]["scoring"] == ("softmax" if family == "clip" else "sigmoid")
    assert metrics["n_examples"] == {"validation": 6, "test": 6}
    rows = [json.loads(line) for line in (run / "predictions" / "zero_shot.jsonl").read_text().splitlines()]
    assert all(0 < r["probability"] <= 1 for r in rows)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["siglip", "siglip2"])
def test_lora_probe_and_tip_adapter_end_to_end(folders, tree, tmp_path, capsys, family):
    """A 2-shot run on the last blocks: baselines on the base model, LoRA from cached trunk outputs with the
    family's sigmoid objective."""
    args = ["lora"] + cli_args(folders[family], tree, tmp_path) + [
        "data.shots=2", "lora.towers=both", "lora.target_modules=[q_proj,v_proj]", "lora.train_projection=false",
        "lora.layers=[-1]", "training.max_steps=2", "training.batch_size=4", "training.learning_rate=0.01",
        "training.precision=fp32", "probe.c_grid=[1.0]", "tip_adapter.epochs=2", "objective.loss=auto"]
    assert main(args) == 0
    metrics = json.loads((last_run(capsys) / "metrics.json").read_text())
    assert list(metrics["methods"]) == ["zero_shot", "zero_shot_single_template", "linear_probe", "tip_adapter",
                                        "tip_adapter_f", "lora"]
    details = metrics["details"]
    assert details["loss"] == "sigmoid" and details["training_source"] == "trunk"
    assert details["trunk_start_block"] == 1 and details["global_step"] == 2
    assert details["lora_by_tower"] == details["lora_formula_by_tower"] == {"vision": 1024, "text": 1024}


def test_data_path_override_replaces_the_presets_hub_id(tmp_path):
    config = load_config(ClipConfig, "clip", "paper", [f"data.path={tmp_path}"])
    assert config.data.path == str(tmp_path) and config.data.hub_id is None and config.data.hub_test_id is None
    hub = load_config(ClipConfig, "clip", "offline", ["data.hub_id=zh-plus/tiny-imagenet"])
    assert hub.data.hub_id == "zh-plus/tiny-imagenet" and hub.data.path is None
    with pytest.raises(TransferlabError, match="not both"):  # both given by the user: still refused
        load_config(ClipConfig, "clip", "paper", [f"data.path={tmp_path}", "data.hub_id=x/y"])


@pytest.mark.slow
def test_zeroshot_with_the_paper_preset_on_a_folder(clip_folder, tree, tmp_path, capsys):
    assert main(["zeroshot", "--config", "paper", "--output-dir", str(tmp_path), f"data.path={tree}",
                 f"model.name={clip_folder}", "data.val_per_class=2", "data.num_workers=0"]) == 0
    run = Path(capsys.readouterr().out.strip().splitlines()[-1])
    config = json.loads(json.dumps(__import__("yaml").safe_load((run / "config.yaml").read_text())))
    assert config["data"]["path"] == str(tree) and config["data"]["hub_id"] is None
