"""Error analysis from a run's ``predictions/<method>.jsonl``: which examples a model gets wrong.

- text runs: the most confidently wrong test reviews, a handful per true class;
- image runs: a gallery of test images (thumbnails) with true and predicted class;
- ``lora`` runs: the test images LoRA fixed and broke relative to zero-shot, and the classes that
  gained and lost most.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from transferlab.reporting.runs import RunRecord

THUMBNAIL = 64


def test_rows(record: RunRecord, method: str) -> list[dict]:
    return record.rows(method, "test")


def is_image(example) -> bool:
    return isinstance(example, str) and Path(example).suffix.lower() in {".jpeg", ".jpg", ".png"} \
        and Path(example).is_file()


def confident_mistakes(rows: Sequence[dict], per_class: int = 3) -> list[dict]:
    """The wrong predictions with the highest probability, at most ``per_class`` for each true class."""
    wrong = sorted((r for r in rows if r["label"] != r["prediction"]), key=lambda r: -r["probability"])
    taken: dict[str, int] = {}
    out = []
    for r in wrong:
        if taken.get(r["label"], 0) < per_class:
            taken[r["label"]] = taken.get(r["label"], 0) + 1
            out.append(r)
    return out


def text_mistakes(record: RunRecord, method: str, per_class: int = 3) -> list[tuple]:
    rows = test_rows(record, method)
    if not rows or is_image(rows[0].get("example")):
        return []
    table = [[r["label"], r["prediction"], f"{r['probability']:.3f}", r["id"], r.get("example") or "–"]
             for r in confident_mistakes(rows, per_class)]
    if not table:
        return []
    return [("h3", f"Most confidently wrong test examples ({method})"),
            ("table", ["true", "predicted", "probability", "row", "text"], table)]


def thumbnail(image_path: str, out: Path) -> Path:
    from PIL import Image

    with Image.open(image_path) as im:
        im = im.convert("RGB")
        im.thumbnail((THUMBNAIL, THUMBNAIL))
        im.save(out)
    return out


def gallery(rows: Sequence[dict], assets: Path, stem: str) -> list[tuple[Path, str]]:
    return [(thumbnail(r["example"], assets / f"{stem}-{i}.png"),
             f"true: {r['label']} / predicted: {r['prediction']} ({r['probability']:.2f})")
            for i, r in enumerate(rows)]


def image_gallery(record: RunRecord, method: str, assets: Path, n_wrong: int = 8, n_right: int = 4) -> list[tuple]:
    rows = test_rows(record, method)
    if not rows or not is_image(rows[0].get("example")):
        return []
    wrong = confident_mistakes(rows, per_class=1)[:n_wrong]
    right = sorted((r for r in rows if r["label"] == r["prediction"]), key=lambda r: -r["probability"])[:n_right]
    items = gallery(wrong + right, assets, f"{record.name}-{method}")
    return [("h3", f"Test images ({method}): {len(wrong)} confident mistakes, then {len(right)} confident hits"),
            ("gallery", items)]


def lora_changes(record: RunRecord, assets: Path, n: int = 8, k: int = 5) -> list[tuple]:
    """What LoRA changed against zero-shot on the same test images: fixed, broken, per-class gains."""
    before, after = test_rows(record, "zero_shot"), test_rows(record, "lora")
    if not before or len(before) != len(after):
        return []
    pairs = list(zip(before, after))
    fixed = [a for b, a in pairs if b["label"] != b["prediction"] and a["label"] == a["prediction"]]
    broken = [a for b, a in pairs if b["label"] == b["prediction"] and a["label"] != a["prediction"]]
    blocks = [("h3", f"LoRA against zero-shot on the test split: {len(fixed)} images fixed, {len(broken)} broken")]
    if is_image(after[0].get("example")):
        for name, rows in (("fixed", fixed), ("broken", broken)):
            if rows:
                blocks += [("p", f"Images LoRA {name} (showing {min(n, len(rows))}):"),
                           ("gallery", gallery(rows[:n], assets, f"{record.name}-lora-{name}"))]
    deltas = class_deltas(record)
    if deltas:
        picked = deltas[:k] + deltas[-k:] if len(deltas) > 2 * k else deltas
        blocks += [("table", ["class", "zero-shot recall", "LoRA recall", "change"],
                    [[c, f"{b:.3f}", f"{a:.3f}", f"{a - b:+.3f}"] for c, b, a in picked])]
    return blocks


def class_deltas(record: RunRecord) -> list[tuple[str, float, float]]:
    """(class, zero-shot recall, LoRA recall) on test, the largest gain first."""
    methods = record.metrics.methods if record.metrics else {}
    if "zero_shot" not in methods or "lora" not in methods:
        return []
    before, after = methods["zero_shot"]["test"]["per_class"], methods["lora"]["test"]["per_class"]
    rows = [(c, before[c]["recall"], after[c]["recall"]) for c in after if c in before]
    return sorted(rows, key=lambda r: -(r[2] - r[1]))


def error_analysis(record: RunRecord, assets: Path) -> list[tuple]:
    """Every error-analysis block that applies to this run."""
    if record.metrics is None:
        return []
    blocks = image_gallery(record, record.metrics.primary, assets)
    for method in record.metrics.methods:
        blocks += text_mistakes(record, method)
    if record.metrics.experiment == "lora":
        blocks += lora_changes(record, assets)
    return blocks
