"""Error analysis from a run's ``predictions/<method>.jsonl``: which examples a model gets wrong.

- text runs: the most confidently wrong test reviews, a handful per true class;
- image runs: a gallery of test images (thumbnails) with true and predicted class;
- ``lora`` runs: the test images LoRA fixed and broke relative to zero-shot, and the classes that
  gained and lost most.

Which images become thumbnails (the rule for a run folder someone sends you): a prediction row names its
image by a path, and that path is data. A thumbnail is made only from a regular file that, links resolved,
lies inside the reported run's own folder, inside the demo data shipped in this package, or inside a folder
the person writing the report vouches for (``image_roots``: ``transferlab report --images DIR``, or the data
folders of the runs a command has just made). The data folder a run *records* in its config never widens
this: a received run naming ``/home/you/photos/x.jpg`` or ``../../x.jpg`` gets no thumbnail of it, and the
report says how many images it left out and why.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Iterable, Sequence

from transferlab.data.images import DEMO_PATH
from transferlab.reporting.output import asset_name, readable, resolved_roots, write_file
from transferlab.reporting.runs import RunRecord

THUMBNAIL = 64
IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}


def test_rows(record: RunRecord, method: str) -> list[dict]:
    return record.rows(method, "test")


def is_image(example) -> bool:
    """Whether a prediction row's example names an image (by its suffix; the file is not looked at)."""
    return isinstance(example, str) and Path(example).suffix.lower() in IMAGE_SUFFIXES


def image_roots_of(record: RunRecord, image_roots: Iterable[str | Path] = ()) -> list[Path]:
    """The folders this run's thumbnails may come from: its own folder, the vendored demo data, ``image_roots``."""
    return resolved_roots([record.path, DEMO_PATH, *image_roots])


def data_folders(configs: Iterable) -> list[Path]:
    """The image data folders (``data.path``) of configs a command has just run (dataclasses or dicts): the
    folders it may vouch for as ``image_roots``."""
    out = []
    for config in configs:
        data = config.get("data") if isinstance(config, dict) else getattr(config, "data", None)
        path = data.get("path") if isinstance(data, dict) else getattr(data, "path", None)
        if isinstance(path, (str, Path)) and str(path):
            out.append(Path(path).expanduser())
    return out


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


def thumbnail(source: Path, out: Path) -> Path | None:
    """A small PNG of ``source`` at ``out`` (written with ``write_file``); ``None`` when it is no readable image."""
    from PIL import Image

    try:
        with Image.open(source) as im:
            im = im.convert("RGB")
            im.thumbnail((THUMBNAIL, THUMBNAIL))
            buffer = io.BytesIO()
            im.save(buffer, format="PNG")
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    return write_file(out, buffer.getvalue())


def gallery(rows: Sequence[dict], assets: Path, stem: tuple, roots: Sequence[Path]) -> tuple[list, int]:
    """(thumbnails with captions, how many rows' images were left out: outside ``roots`` or unreadable)."""
    items, left_out = [], 0
    for i, r in enumerate(rows):
        source = readable(r["example"], roots)
        made = thumbnail(source, assets / asset_name(*stem, i)) if source is not None else None
        if made is None:
            left_out += 1
            continue
        items.append((made, f"true: {r['label']} / predicted: {r['prediction']} ({r['probability']:.2f})"))
    return items, left_out


def left_out_note(left_out: int, shown: int) -> list[tuple]:
    if not left_out:
        return []
    return [("p", f"{left_out} of {left_out + shown} images not shown: each is outside the run's folder, the "
                  f"vendored demo data and the folders given with --images, or is no readable image (a received "
                  f"run's image paths are never followed elsewhere).")]


def image_gallery(record: RunRecord, method: str, assets: Path, roots: Sequence[Path], n_wrong: int = 8,
                  n_right: int = 4) -> list[tuple]:
    rows = test_rows(record, method)
    if not rows or not is_image(rows[0].get("example")):
        return []
    wrong = confident_mistakes(rows, per_class=1)[:n_wrong]
    right = sorted((r for r in rows if r["label"] == r["prediction"]), key=lambda r: -r["probability"])[:n_right]
    items, left_out = gallery(wrong + right, assets, (record.name, method), roots)
    return [("h3", f"Test images ({method}): {len(wrong)} confident mistakes, then {len(right)} confident hits"),
            *([("gallery", items)] if items else []), *left_out_note(left_out, len(items))]


def lora_changes(record: RunRecord, assets: Path, roots: Sequence[Path], n: int = 8, k: int = 5) -> list[tuple]:
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
                items, left_out = gallery(rows[:n], assets, (record.name, "lora", name), roots)
                blocks += [("p", f"Images LoRA {name} (showing {min(n, len(rows))}):"),
                           *([("gallery", items)] if items else []), *left_out_note(left_out, len(items))]
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


def error_analysis(record: RunRecord, assets: Path, image_roots: Iterable[str | Path] = ()) -> list[tuple]:
    """Every error-analysis block that applies to this run (thumbnails under the rule in the module docstring)."""
    if record.metrics is None:
        return []
    roots = image_roots_of(record, image_roots)
    blocks = image_gallery(record, record.metrics.primary, assets, roots)
    for method in record.metrics.methods:
        blocks += text_mistakes(record, method)
    if record.metrics.experiment == "lora":
        blocks += lora_changes(record, assets, roots)
    return blocks
