"""PEFT variants from peft (``lora.variant``): DoRA, rsLoRA, PiSSA and OLoRA initialisations, LayerNorm tuning
and IA3 train a tiny CLIP, a tiny SigLIP and the text fine-tune; each saved adapter (PiSSA and OLoRA converted
at save) loads with plain ``PeftModel.from_pretrained`` on the unmodified base model and gives the run's
predictions; metrics.json records the variant; one ``tune`` search chooses among variants."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from clip_fixtures import tiny_clip, tiny_siglip
from helpers import finetune_overrides
from test_adapters import TEMPLATE, plain_peft_probabilities
from transferlab.cli import main
from transferlab.data.images import ImageDataConfig, load_images

VARIANTS = ["lora", "dora", "rslora", "pissa", "olora", "ln_tuning", "ia3"]
PEFT_TYPE = {"ln_tuning": "LN_TUNING", "ia3": "IA3"}


@pytest.fixture(scope="module")
def bases(tmp_path_factory) -> dict[str, Path]:
    return {"clip": tiny_clip(tmp_path_factory.mktemp("clip")), "siglip": tiny_siglip(tmp_path_factory.mktemp("sig"))}


def prediction_rows(run: Path, method: str) -> list[dict]:
    text = (run / "predictions" / f"{method}.jsonl").read_text()
    return [json.loads(line) for line in text.split("\n") if line]  # a review may hold U+2028: not splitlines


def clip_args(folder: Path, tree: Path, out: Path, *extra: str) -> list[str]:
    return ["lora", "--output-dir", str(out), f"model.name={folder}", f"data.path={tree}", "data.val_per_class=2",
            f"model.templates=['{TEMPLATE}']", "model.precision=fp32", "training.precision=fp32",
            "lora.towers=both", "lora.target_modules=[q_proj,v_proj,fc1]", "lora.layers=null",
            "lora.train_projection=false",
            "training.max_steps=2", "training.batch_size=4", "training.learning_rate=0.05", "probe.enabled=false",
            "objective.train_views=[]", *extra]


CARD_NAMES = {"lora": "LoRA", "dora": "DoRA", "rslora": "rsLoRA", "pissa": "PiSSA", "olora": "OLoRA",
              "ln_tuning": "LN tuning", "ia3": "IA3"}
TARGETS = "['q_proj', 'v_proj', 'fc1']"
CARD_LINES = {  # the adapter card's method line: the method's own name and only the settings that apply to it
    "lora": f"LoRA r=8, alpha=32, dropout=0.1 on {TARGETS}",
    "dora": f"DoRA (weight-decomposed LoRA) r=8, alpha=32, dropout=0.1 on {TARGETS}",
    "rslora": f"rsLoRA (LoRA scaled by alpha / sqrt(r)) r=8, alpha=32, dropout=0.1 on {TARGETS}",
    "pissa": f"PiSSA-initialised LoRA r=8, alpha=32, dropout=0.1 (saved converted to a rank-16 LoRA adapter on the "
             f"unmodified base model) on {TARGETS}",
    "olora": f"OLoRA-initialised LoRA r=8, alpha=32, dropout=0.1 (saved converted to a rank-16 LoRA adapter on the "
             f"unmodified base model) on {TARGETS}",
    "ia3": f"IA3 (learnt scaling vectors) on {TARGETS}",
    "ln_tuning": "LN tuning (the LayerNorms trained)",
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_adapter_card_names_the_method_and_only_its_settings(variant):
    from transferlab.experiments.clip.adapter_card import method_line
    from transferlab.experiments.clip.config import ClipConfig, ClipLoraSettings

    config = ClipConfig(lora=ClipLoraSettings(variant=variant, r=8, alpha=32, dropout=0.1,
                                              target_modules=["q_proj", "v_proj", "fc1"]))
    assert method_line(config) == CARD_LINES[variant]


def test_rank_scaling_and_initialisation_reach_peft():
    from peft import IA3Config, LNTuningConfig, LoraConfig

    from transferlab.training.config import AdapterSettings
    from transferlab.training.lora import peft_config

    def config(variant):
        return peft_config(AdapterSettings(variant=variant, r=4, alpha=8), ["q_proj", "fc1"])

    assert isinstance(config("lora"), LoraConfig) and config("lora").init_lora_weights is True
    assert config("dora").use_dora and not config("lora").use_dora and config("rslora").use_rslora
    assert config("pissa").init_lora_weights == "pissa" and config("olora").init_lora_weights == "olora"
    assert isinstance(config("ln_tuning"), LNTuningConfig)
    ia3 = config("ia3")
    assert isinstance(ia3, IA3Config) and set(ia3.feedforward_modules) == {"fc1"}  # scaled at its input
    assert AdapterSettings().variant == "lora"  # the default is unchanged


@pytest.mark.slow
@pytest.mark.parametrize("family", ["clip", "siglip"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_each_variant_trains_a_dual_encoder_and_plain_peft_reloads_it(family, variant, bases, tree, tmp_path):
    folder = bases[family]
    assert main(clip_args(folder, tree, tmp_path, f"lora.variant={variant}")) == 0
    run = next((tmp_path / "lora").iterdir())
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["model"]["peft_method"] == variant
    params, details = metrics["parameters"], metrics["details"]
    assert params["lora"] == params["lora_formula"] > 0 and params["trainable"] == params["lora"]
    assert details["lora_by_tower"] == details["lora_formula_by_tower"] and set(details["lora_by_tower"]) == {
        "vision", "text"}
    saved = json.loads((run / "adapter" / "adapter_config.json").read_text())
    assert saved["peft_type"] == PEFT_TYPE.get(variant, "LORA") and saved["base_model_name_or_path"] == str(folder)
    if variant in ("pissa", "olora"):  # converted: a plain rank-2r LoRA adapter on the unmodified base model
        assert saved["init_lora_weights"] is True and saved["r"] == 16 and not (run / "initial_adapter").exists()
    if PEFT_TYPE.get(variant) is None:
        assert saved["use_dora"] == (variant == "dora") and saved["use_rslora"] == (variant == "rslora")
    card = (run / "adapter" / "README.md").read_text()
    assert f"{CARD_NAMES[variant]} adapter for the {family} dual encoder" in card
    assert f"- {CARD_LINES[variant]} of both towers, blocks all: " in card
    assert ("r=8" in card) == (variant not in ("ia3", "ln_tuning"))
    names = load_images(ImageDataConfig(path=str(tree), val_per_class=2), 42).class_names
    rows = [r for r in prediction_rows(run, "lora") if r["split"] == "test"]
    ours = np.array([[dict(r["top5"])[n] for n in names] for r in rows])
    theirs = plain_peft_probabilities(family, folder, run / "adapter", [r["example"] for r in rows], names)
    assert np.allclose(ours, theirs, atol=1e-5)  # the run's own predictions, from peft and transformers alone
    base = plain_peft_probabilities(family, folder, None, [r["example"] for r in rows], names)
    assert not np.allclose(base, theirs, atol=1e-4)  # the adapter was trained and loaded: it moves them


def test_a_variant_peft_cannot_build_is_one_line_before_any_run(bases, tree, tmp_path, capsys):
    args = clip_args(bases["clip"], tree, tmp_path, "lora.variant=pissa", "lora.target_modules=[patch_embedding]",
                     "lora.towers=vision")
    assert main(args) == 2
    assert "lora.variant=pissa applies to Linear layers" in capsys.readouterr().err
    assert not (tmp_path / "lora").exists()


def text_probabilities(base: Path, adapter: Path, texts: list[str]) -> np.ndarray:
    """The classes' probabilities from transformers and peft alone: a fresh classifier on the plain base model
    (its head random until the adapter's trained head replaces it) with the adapter loaded."""
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=2)
    model = PeftModel.from_pretrained(model, adapter).eval()
    tokens = AutoTokenizer.from_pretrained(base)(texts, padding=True, truncation=True, max_length=64,
                                                 return_tensors="pt")
    with torch.no_grad():
        return model(**tokens).logits.double().softmax(-1).numpy()


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_each_variant_fine_tunes_a_text_model_and_plain_peft_reloads_it(variant, tiny_text_models, tmp_path):
    from transferlab.config import load_config
    from transferlab.experiments.finetune import FinetuneConfig, run_finetune

    base = tiny_text_models["bert" if variant == "ia3" else "distilbert"]  # bert: peft's own IA3 targets
    overrides = finetune_overrides(base, **{"method": "lora", "lora.variant": variant, "training.max_steps": 6,
                                            "training.eval_steps": 3, "tracking.tensorboard": False})
    run = run_finetune(load_config(FinetuneConfig, "finetune", "offline", overrides), tmp_path, progress=False)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["model"]["method"] == "lora" and metrics["model"]["peft_method"] == variant
    saved = json.loads((run / "adapter" / "adapter_config.json").read_text())
    assert saved["peft_type"] == PEFT_TYPE.get(variant, "LORA")
    if variant == "ia3":
        assert saved["target_modules"] and set(saved["feedforward_modules"]) == {"output.dense"}
    assert "(" + variant + ", merged)" in (run / "model" / "README.md").read_text()
    rows = [r for r in prediction_rows(run, "finetune") if r["split"] == "test"][:24]
    theirs = text_probabilities(base, run / "adapter", [r["example"] for r in rows])
    names = json.loads((run / "model" / "config.json").read_text())["id2label"]
    assert [names[str(i)] for i in theirs.argmax(1)] == [r["prediction"] for r in rows]
    ours = np.array([r["probability"] for r in rows])  # of the predicted class (two classes: no top5)
    assert np.allclose(ours, theirs.max(1), atol=1e-5)


@pytest.mark.slow
def test_tune_chooses_among_variants(bases, tree, tmp_path):
    space = {"trials": {"tracking.tensorboard": False},
             "params": {"lora.variant": {"choices": ["lora", "dora", "ia3"]},
                        "training.learning_rate": {"low": 0.01, "high": 0.1, "log": True}}}
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
    args = clip_args(bases["clip"], tree, tmp_path, "lora.target_modules=[q_proj,v_proj]")
    args = [a for a in args if not a.startswith(("training.learning_rate", "--output-dir", str(tmp_path)))
            and a != "lora"]
    assert main(["tune", "lora", "--trials", "3", "--study-name", "variants", "--search", str(tmp_path / "space.yaml"),
                 "--output-dir", str(tmp_path), "--threads", "1", *args]) == 0
    folder = tmp_path / "tune" / "variants"
    best = yaml.safe_load((folder / "best.yaml").read_text())["clip"]  # the lora experiment's section
    assert best["lora"]["variant"] in ("lora", "dora", "ia3")
    trials = [r for r in (folder / "lora").iterdir() if r.name.startswith("trial-")]
    chosen = {json.loads((r / "metrics.json").read_text())["model"]["peft_method"] for r in trials}
    assert len(trials) == 3 and chosen <= {"lora", "dora", "ia3"}
    final = next(r for r in (folder / "lora").iterdir() if r.name.startswith("final-"))
    assert json.loads((final / "metrics.json").read_text())["model"]["peft_method"] == best["lora"]["variant"]


@pytest.mark.parametrize("variant", ["ia3", "ln_tuning", "dora"])
def test_every_parameter_peft_trains_is_in_its_group_and_moves(variant, bases):
    """The optimizer's groups follow what peft marks trainable, whatever it names it: IA3's vectors and LN tuning's
    norms at the adapters' learning rate (not the rate of what is trained in full), exempt from weight decay as
    the Trainer exempts norms; each of them changes in a few steps."""
    from transferlab.experiments.clip.config import ClipConfig, ClipLoraSettings
    from transferlab.experiments.clip.lora import adapter_targets, add_adapters
    from transferlab.models.clip_hf import HFDualEncoder
    from transferlab.models.dual_encoder import prompts
    from transferlab.models.prompt_classifier import PromptClassifier, param_groups

    model = HFDualEncoder.from_pretrained(str(bases["clip"]))
    config = ClipConfig(lora=ClipLoraSettings(variant=variant, target_modules=["q_proj", "v_proj", "fc1"],
                                              towers="both", layers=None, train_projection=False))
    add_adapters(model, config, adapter_targets(model, config), [], None)
    peft_marked = {n for n, p in model.named_parameters() if p.requires_grad}
    scale = next(p for n, p in model.named_parameters() if n.endswith("logit_scale"))
    scale.requires_grad_(True)  # a parameter trained in full beside the adapters (as the stand-in's map is)
    classifier = PromptClassifier(model, prompts([TEMPLATE], ["cat", "dog", "fish"], []), "class_ce")
    groups = param_groups(classifier, 0.01, 0.1, 0.5, full=[scale])
    where = {id(p): g for g in groups for p in g["params"]}
    named = dict(classifier.named_parameters())
    trainable = {n for n, p in named.items() if p.requires_grad}
    assert len(where) == len(trainable) == sum(len(g["params"]) for g in groups)  # each once, none left out
    marker = {"ia3": "ia3_l", "ln_tuning": "ln_tuning_layers", "dora": "lora_magnitude_vector"}[variant]
    scales = [n for n in trainable if marker in n]
    assert scales and all(where[id(named[n])]["lr"] == 0.01 and where[id(named[n])]["weight_decay"] == 0.0
                          for n in scales)
    full_name = next(n for n, p in named.items() if p is scale)
    assert {n[len("encoder."):] for n in trainable - {full_name}} == peft_marked  # the rest: what peft marked
    assert where[id(scale)]["lr"] == 0.1
    if variant == "dora":  # LoRA's matrices are decayed
        assert all(where[id(named[n])]["weight_decay"] == 0.5 for n in trainable if "lora_A" in n)
    before = {n: named[n].detach().clone() for n in trainable}
    optimizer = torch.optim.AdamW(groups)
    torch.manual_seed(0)
    pixels, labels = torch.randn(6, 3, 32, 32), torch.tensor([0, 1, 2, 0, 1, 2])
    classifier.train()
    for _ in range(3):
        optimizer.zero_grad()
        classifier(labels=labels, pixel_values=pixels)["loss"].backward()
        optimizer.step()
    assert [n for n in trainable if torch.equal(before[n], named[n])] == []  # every one of them trained
