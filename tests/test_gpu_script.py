"""The GPU model-family benchmark (``benchmarks/gpu_models.py``) runs on the CPU with tiny models (``--smoke``):
transferlab's image encoding and the bare bf16 ``get_image_features`` loop give the same embeddings for each
family, and its JSON holds the rates and their ratio; ``benchmarks/gpu.sh`` calls it and prints the model study."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_models_smoke_writes_each_familys_rates_and_ratio(tmp_path):
    out = tmp_path / "gpu_models.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_models.py"), "--smoke", "--json", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(out.read_text())
    assert results["device"] == "cpu" and results["smoke"] and results["goal_ratio"] == 1.2
    assert list(results["families"]) == ["clip", "siglip", "siglip2"]
    classes = {"clip": "CLIPModel", "siglip": "SiglipModel", "siglip2": "Siglip2Model"}
    for family, r in results["families"].items():
        assert r["model_class"] == classes[family] and r["vision"]["num_hidden_layers"] == 2
        assert r["ours_images_per_s"] > 0 and r["bare_images_per_s"] > 0
        assert abs(r["ratio"] - r["bare_images_per_s"] / r["ours_images_per_s"]) < 1e-9
        assert r["within_goal"] == (r["ratio"] <= 1.2)
        assert len(r["seconds"]["ours"]) == len(r["seconds"]["bare"]) == r["repeats"] == 2
        assert r["min_cosine_ours_vs_bare"] > 0.99  # the same encoder: bf16 rounding apart, the same embeddings
        assert f"{family} ({classes[family]}" in proc.stdout


def test_gpu_sh_runs_the_family_benchmark_and_prints_the_model_study():
    script = (ROOT / "benchmarks" / "gpu.sh").read_text()
    assert subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / "gpu.sh")]).returncode == 0
    assert script.index("benchmarks/gpu.py") < script.index("benchmarks/gpu_models.py --json")
    assert ("transferlab lora --config siglip2 \\\n      --models openai/clip-vit-base-patch16,"
            "google/siglip2-base-patch16-224 \\\n      --shots 1,4,16 --seeds 0,1,2") in script


def test_the_printed_model_study_parses(capsys):
    """The printed command's options and overrides are ones ``transferlab lora`` takes (--print-config: nothing
    runs, no weights are fetched)."""
    from transferlab.cli import main

    assert main(["lora", "--config", "siglip2", "--models",
                 "openai/clip-vit-base-patch16,google/siglip2-base-patch16-224", "--shots", "1,4,16", "--seeds",
                 "0,1,2", "--output-dir", "logs", "run_name=backbones", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "name: google/siglip2-base-patch16-224" in out and "loss: auto" in out
