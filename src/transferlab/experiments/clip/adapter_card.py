"""The LoRA run's ``adapter/README.md``: a model card for the peft adapter (it replaces peft's empty
template). Front matter: ``base_model`` (the checkpoint the adapter applies to), ``library_name: peft``
and a ``model-index`` with the data set, split and each metric's value and bootstrap interval
(``experiments.finetune.model_card.eval_results``); then how to load it with plain peft, the settings
and the results of every method of the run.
"""

from __future__ import annotations

from pathlib import Path

from transferlab.evaluation.schema import RunMetrics
from transferlab.experiments.clip.config import ClipConfig
from transferlab.experiments.finetune.model_card import eval_results, with_interval
from transferlab.training.lora import CONVERTED, VARIANT_NAMES

MODEL_CLASSES = {"clip": "CLIPModel", "siglip": "SiglipModel", "siglip2": "Siglip2Model"}


def dataset_of(config: ClipConfig) -> tuple[tuple[str, str], str]:
    """``((Hub id, readable name), the test split's name)``: the Hub copy's, or a local folder's."""
    d = config.data
    if d.hub_id:
        test_id = d.hub_test_id or d.hub_id
        return (test_id, test_id), d.test_split
    name = Path(d.path).name if d.path else "tiny_imagenet_demo (transferlab's 20-class Tiny ImageNet subset)"
    return ("imagefolder", name), "test"


def write_adapter_card(folder: Path, family: str | None, base_model: str | None, config: ClipConfig,
                       metrics: RunMetrics) -> Path:
    """``folder/README.md``; ``family``: the checkpoint's (``clip``, ``siglip``, ``siglip2``; ``None``: the
    stand-in), ``base_model``: the Hub id or folder the adapter applies to (``None``: none)."""
    from huggingface_hub import ModelCardData

    dataset, test_split = dataset_of(config)
    splits = {"test": test_split, "validation": "validation"}  # validation: held out of the training images
    results = eval_results(metrics.result, "zero-shot-image-classification", dataset,
                           {s: n for s, n in splits.items() if s in metrics.result},
                           metric_names=("accuracy", "top5_accuracy"),
                           dataset_args={"shots": config.data.shots} if config.data.shots else None)
    header = ModelCardData(base_model=base_model, library_name="peft", model_name=folder.parent.name,
                           pipeline_tag="zero-shot-image-classification", eval_results=results,
                           tags=["transferlab", config.lora.variant.replace("_", "-"), "peft",
                                 family or "dual-encoder"]).to_yaml()
    path = folder / "README.md"
    path.write_text(f"---\n{header.strip()}\n---\n\n{card_body(folder, base_model, family, config, metrics)}")
    return path


def method_line(config: ClipConfig) -> str:
    """The peft method with the settings that apply to it: rank, alpha and dropout for the LoRA family (how
    PiSSA/OLoRA were saved), the target layers for IA3, neither for LN tuning (it trains the LayerNorms)."""
    lora = config.lora
    name = VARIANT_NAMES[lora.variant]
    if lora.variant == "ln_tuning":
        return f"{name} (the LayerNorms trained)"
    if lora.variant == "ia3":
        return f"{name} (learnt scaling vectors) on {lora.target_modules}"
    what = {"dora": f"{name} (weight-decomposed LoRA)", "rslora": f"{name} (LoRA scaled by alpha / sqrt(r))",
            "pissa": f"{name}-initialised LoRA", "olora": f"{name}-initialised LoRA"}.get(lora.variant, name)
    saved = (f" (saved converted to a rank-{2 * lora.r} LoRA adapter on the unmodified base model)"
             if lora.variant in CONVERTED else "")
    return f"{what} r={lora.r}, alpha={lora.alpha}, dropout={lora.dropout}{saved} on {lora.target_modules}"


def settings(config: ClipConfig, metrics: RunMetrics) -> str:
    """The adapter's settings and training, one bullet each."""
    lora, d, details = config.lora, config.data, metrics.details
    blocks = lora.layers if lora.layers is not None else "all"
    towers = "both towers" if lora.towers == "both" else f"the {lora.towers} tower"
    return "\n".join([
        f"- {method_line(config)} of {towers}, blocks {blocks}: {metrics.parameters.get('lora', 0):,} parameters",
        f"- loss {details.get('loss')}; step {details.get('best_step')} of {details.get('global_step')} "
        f"({details.get('step_selection', 'best on validation')}); seed {config.seed}",
        f"- data: {d.hub_id or d.path or 'the vendored demo subset'}, "
        f"{f'{d.shots} images' if d.shots else 'all images'} a class; examples {metrics.n_examples}"])


def card_body(folder: Path, base_model: str | None, family: str | None, config: ClipConfig, metrics: RunMetrics) -> str:
    primary, kind = metrics.primary, f"{family} dual" if family else "dual"
    rows = "\n".join(f"| {m} | {with_interval(r['validation'], 'accuracy')} | "
                     + (with_interval(r["test"], "accuracy") if "test" in r else "-") + " |"
                     for m, r in metrics.methods.items())
    if base_model:
        use = f"""```python
from peft import PeftModel
from transformers import AutoProcessor, {MODEL_CLASSES.get(family, "AutoModel")}

base = {MODEL_CLASSES.get(family, "AutoModel")}.from_pretrained("{base_model}")
model = PeftModel.from_pretrained(base, "{folder}")
processor = AutoProcessor.from_pretrained("{base_model}")
```"""
    else:
        use = ("The offline stand-in has no Hugging Face base model: the adapter's layers are named under the "
               "stand-in's modules (`image_tower`, `text_tower`), so it applies to a stand-in built with this run's "
               "settings, with `extra_trainable.safetensors` (its trained map) where present.")
    return f"""# {folder.parent.name}

{VARIANT_NAMES[config.lora.variant]} adapter for the {kind} encoder `{base_model or config.model.name}`, trained by `transferlab lora` against
class prompts ({", ".join(repr(t) for t in config.model.templates)}) on {metrics.n_classes} classes.

## Use

{use}

## Settings

{settings(config, metrics)}

## Results (top-1 accuracy [bootstrap interval]; `{primary}` is this adapter)

| method | validation | test |
|---|---|---|
{rows}
"""
