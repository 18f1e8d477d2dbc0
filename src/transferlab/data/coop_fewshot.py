"""CoOp's few-shot split files as split manifests (data/manifests.py) of a task's pool.

CoOp (and CoCoOp, and the works that reuse its draws) saves each K-shot draw as
``split_fewshot/shot_{K}-seed_{S}.pkl``: a pickle of ``{"train": [Datum, ...], "val": [Datum, ...]}``, Dassl's
``Datum`` records with ``_impath``, ``_label`` and ``_classname``. A pickle can run any code when it is loaded,
and such a file is received, not made here: :func:`read_fewshot` loads it with an unpickler that knows one
class, an inert record standing in for ``Datum`` (Python's documented way of restricting globals); a file that
names any other global stops with one line before anything in it runs. Each record's image is then found in
the task's pool by the longest tail of its path that names one image of the pool (its absolute path is the
machine's that made it), at least ``<folder>/<file>``; its label and class name must agree with the pool's.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Sequence

from transferlab.errors import TransferlabError

MAX_BYTES = 64 * 2 ** 20  # CoOp's largest (ImageNet, 16 shots: 16,000 + 4,000 records) is a few MB
MAX_RECORDS = 200_000  # ten times that: a small file repeating one record millions of times is refused
SPLITS = {"train": "train", "val": "validation"}
TAIL = 6  # the longest path tail indexed: enough for every CoOp layout (SUN397: SUN397/a/abbey/<file>)
MIN_TAIL = 2  # a tail must name the image's folder and file
AMBIGUOUS = -1


class Record:
    """Stands in for Dassl's ``Datum``: keeps the state the pickle gives it and runs nothing."""

    def __new__(cls, *args, **kwargs):
        return super().__new__(cls)

    def __init__(self, *args, **kwargs):
        self.state: dict = {}

    def __setstate__(self, state) -> None:
        self.state = state if isinstance(state, dict) else {}


def reconstruct(cls, base, state):
    """``copyreg._reconstructor`` (protocols 0 and 1) for a :class:`Record` only."""
    if cls is not Record or base is not object or state is not None:
        raise pickle.UnpicklingError("copyreg._reconstructor of something other than a Datum")
    return Record()


class DatumUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if name == "Datum":
            return Record
        if module in ("copyreg", "copy_reg") and name == "_reconstructor":  # protocols 0 and 1 (Python 2 names)
            return reconstruct
        if module in ("builtins", "__builtin__") and name == "object":
            return object
        raise pickle.UnpicklingError(f"it names {module}.{name}")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("it holds a persistent id")


def read_fewshot(path: str | Path) -> dict[str, list[tuple[str, int, str]]]:
    """``{"train": [(image path, label, class name), ...], "validation": [...]}`` from a CoOp few-shot pickle,
    read without running anything in it (see the module's text); anything else is one line."""
    path = Path(path)
    if not path.is_file():
        raise TransferlabError(f"CoOp few-shot split {str(path)!r} does not exist: give the path of a "
                               f"split_fewshot/shot_K-seed_S.pkl file")
    if path.stat().st_size > MAX_BYTES:
        raise TransferlabError(f"{str(path)!r} is over {MAX_BYTES >> 20} MiB: not a CoOp few-shot split")
    try:
        with path.open("rb") as handle:
            data = DatumUnpickler(handle).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            MemoryError, RecursionError, UnicodeDecodeError) as exc:
        said = " ".join(str(exc).split())[:120]
        raise TransferlabError(f"{str(path)!r} is not a CoOp few-shot split ({exc.__class__.__name__}: {said}): it "
                               f"was not loaded; only Dassl Datum records are read") from None
    if not isinstance(data, dict) or not isinstance(data.get("train"), list) or not data["train"]:
        raise TransferlabError(f"{str(path)!r} is not a CoOp few-shot split: it needs a 'train' list of Datum "
                               f"records (and a 'val' list)")
    out = {}
    for key, split in SPLITS.items():
        records = data.get(key) or []
        if not isinstance(records, list):
            raise TransferlabError(f"{str(path)!r}: its {key!r} is not a list of Datum records")
        if len(records) > MAX_RECORDS:
            raise TransferlabError(f"{str(path)!r}: its {key!r} lists {len(records):,} records, more than any CoOp "
                                   f"draw ({MAX_RECORDS:,} at most): not a few-shot split")
        out[split] = [datum_fields(r, path, key, n) for n, r in enumerate(records)]
    return out


def datum_fields(record, path: Path, split: str, n: int) -> tuple[str, int, str]:
    state = record.state if isinstance(record, Record) else {}
    impath, label, name = state.get("_impath"), state.get("_label"), state.get("_classname", "")
    if not isinstance(impath, str) or not impath or type(label) is not int or not isinstance(name, str):
        raise TransferlabError(f"{str(path)!r}: {split} record {n} is not a Datum with an image path, an integer "
                               f"label and a class name")
    return impath, label, name


def path_parts(path: str) -> list[str]:
    return [p for p in re.split(r"[\\/]+", path) if p]


def tail_index(pool_paths: Sequence[str]) -> dict[str, int]:
    """Every tail (up to :data:`TAIL` parts) of each pool image's real path -> its row (:data:`AMBIGUOUS` when
    several images end so)."""
    index: dict[str, int] = {}
    for row, p in enumerate(pool_paths):
        parts = path_parts(str(Path(p).resolve()))
        for k in range(MIN_TAIL, min(TAIL, len(parts)) + 1):
            key = "/".join(parts[-k:])
            index[key] = row if key not in index else AMBIGUOUS
    return index


def find_row(index: dict[str, int], impath: str) -> int | None:
    """The pool row whose path shares ``impath``'s longest indexed tail; ``None`` if none or several do."""
    parts = path_parts(impath)
    for k in range(min(TAIL, len(parts)), MIN_TAIL - 1, -1):
        row = index.get("/".join(parts[-k:]))
        if row is not None:
            return None if row == AMBIGUOUS else row
    return None


def same_name(a: str, b: str) -> bool:
    return " ".join(a.replace("_", " ").split()).lower() == " ".join(b.replace("_", " ").split()).lower()


def fewshot_rows(draw: dict[str, list[tuple[str, int, str]]], pool_paths: Sequence[str], labels: Sequence[int],
                 class_names: Sequence[str], source: str) -> dict[str, list[int]]:
    """The pool rows of a CoOp draw (:func:`read_fewshot`), each checked: found once in the pool, with the pool's
    label and class name."""
    index = tail_index(pool_paths)
    rows: dict[str, list[int]] = {}
    for split, records in draw.items():
        rows[split] = []
        for impath, label, name in records:
            row = find_row(index, impath)
            tail = "/".join(path_parts(impath)[-MIN_TAIL:])
            if row is None:
                raise TransferlabError(f"{source}: {split} image {tail!r} is not one image of the task's data: "
                                       f"convert the split with the task it was drawn from, on the same images")
            if labels[row] != label or not same_name(class_names[labels[row]], name):
                raise TransferlabError(f"{source}: {split} image {tail!r} is class {label} ({name!r}) there but "
                                       f"{labels[row]} ({class_names[labels[row]]!r}) in the task: the split is "
                                       f"for another task or class order")
            rows[split].append(row)
    return rows
