"""CLIP zero-shot and LoRA end to end on a tiny random CLIPModel, the loss, adapters and the errors."""

import json
import math
from pathlib import Path

import pytest
import torch

from clip_fixtures import tiny_imagenet_tree
from transferlab.cli import main
from transferlab.config import load_config
from transferlab.errors import TransferlabError
from transferlab.experiments.clip.config import ClipConfig
from transferlab.models.clip_hf import HFDualEncoder
from transferlab.models.clip_losses import LOSSES
from transferlab.models.dual_encoder import prompts
from transferlab.models.dual_encoder_lora import lora_targets
from transferlab.models.prompt_classifier import PromptClassifier, split_predictions
from transferlab.training.lora import apply_lora, lora_formula


def overrides(clip_folder, tree, out):
    return ["--output-dir", str(out), f"model.name={clip_folder}", f"data.path={tree}", "data.val_per_class=2",
            "model.templates=['a photo of a {name}.', 'a {name}']", "model.batch_size=8"]


def lora_args(clip_folder, tree, out):
    return ["lora"] + overrides(clip_folder, tree, out) + [
        "lora.towers=both", "lora.target_modules=[q_proj,v_proj]", "lora.train_projection=false", "lora.layers=null",
        "training.max_steps=1", "training.batch_size=4", "training.learning_rate=0.01", "probe.c_grid=[1.0]",
        "tracking.tensorboard=true"]


@pytest.mark.slow
def test_zeroshot_end_to_end(clip_folder, tree, tmp_path, capsys):
    assert main(["zeroshot"] + overrides(clip_folder, tree, tmp_path)) == 0
    run = Path(capsys.readouterr().out.strip().splitlines()[-1])
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["experiment"] == "zeroshot" and metrics["primary"] == "zero_shot"
    assert list(metrics["methods"]) == ["zero_shot"] and metrics["n_classes"] == 3
    assert metrics["model"]["name"] == str(clip_folder) and "clip" in metrics["model"]["description"]
    result = metrics["methods"]["zero_shot"]
    assert result["test"]["n_examples"] == 6 == result["validation"]["n_examples"]
    assert metrics["n_examples"] == {"validation": 6, "test": 6}
    assert result["test"]["top5_accuracy"] == 1.0  # 3 classes
    assert (run / "confusion_matrix.png").is_file() and (run / "classification_report.txt").is_file()
    assert json.loads((run / "status.json").read_text())["status"] == "completed"


@pytest.mark.slow
def test_lora_step_end_to_end(clip_folder, tree, tmp_path, capsys):
    assert main(lora_args(clip_folder, tree, tmp_path)) == 0
    out = capsys.readouterr().out
    run = Path(out.strip().splitlines()[-1])
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["experiment"] == "lora" and metrics["primary"] == "lora"
    assert list(metrics["methods"]) == ["zero_shot", "zero_shot_single_template", "linear_probe", "lora"]
    assert all("accuracy" in m[s] for m in metrics["methods"].values() for s in ("validation", "test"))
    # 2 towers x 2 layers x (q_proj, v_proj), each r x (in + out) = 8 x (32 + 32)
    params = metrics["parameters"]
    assert params["lora"] == 2 * 2 * 2 * 8 * 64 == params["lora_formula"] and params["trainable"] == params["lora"]
    assert params["total"] > params["trainable"]
    assert "LoRA parameters: 4,096" in out
    details = metrics["details"]
    assert not details["image_features_cached"]  # the vision tower trains, so pixels go through it
    assert details["best_step"] == 1 == details["global_step"]  # max_steps=1 ends mid-epoch: evaluated then
    assert details["linear_probe"]["grid_C"] == [1.0] and details["linear_probe"]["chosen_C"] == 1.0
    assert metrics["n_examples"] == {"train": 12, "validation": 6, "test": 6}
    assert set(metrics["timings"]) >= {"encode_images_s", "zero_shot_s", "linear_probe_s", "train_s"}
    assert (run / "adapter" / "adapter_config.json").is_file()
    assert not (run / "report.md").exists() and not (run / "trainer").exists()  # the report is the pipeline's
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["checkpoint-1"]  # --resume's (the last step)


def test_zeroshot_is_not_resumable_and_lora_resumes_only_a_run_with_a_checkpoint(clip_folder, tree, tmp_path):
    from transferlab.experiments.clip.lora import run_lora
    from transferlab.experiments.clip.zeroshot import run_zeroshot

    cfg = load_config(ClipConfig, "clip", "offline", lora_args(clip_folder, tree, tmp_path)[3:])
    with pytest.raises(TransferlabError, match="not resumable"):
        run_zeroshot(cfg, tmp_path, resume="latest")
    with pytest.raises(TransferlabError, match="no unfinished lora run with this config"):
        run_lora(cfg, tmp_path, resume="latest")
    assert not (tmp_path / "lora").exists() and not (tmp_path / "zeroshot").exists()


@pytest.mark.parametrize("override,message", [
    ("training.batch_size=0", "training.batch_size must be at least 1"),
    ("training.warmup=1.5", "training.warmup must be a fraction"),
    ("training.warmup_ratio=0.1", "did you mean 'training.warmup'"),
    ("training.loss=contrastive", "unknown config key 'training.loss'"),
    ("lora.dropout=1.0", "lora.dropout must be in [0, 1)"),
    ("training.gradient_checkpointing=true", "applies to text fine-tuning"),
])
def test_training_settings_are_checked_as_for_finetune(override, message, capsys, tmp_path):
    assert main(["lora", "--output-dir", str(tmp_path), override]) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_lora_count_formula_for_the_paper_model():
    from transformers import CLIPConfig, CLIPModel

    with torch.device("meta"):
        model = HFDualEncoder(CLIPModel(CLIPConfig(
            text_config=dict(hidden_size=512, intermediate_size=2048, num_attention_heads=8, num_hidden_layers=12),
            vision_config=dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                               num_hidden_layers=12, patch_size=16))), processor=None)
    targets = lora_targets(model, ["q_proj", "v_proj"], "both")
    assert len(targets) == 48
    assert lora_formula(model, targets, 8) == 491_520  # clip-vit-base-patch16, r=8, both towers
    assert lora_formula(model, lora_targets(model, ["q_proj", "v_proj"], "text"), 8) == 196_608
    last = lora_targets(model, ["q_proj", "v_proj"], "both", layers=[11])
    assert len(last) == 4 and all(".layers.11." in name for name in last)
    assert lora_targets(model, ["q_proj", "v_proj"], "both", layers=[-1]) == last  # counted from the end


@pytest.fixture
def classifier(clip_folder):
    torch.manual_seed(0)
    model = HFDualEncoder.from_pretrained(str(clip_folder))
    cfg = load_config(ClipConfig, "clip", "offline", ["lora.towers=text", "lora.target_modules=[q_proj,v_proj]", "lora.layers=null",
                                                      "lora.train_projection=false"])
    apply_lora(model, cfg.lora, lora_targets(model, cfg.lora.target_modules, cfg.lora.towers))
    return PromptClassifier(model, prompts(["a photo of a {name}"], ["cat", "dog", "fish"], []), "class_ce"), cfg


@pytest.mark.slow
def test_class_embeddings_follow_the_text_tower(classifier):
    classifier, cfg = classifier
    torch.manual_seed(1)
    images = (torch.randn(6, 16), torch.tensor([0, 0, 1, 1, 2, 2]))
    before = split_predictions(classifier, (images[0], images[1].numpy()))
    classifier.train()
    optimizer = torch.optim.SGD([p for p in classifier.parameters() if p.requires_grad], lr=1.0)
    for _ in range(2):  # LoRA's B starts at zero, so the first step moves only B
        optimizer.zero_grad()
        classifier(labels=images[1], image_embeds=images[0])["loss"].backward()
        optimizer.step()
    trained = [n for n, p in classifier.named_parameters() if p.requires_grad]
    assert trained and all("text_model" in n and "lora_" in n for n in trained)
    after = split_predictions(classifier, (images[0], images[1].numpy()))
    assert not torch.allclose(torch.as_tensor(before[2]), torch.as_tensor(after[2]))


def error_line(capsys) -> str:
    """The one ``error:`` line (progress bars of model loading may precede it on stderr)."""
    lines = [ln for ln in capsys.readouterr().err.replace("\r", "\n").splitlines() if ln.startswith("error:")]
    assert len(lines) == 1
    return lines[0]


def naive_clip_loss(image, text, scale):
    logits = scale * image @ text.T
    target = torch.arange(len(image))
    return (torch.nn.functional.cross_entropy(logits, target) + torch.nn.functional.cross_entropy(logits.T, target)) / 2


@pytest.mark.parametrize("name", ["class_ce", "contrastive"])
def test_same_class_images_are_not_negatives(name):
    classes = torch.nn.functional.normalize(torch.eye(3, 8), dim=-1)
    labels = torch.tensor([0, 0, 1, 2])
    images = classes[labels].clone().requires_grad_(True)
    scale = 50.0
    LOSSES[name](scale * images @ classes.T, labels).backward()
    # perfectly aligned: no force on either twin, whereas a per-caption CLIP loss counts the twin's caption
    # (the same class prompt) as a negative and can never go below log 2 on that row
    assert images.grad.abs().max().item() < 1e-6
    assert naive_clip_loss(images, classes[labels], scale).item() > math.log(2) / 2 - 1e-3
    # from a noisy start, a gradient step never drives the two same-class images apart
    torch.manual_seed(0)
    noisy = torch.nn.functional.normalize(classes[labels] + 0.3 * torch.randn(4, 8), dim=-1).requires_grad_(True)
    LOSSES[name](10.0 * noisy @ classes.T, labels).backward()
    moved = torch.nn.functional.normalize(noisy - 0.5 * noisy.grad, dim=-1)
    cos = lambda x: torch.dot(x[0], x[1]).item()  # noqa: E731
    assert cos(moved.detach()) >= cos(noisy.detach()) - 1e-6


def test_lora_target_error_lists_layers(clip_folder, tree, tmp_path, capsys):
    args = lora_args(clip_folder, tree, tmp_path) + ["lora.target_modules=[qkv]"]
    assert main(args) == 2
    err = error_line(capsys)
    assert err.startswith("error: lora.target_modules ['qkv'] match no layer")
    assert "q_proj" in err and "out_proj" in err
    assert not (tmp_path / "lora").exists()  # no partial run directory


@pytest.mark.skipif(torch.cuda.is_available(), reason="fp16 runs on a GPU")
def test_training_precision_is_resolved_for_the_device(clip_folder, tree, tmp_path, capsys):
    assert main(lora_args(clip_folder, tree, tmp_path) + ["training.precision=fp16"]) == 2
    assert "training.precision=fp16 needs a CUDA GPU" in error_line(capsys)
    assert not (tmp_path / "lora").exists()


def test_train_projection_needs_the_standin(clip_folder, tree, tmp_path, capsys):
    assert main(lora_args(clip_folder, tree, tmp_path) + ["lora.train_projection=true"]) == 2
    assert "applies to the stand-in" in capsys.readouterr().err


@pytest.mark.parametrize("setup,message", [
    ("names", "has 1 names but the data has 3 classes"),
    ("layout", "is not a recognised image data layout"),
    ("wnids", "is missing from"),
    ("corrupt", "unreadable image(s)"),
])
def test_data_errors_through_the_cli(setup, message, clip_folder, tmp_path, capsys):
    tree = tiny_imagenet_tree(tmp_path / "t", n_train=4, n_val=1)
    extra = []
    if setup == "names":
        (tmp_path / "names.txt").write_text("only\n")
        extra = [f"data.class_names_file={tmp_path / 'names.txt'}"]
    elif setup == "layout":
        tree = tmp_path / "empty"
        tree.mkdir()
    elif setup == "wnids":
        (tree / "wnids.txt").write_text("n01443537\nn01629819\n")
    else:
        (tree / "val" / "images" / "val_0.JPEG").write_bytes(b"\x00" * 10)
        extra = ["data.on_corrupt=fail"]
    code = main(["zeroshot"] + overrides(clip_folder, tree, tmp_path / "out") + ["data.val_per_class=1"] + extra)
    assert code == 2 and message in error_line(capsys)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("preset", ["offline", "paper"])
def test_presets_load(preset):
    cfg = load_config(ClipConfig, "clip", preset)
    assert cfg.source == f"preset:{preset}"
    if preset == "paper":
        assert cfg.model.name == "openai/clip-vit-base-patch16" and cfg.model.templates == ["a photo of a {name}"]
        assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout, cfg.lora.towers) == (8, 32, 0.1, "both")
        assert cfg.lora.target_modules == ["q_proj", "v_proj"]
        assert (cfg.training.learning_rate, cfg.training.batch_size, cfg.training.weight_decay) == (2e-5, 16, 0.0)
        assert cfg.objective.loss == "class_ce" and cfg.objective.cache_image_features
    else:
        assert cfg.model.name == "standin" and cfg.data.path is None
        assert cfg.lora.towers == "both" and cfg.lora.layers == [-2, -1] and len(cfg.model.templates) == 4
        assert {"query", "value", "_conv_head"} <= set(cfg.lora.target_modules) and cfg.objective.train_views


def test_unknown_key_suggests(capsys):
    assert main(["lora", "lora.alpa=4"]) == 2
    assert "did you mean 'lora.alpha'" in capsys.readouterr().err
