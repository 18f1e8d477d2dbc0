"""Checks across splits that no single split shows: evaluation rows that are exact copies of training rows
(a test score that measures memory, not transfer) and classes missing from an evaluation split (a macro
score that averages a class it cannot measure). Each returns notes for ``metrics.json``; nothing is dropped.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Iterable, Mapping, Sequence

EVALUATION_SPLITS = ("validation", "test")


def exact_duplicates(train: Iterable[Hashable], other: Iterable[Hashable]) -> int:
    """How many rows of ``other`` are exactly equal to some training row."""
    seen = set(train)
    return sum(1 for row in other if row in seen)


def duplicate_notes(rows: Mapping[str, Sequence[Hashable]], what: str = "texts") -> list[str]:
    """One note per evaluation split holding rows identical to training rows, with the count."""
    notes = []
    for split in EVALUATION_SPLITS:
        if split in rows and "train" in rows:
            count = exact_duplicates(rows["train"], rows[split])
            if count:
                notes.append(f"{count} of {len(rows[split])} {split} {what} are exact copies of training {what}: "
                             f"the {split} score partly measures memory (deduplicate the data to measure transfer)")
    return notes


def missing_class_notes(labels: Mapping[str, Sequence[int]], label_names: Sequence[str]) -> list[str]:
    """One note per evaluation split lacking classes that train has, naming them (macro scores then average
    over the classes present: see ``evaluation.metrics.classification_metrics``)."""
    notes = []
    trained = {int(y) for y in labels.get("train", [])}
    for split in EVALUATION_SPLITS:
        if split not in labels:
            continue
        missing = sorted(trained - {int(y) for y in labels[split]})
        if missing:
            names = ", ".join(str(label_names[i]) for i in missing)
            notes.append(f"the {split} split has no example of {len(missing)} class(es) present in train ({names}): "
                         f"its macro precision, recall and F1 average over the classes present")
    return notes


def split_notes(texts: Mapping[str, Sequence[str]], labels: Mapping[str, Sequence[int]],
                label_names: Sequence[str]) -> list[str]:
    """Both checks for a text data set, each note also printed as a warning."""
    notes = duplicate_notes(texts) + missing_class_notes(labels, label_names)
    for note in notes:
        print(f"warning: {note}", flush=True)
    return notes


def checked_notes(data) -> list[str]:
    """The notes of a :class:`~transferlab.data.text.TextData` (printed) and those of :func:`split_notes`."""
    for note in data.notes:
        print(f"note: {note}")
    splits = data.splits
    return list(data.notes) + split_notes({s: splits[s]["text"] for s in splits},
                                          {s: splits[s]["label"] for s in splits}, data.label_names)


def image_split_notes(data) -> list[str]:
    """Both checks for an :class:`~transferlab.data.images.ImageData`, each note printed as a warning. Images
    are compared by resolved path (cheap: the same files given as training and test data); decoded
    duplicates under other names are not searched for."""
    splits = {"train": data.train, "validation": data.validation, "test": data.test}
    paths = {s: [os.path.realpath(p) for p in d["image"] if isinstance(p, str)] for s, d in splits.items()}
    notes = duplicate_notes(paths, what="images") + missing_class_notes(
        {s: d["label"] for s, d in splits.items()}, data.class_names)
    for note in notes:
        print(f"warning: {note}", flush=True)
    return notes
