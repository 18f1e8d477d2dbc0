"""Rotten Tomatoes from the two original files, split exactly as the Hub's ``rotten_tomatoes``.

Rule (see the data README): decode latin-1, strip each line; per class the first 80% (rounded)
is train, the next 10% validation, the rest test; positives first, then negatives; label 1 = pos.
"""

from __future__ import annotations

from pathlib import Path

from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from transferlab.errors import TransferlabError

VENDORED = Path(__file__).parent / "resources" / "rotten_tomatoes"
LABEL_NAMES = ["neg", "pos"]
FILES = {"pos": "rt-polarity.pos", "neg": "rt-polarity.neg"}


def read_lines(path: Path) -> list[str]:
    with open(path, encoding="latin-1", newline="\n") as f:
        return [line.strip() for line in f.read().split("\n")[:-1]] if path.stat().st_size else []


def split_bounds(n: int) -> tuple[int, int]:
    return int(0.8 * n + 0.5), int(0.9 * n + 0.5)


def load_rotten_tomatoes(folder: str | Path | None = None) -> DatasetDict:
    """The Hub's splits rebuilt from ``rt-polarity.pos``/``.neg`` in ``folder`` (default: the vendored copy)."""
    folder = Path(folder) if folder else VENDORED
    missing = [name for name in FILES.values() if not (folder / name).is_file()]
    if missing:
        raise TransferlabError(f"Rotten Tomatoes folder {folder} lacks {', '.join(missing)}: point data.path at the "
                               f"folder holding rt-polarity.pos and rt-polarity.neg, or leave it empty for the vendored copy")
    pos, neg = read_lines(folder / FILES["pos"]), read_lines(folder / FILES["neg"])
    features = Features({"text": Value("string"), "label": ClassLabel(names=LABEL_NAMES)})
    columns = {split: {"text": [], "label": []} for split in ("train", "validation", "test")}
    for lines, label in ((pos, 1), (neg, 0)):
        i1, i2 = split_bounds(len(lines))
        for split, part in (("train", lines[:i1]), ("validation", lines[i1:i2]), ("test", lines[i2:])):
            columns[split]["text"] += part
            columns[split]["label"] += [label] * len(part)
    return DatasetDict({split: Dataset.from_dict(cols, features=features) for split, cols in columns.items()})
