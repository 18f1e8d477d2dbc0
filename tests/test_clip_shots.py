"""K-shot CLIP runs (a label-budget study's cells): the draw in the image data, the protocol (no test image
reaches training or selection), the cache read instead of re-encoding, Tip-Adapter(-F) in a run, and the
clip-lora preset end to end on the tiny random CLIP."""

import json
from collections import Counter
from pathlib import Path

import pytest

from transferlab.cli import main
from transferlab.config import load_config
from transferlab.data.images import load_images
from transferlab.experiments.clip.config import ClipConfig, DataConfig


def per_class(split) -> Counter:
    return Counter(split["label"])


def test_kshot_draw_holds_k_of_every_class_from_the_training_folder_only(tree):
    data = load_images(DataConfig(path=str(tree), val_per_class=2, shots=2), seed=0)
    assert per_class(data.train) == {0: 2, 1: 2, 2: 2}
    assert per_class(data.validation) == {0: 2, 1: 2, 2: 2}  # min(K, 4)
    train, validation, test = (set(s["image"]) for s in (data.train, data.validation, data.test))
    assert not train & validation and not (train | validation) & test
    assert all("/train/" in p for p in train | validation) and all("/val/" in p for p in test)
    assert len(test) == 6  # the official val folder, whole
    for name in ("train", "validation"):  # rows of the training folder: what a cache of the folder serves
        assert list(data.source.select(data.rows[name])["image"]) == list(getattr(data, name)["image"])


def test_kshot_draws_are_nested_within_a_seed_and_reproducible(tree):
    def draw(shots, seed, nested=True, validation=4):
        d = load_images(DataConfig(path=str(tree), val_per_class=2, shots=shots, nested_shots=nested,
                                   shots_validation=validation), seed)
        return set(d.train["image"]), set(d.validation["image"])

    one, two = draw(1, 0)[0], draw(2, 0)[0]
    assert one < two and draw(2, 0) == draw(2, 0)
    assert draw(2, 0) != draw(2, 1)
    assert len(draw(1, 0)[1]) == 3 and len(draw(2, 0, validation=1)[1]) == 3  # min(K, shots_validation) a class
    independent = [draw(k, 0, nested=False)[0] for k in (1, 2)]
    assert all(len(s) == 3 * k for s, k in zip(independent, (1, 2)))


def test_too_many_shots_is_an_input_error_without_a_run(clip_folder, tree, tmp_path, capsys):
    code = main(["zeroshot", "--output-dir", str(tmp_path / "out"), f"model.name={clip_folder}",
                 f"data.path={tree}", "data.val_per_class=2", "data.shots=5"])
    assert code == 2 and "choose fewer shots" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("override, message", [("data.shots=0", "data.shots must be at least 1"),
                                               ("data.shots_validation=0", "data.shots_validation"),
                                               ("lora.method=tip_adapter", "lora.method"),
                                               ("objective.train_views=[resized_crop]", "unknown view")])
def test_shot_settings_are_checked(override, message, capsys):
    assert main(["lora", override]) == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("preset", ["clip-lora", "offline-clip-lora"])
def test_clip_lora_presets_hold_the_papers_recipe(preset):
    cfg = load_config(ClipConfig, "clip", preset)
    assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout, cfg.lora.method) == (2, 1, 0.25, "clip_lora")
    assert cfg.training.learning_rate == (2e-4 if preset == "clip-lora" else 2e-3)  # the stand-in's: scaled
    assert (cfg.training.weight_decay, cfg.training.lr_scheduler) == (0.01, "cosine")
    assert cfg.model.templates == ["a photo of a {name}."] and cfg.lora.towers == "both"
    assert cfg.objective.select_step is False and cfg.data.shots == 16
    if preset == "clip-lora":
        assert cfg.model.name == "openai/clip-vit-base-patch16" and cfg.lora.layers is None
        assert cfg.lora.target_modules == ["q_proj", "k_proj", "v_proj"] and cfg.training.batch_size == 32
        assert cfg.objective.steps_per_shot == 500 and cfg.objective.pixel_view == "resized_crop_flip"
    else:
        assert {"query", "key", "value"} <= set(cfg.lora.target_modules) and cfg.lora.text_layers == "all"
        assert cfg.objective.train_views == ["flip", "resized_crop_flip"] and cfg.objective.view_seed == 0


def cell(clip_folder, tree, out, shots, seed, *extra):
    """One study cell of the lab's recipe on the tiny CLIP (one training step), caching in ``out/cache/images``
    (where a study puts a K-shot cell's cache: the runner itself only obeys ``model.feature_cache``)."""
    args = ["lora", "--output-dir", str(out), f"model.name={clip_folder}", f"data.path={tree}",
            f"model.feature_cache={out / 'cache' / 'images'}",
            "data.val_per_class=2", f"data.shots={shots}", f"seed={seed}", "model.batch_size=8",
            "model.templates=['a photo of a {name}.', 'a {name}']",
            "lora.target_modules=[q_proj,v_proj]", "lora.towers=both", "lora.layers=[-1]",
            "lora.train_projection=false", "objective.train_views=[flip]", "training.max_steps=1",
            "training.batch_size=4", "probe.c_grid=[1.0]", "tip_adapter.epochs=2", *extra]
    assert main(args) == 0


def last_run(out: Path) -> Path:
    return max((p for p in (out / "lora").iterdir() if (p / "metrics.json").is_file()), key=lambda p: p.stat().st_mtime)


def predictions(run: Path, method: str, split: str = "test") -> list:
    rows = [json.loads(line) for line in (run / "predictions" / f"{method}.jsonl").read_text().splitlines()]
    return [r["prediction"] for r in rows if r["split"] == split]


@pytest.mark.slow
def test_kshot_cells_read_the_cache_and_tip_adapter_at_alpha_zero_is_zero_shot(clip_folder, tree, tmp_path):
    cell(clip_folder, tree, tmp_path, 2, 0)
    first = json.loads((last_run(tmp_path) / "metrics.json").read_text())
    details = first["details"]
    assert details["images_encoded"] == {"train+validation": 18, "train+validation flip": 18, "test": 6}
    assert first["n_examples"] == {"train": 6, "validation": 6, "test": 6}
    assert details["shots"] == 2 and details["validation_per_class"] == 2 and details["training_rows"] == 12
    assert list(first["methods"]) == ["zero_shot", "zero_shot_single_template", "linear_probe", "tip_adapter",
                                      "tip_adapter_f", "lora"]
    assert {"encode_images_s", "zero_shot_s", "linear_probe_s", "tip_adapter_s", "tip_adapter_f_s",
            "train_s"} <= set(first["timings"])
    assert details["tip_adapter_f"]["training_rows"] == 12 and len(details["tip_adapter_f"]["loss_per_epoch"]) == 2

    cell(clip_folder, tree, tmp_path, 1, 1, "tip_adapter.alpha_grid=[0.0]")
    run = last_run(tmp_path)
    second = json.loads((run / "metrics.json").read_text())
    assert second["details"]["images_encoded"] == {}  # every image (and view) read from the first cell's cache
    assert any((tmp_path / "cache" / "images").glob("*.npy"))
    assert second["n_examples"] == {"train": 3, "validation": 3, "test": 6}
    assert second["details"]["tip_adapter"]["alpha"] == 0.0
    for split in ("validation", "test"):
        assert predictions(run, "tip_adapter", split) == predictions(run, "zero_shot", split)
        assert second["methods"]["tip_adapter"][split]["accuracy"] == second["methods"]["zero_shot"][split]["accuracy"]


@pytest.mark.slow
def test_clip_lora_preset_end_to_end_on_the_tiny_clip(clip_folder, tree, tmp_path, capsys):
    args = ["lora", "--config", "clip-lora", "--output-dir", str(tmp_path), f"model.name={clip_folder}",
            f"data.path={tree}", "data.val_per_class=2", "data.shots=2", "data.num_workers=0",
            "training.num_workers=0", "model.batch_size=8", "objective.steps_per_shot=2", "training.batch_size=4",
            "training.logging_steps=1", "probe.c_grid=[1.0]", "tip_adapter.epochs=2"]
    assert main(args) == 0
    run = Path(capsys.readouterr().out.strip().splitlines()[-1])
    metrics = json.loads((run / "metrics.json").read_text())
    details = metrics["details"]
    assert metrics["primary"] == "clip_lora" and "clip_lora" in metrics["methods"]
    assert details["global_step"] == 2 * 2 == details["best_step"]  # steps_per_shot x K; the last step kept
    assert details["training_source"] == "pixels" and details["training_rows"] == 6
    # q, k, v of both towers' 2 layers, each r x (32 + 32) with r = 2
    assert details["lora_by_tower"] == details["lora_formula_by_tower"] == {"vision": 768, "text": 768}
    config = (run / "config.yaml").read_text()
    assert "resized_crop_flip" in config and "cosine" in config
