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
