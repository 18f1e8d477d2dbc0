"""Text classification data: Rotten Tomatoes (vendored or a folder), any Hub data set, or CSV/JSONL files.

Every source ends as a ``datasets.DatasetDict`` with ``train``/``validation``/``test`` splits of
``text`` (str) and ``label`` (int) columns plus a list of label names, validated up front.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict

from transferlab.config import check_config, setting
from transferlab.data.fewshot import fewshot_split
from transferlab.data.hub import offline_unless_reachable
from transferlab.data.rotten_tomatoes import LABEL_NAMES as RT_LABELS
from transferlab.data.rotten_tomatoes import load_rotten_tomatoes
from transferlab.errors import TransferlabError

SPLITS = ("train", "validation", "test")
# csv's default field limit is 128 KiB (131,072 characters): a longer review would fail to read. The largest
# limit every platform's C long holds (2**31 - 1); pandas, which the datasets loader reads CSV with, has none.
CSV_FIELD_LIMIT = 2**31 - 1


@dataclass
class TextDataConfig:
    """Where the texts come from. ``source``: ``rotten_tomatoes`` (the two original files: vendored, or
    the folder ``path``), ``hub`` (data set ``name`` through ``datasets.load_dataset``) or ``files``
    (``train_file``/``validation_file``/``test_file``, CSV or JSON Lines). A label budget (``shots``,
    data/fewshot.py) trains on K examples of every class drawn from the train split (seeded by the run's
    seed) and chooses settings on ``min(K, shots_validation)`` per class drawn apart from them out of the
    same train pool; the validation split is then unused, test stays whole. ``manifest``: a split manifest
    (data/manifests.py) whose examples are used instead of a draw."""

    SECTION: ClassVar[str] = "data"
    source: Literal["rotten_tomatoes", "hub", "files"] = setting(
        "rotten_tomatoes", "rotten_tomatoes (vendored, or the folder path), hub (the data set name) or files")
    name: str = setting("rotten_tomatoes", "source=hub: the data set's Hub id")
    path: str | None = setting(None, "source=rotten_tomatoes: a folder holding rt-polarity.pos/.neg (null: the "
                                     "vendored copy)")
    train_file: str | None = setting(None, "source=files: the training split (CSV or JSON Lines)")
    validation_file: str | None = setting(None, "source=files: the validation split (null: validation_fraction "
                                                "of train)")
    test_file: str | None = setting(None, "source=files: the test split")
    text_column: str = setting("text", "the column holding the texts")
    label_column: str = setting("label", "the column holding the labels (names or integers)")
    label_names: list[str] | None = setting(None, "the classes in label order (null: from the data)")
    limit: int | None = setting(None, "at most this many examples per split, balanced over classes (quick runs)",
                                at_least=1, note="(or null for all examples)")
    empty_texts: Literal["drop", "error"] = setting("drop", "empty texts: drop them with a note, or stop")
    validation_fraction: float = setting(0.1, "held out of train, stratified, when a source has no validation "
                                              "split", above=0, below=1, text="a fraction in (0, 1)")
    seed: int = setting(0, "the seed of the validation hold-out (a run's K-shot draw uses the run's seed)")
    shots: int | None = setting(None, "a label budget: training examples per class (null: all the data)",
                                at_least=1, note="example per class (or null for all)")
    nested_shots: bool = setting(True, "within a seed the K-shot draw holds the smaller draws; false: "
                                       "independent draws")
    shots_validation: int = setting(4, "with shots: validation examples per class, min(shots, this)", at_least=1)
    manifest: str | None = setting(None, "a split manifest (JSONL: ids and labels of the train pool, SHA-256; a "
                                         "run's split_manifest.jsonl) to train on instead of a draw (null: draw)")

    def __post_init__(self) -> None:  # checked wherever the settings come from, before any run starts
        check_config(self)


@dataclass
class TextData:
    splits: DatasetDict
    label_names: list[str]
    notes: list[str] = field(default_factory=list)  # what loading changed, e.g. dropped empty texts
    # With data.shots: the whole train split the draws come from, and each drawn split's rows in it
    pool: Dataset | None = None
    rows: dict[str, np.ndarray] = field(default_factory=dict)
    fewshot: dict | None = None  # shots, nested, validation_shots, seed, pool size: recorded in metrics.json

    def write_manifest(self, folder: str | Path) -> str | None:
        """The draw's ``split_manifest.jsonl`` in ``folder`` (the run directory); its SHA-256 (``None``: no draw)."""
        from transferlab.data.manifests import save_draw

        if self.fewshot is None:
            return None
        return save_draw(folder, self.rows, list(self.pool["label"]), pool=self.fewshot["pool_fingerprint"])

    def fingerprint(self, split: str) -> str:
        """A content hash of one split's texts and labels (stable across processes); ``pool``: the train pool."""
        return content_fingerprint(self.pool if split == "pool" else self.splits[split])


def content_fingerprint(ds: Dataset) -> str:
    """A hash of a split's texts and labels, in row order (stable across processes and machines)."""
    h = hashlib.sha256()
    for text, label in zip(ds["text"], ds["label"]):
        h.update(text.encode("utf-8", "surrogatepass"))
        h.update(b"\x00%d\x01" % label)
    return h.hexdigest()[:16]


def load_text_data(cfg: TextDataConfig, seed: int | None = None) -> TextData:
    """The three splits; with ``cfg.shots``, train and validation are K-shot draws out of train seeded by
    ``seed`` (the run's seed; default ``cfg.seed``), and test is the whole test split."""
    if cfg.source == "rotten_tomatoes":
        raw, names = load_rotten_tomatoes(cfg.path), list(RT_LABELS)
    elif cfg.source == "hub":
        raw = load_hub(cfg.name)
        names = None
    else:
        raw, names = load_files(cfg), None
    for split in [s for s in SPLITS if s in raw]:
        check_columns(raw[split], cfg, split)
        check_labels(raw[split][cfg.label_column], split)
    raw = ensure_validation(raw, cfg)
    raw = DatasetDict({s: raw[s].rename_columns(renames(cfg)).select_columns(["text", "label"]) for s in SPLITS})
    names = cfg.label_names or names or label_names_of(raw)
    raw = encode_labels(raw, names)
    raw, notes = handle_empty(raw, cfg)
    if cfg.limit:
        raw = DatasetDict({s: balanced_head(ds, cfg.limit) for s, ds in raw.items()})
    for split in SPLITS:
        classes = sorted(set(raw[split]["label"]))
        if len(classes) < 2:
            raise TransferlabError(
                f"the {split} split holds one class only ({names[classes[0]] if classes else 'none'}): "
                f"a classifier needs examples of at least two classes; check label_column or the data files")
    data = TextData(raw, list(names), notes)
    return draw_shots(data, cfg, cfg.seed if seed is None else seed) if cfg.shots or cfg.manifest else data


def draw_shots(data: TextData, cfg: TextDataConfig, seed: int) -> TextData:
    """Train on ``cfg.shots`` per class of the train split, validate on a disjoint draw of
    ``min(shots, shots_validation)`` per class from the same pool; the validation split is not used. With
    ``cfg.manifest``, the manifest's examples of the pool instead of a draw (checked: data/manifests.py)."""
    from transferlab.data.manifests import draw_digest, given_draw

    pool = data.splits["train"]
    labels = list(pool["label"])
    fingerprint = content_fingerprint(pool)  # checked against a given manifest's, recorded in the run's own
    validation_shots = min(cfg.shots or cfg.shots_validation, cfg.shots_validation)
    try:
        train, validation = (given_draw(cfg.manifest, labels, cfg.shots, seed, cfg.shots_validation,
                                        pool=fingerprint) if cfg.manifest
                             else fewshot_split(labels, cfg.shots, seed, nested=cfg.nested_shots,
                                                validation_shots=validation_shots))
    except TransferlabError as exc:
        raise TransferlabError(f"data.{'manifest' if cfg.manifest else 'shots'}: {exc}") from None
    splits = DatasetDict({"train": pool.select(train), "validation": pool.select(validation),
                          "test": data.splits["test"]})
    sha = draw_digest({"train": train, "validation": validation}, labels)
    fewshot = {"shots": cfg.shots, "nested": cfg.nested_shots, "validation_shots": validation_shots, "seed": seed,
               "pool": len(pool), "pool_per_class": int(np.bincount(labels).min()),
               "validation_from": "train pool (the validation split is unused)", "manifest_sha256": sha,
               "pool_fingerprint": fingerprint}
    if cfg.manifest:
        fewshot.update(manifest=cfg.manifest, validation_shots=len(validation) // len(data.label_names))
        note = (f"split manifest {cfg.manifest} (SHA-256 {sha[:12]}...): {len(train)} training and {len(validation)} "
                f"validation examples of the {len(pool)} train examples, instead of a draw; test whole")
    else:
        note = (f"label budget: {cfg.shots} training and {validation_shots} validation examples per class, drawn "
                f"(seed {seed}, {'nested' if cfg.nested_shots else 'independent'}) from the {len(pool)} train "
                f"examples; test whole")
    return TextData(splits, data.label_names, data.notes + [note], pool=pool,
                    rows={"train": train, "validation": validation}, fewshot=fewshot)


def load_hub(name: str) -> DatasetDict:
    import datasets

    try:
        with offline_unless_reachable():  # offline: the local cache or a quick error, not a minute of retries
            ds = datasets.load_dataset(name)
    except (ConnectionError, OSError) as exc:
        raise TransferlabError(
            f"data set {name!r} cannot be loaded from the Hugging Face Hub ({exc.__class__.__name__}): "
            f"no network or no such data set; use --config offline (vendored Rotten Tomatoes), "
            f"data.source=rotten_tomatoes or data.source=files with local CSV/JSONL files") from None
    except Exception as exc:  # datasets raises its own DatasetNotFoundError etc.
        raise TransferlabError(f"data set {name!r} cannot be loaded from the Hub: {str(exc).splitlines()[0]}; "
                               f"check the id, or use local files (data.source=files)") from None
    return ds


def load_files(cfg: TextDataConfig) -> DatasetDict:
    files = {s: getattr(cfg, f"{s}_file") for s in SPLITS if getattr(cfg, f"{s}_file")}
    for split in ("train", "test"):
        if split not in files:
            raise TransferlabError(f"data.source=files needs data.{split}_file (CSV or .jsonl); got none")
    out = {}
    for split, file in files.items():
        path = Path(file)
        if not path.is_file():
            raise TransferlabError(f"data file {file!r} for the {split} split does not exist: fix data.{split}_file")
        if path.suffix.lower() == ".csv":
            builder = "csv"
        elif path.suffix.lower() in (".jsonl", ".json"):
            builder = "json"
        else:
            raise TransferlabError(f"data file {file!r} must be .csv, .jsonl or .json (got {path.suffix or 'no suffix'})")
        check_file(path, builder, cfg.label_column)
        out[split] = read_file(path, builder)
    return DatasetDict(out)


def read_file(path: Path, builder: str) -> Dataset:
    import datasets

    datasets.disable_progress_bars()  # local files load in a blink; keep the output to what matters
    try:
        return datasets.load_dataset(builder, data_files=str(path), split="train")
    except Exception as exc:  # noqa: BLE001 - the datasets error wraps the cause: name that one
        cause = exc.__cause__ or exc
        raise TransferlabError(f"cannot read {str(path)!r} as {builder.upper()}: {cause.__class__.__name__}: "
                               f"{(str(cause) or 'unknown').splitlines()[0]}") from None
    finally:
        datasets.enable_progress_bars()


def check_file(path: Path, builder: str, label_column: str) -> None:
    """Read a data file once ourselves, so a broken one is named with its line and cause (the datasets
    loader says only "An error occurred while generating the dataset"): encoding, emptiness, rows whose
    fields do not match the header, lines that are not JSON, rows without a label."""
    for line, row in read_records(path, builder):  # (a missing label column is named later, with the columns found)
        if label_column in row and blank(row[label_column]):
            raise TransferlabError(f"data file {str(path)!r} line {line} has no label (column {label_column!r} "
                                   f"is blank): fill it in or remove the row")


def read_utf8(path: Path, what: str = "data file") -> str:
    """The file's text, or a one-line error naming an empty or non-UTF-8 file (with the line and the fix)."""
    raw = path.read_bytes()
    if not raw.strip():
        raise TransferlabError(f"{what} {str(path)!r} is empty: give a file with a header line and rows")
    try:
        return raw.decode("utf-8-sig")  # a byte-order mark (as Excel writes) is not text
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise TransferlabError(f"{what} {str(path)!r} is not UTF-8 (line {line} holds byte "
                               f"0x{raw[exc.start]:02x}; Latin-1 or Windows-1252?): convert it, e.g. "
                               f"iconv -f latin1 -t utf-8 {path} > utf8{path.suffix}") from None


def read_records(path: Path, builder: str | None = None, what: str = "data file") -> list[tuple[int, dict]]:
    """(line, record) of a CSV or JSON Lines file (``builder``: ``csv`` / ``json``, default from the suffix);
    a ``.json`` file holding one list of records gives them with line 0. One-line errors name line and cause."""
    builder = builder or ("csv" if path.suffix.lower() == ".csv" else "json")
    text = read_utf8(path, what)
    if builder == "csv":
        return csv_rows(text, path)
    return json_rows(text, path) or [(0, r) for r in json_document(text) if isinstance(r, dict)]


def json_document(text: str) -> list:
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        return []
    return document if isinstance(document, list) else [document]


def csv_rows(text: str, path: Path) -> list[tuple[int, dict]]:
    """(line, row) of every record of a CSV text, or a one-line error for a row that does not fit the header."""
    if csv.field_size_limit() < CSV_FIELD_LIMIT:
        csv.field_size_limit(CSV_FIELD_LIMIT)
    reader = csv.reader(io.StringIO(text, newline=""))
    out = []
    try:
        header = next(reader, None)
        for row in reader:
            if row:
                out.append((reader.line_num, csv_record(row, header, reader.line_num, path)))
    except csv.Error as exc:
        raise TransferlabError(f"data file {str(path)!r} line {reader.line_num} is not valid CSV ({exc}): fix its "
                               f"quoting") from None
    if not out:
        raise TransferlabError(f"data file {str(path)!r} has a header but no rows")
    return out


def csv_record(row: list[str], header: list[str], line: int, path: Path) -> dict:
    if len(row) != len(header):
        raise TransferlabError(f"data file {str(path)!r} line {line} has {len(row)} fields, its header "
                               f"{len(header)} ({', '.join(header)}): quote texts that hold commas")
    return dict(zip(header, row))


def json_rows(text: str, path: Path) -> list[tuple[int, dict]]:
    """(line, record) of a JSON Lines text (a ``.json`` file may also be one JSON document), or a one-line error."""
    if path.suffix.lower() == ".json":
        try:
            json.loads(text)
            return []  # one document (a list of records): the loader reads it
        except json.JSONDecodeError:
            pass
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TransferlabError(f"data file {str(path)!r} line {n} is not valid JSON ({exc.msg} at column "
                                   f"{exc.colno}): fix or remove the line") from None
        if not isinstance(record, dict):
            raise TransferlabError(f"data file {str(path)!r} line {n} is not a JSON object: write one "
                                   f'{{"text": ..., "label": ...}} object a line')
        out.append((n, record))
    return out


def ensure_validation(raw: DatasetDict, cfg: TextDataConfig) -> DatasetDict:
    """Hold out a stratified validation split of train when the source has none."""
    if "validation" in raw:
        return raw
    if "train" not in raw or "test" not in raw:
        raise TransferlabError(f"the data set needs train and test splits; found {', '.join(raw) or 'none'}")
    train = raw["train"]
    stratify = cfg.label_column if isinstance(train.features.get(cfg.label_column), ClassLabel) else None
    parts = train.train_test_split(test_size=cfg.validation_fraction, seed=cfg.seed, stratify_by_column=stratify)
    return DatasetDict({"train": parts["train"], "validation": parts["test"], "test": raw["test"]})


def renames(cfg: TextDataConfig) -> dict[str, str]:
    pairs = {cfg.text_column: "text", cfg.label_column: "label"}
    return {old: new for old, new in pairs.items() if old != new}


def check_columns(ds: Dataset, cfg: TextDataConfig, split: str) -> None:
    for kind, column in (("text", cfg.text_column), ("label", cfg.label_column)):
        if column not in ds.column_names:
            raise TransferlabError(f"the {split} split has no {kind} column {column!r}; columns found: "
                                   f"{', '.join(ds.column_names)}. Set data.{kind}_column")


def blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def check_labels(labels: list, split: str) -> None:
    """Every row has a label (a blank cell would become a class of its own or fail in the middle)."""
    missing = [i for i, value in enumerate(labels) if blank(value)]
    if missing:
        raise TransferlabError(f"the {split} split has {len(missing)} rows without a label (first: row "
                               f"{missing[0] + 1}): fill them in or remove those rows")


def label_names_of(raw: DatasetDict) -> list[str]:
    feature = raw["train"].features["label"]
    if isinstance(feature, ClassLabel):
        return list(feature.names)
    values = {v for ds in raw.values() for v in ds["label"]}
    return [str(v) for v in sorted(values, key=lambda v: (isinstance(v, str), v))]


def encode_labels(raw: DatasetDict, names: list[str]) -> DatasetDict:
    """Labels as ints 0..n-1 in the order of ``names`` (string labels and int labels alike)."""
    index = {name: i for i, name in enumerate(names)}
    out = {}
    for split, ds in raw.items():
        if isinstance(ds.features["label"], ClassLabel) and list(ds.features["label"].names) == names:
            out[split] = ds
            continue
        labels = [label_index(value, names, index) for value in ds["label"]]
        if None in labels:
            value = ds["label"][labels.index(None)]
            raise TransferlabError(f"the {split} split has label {value!r}, which is not among the label names "
                                   f"{names}; fix data.label_names or the data")
        out[split] = ds.remove_columns("label").add_column("label", labels)
    return DatasetDict(out)


def label_index(value: object, names: list[str], index: dict[str, int]) -> int | None:
    """A label's class index: by name (strings, or ints named by their digits), else by position."""
    if str(value) in index:
        return index[str(value)]
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(names):
        return value
    return None


def handle_empty(raw: DatasetDict, cfg: TextDataConfig) -> tuple[DatasetDict, list[str]]:
    notes, out = [], {}
    for split, ds in raw.items():
        keep = [i for i, t in enumerate(ds["text"]) if isinstance(t, str) and t.strip()]
        dropped = len(ds) - len(keep)
        if dropped and cfg.empty_texts == "error":
            raise TransferlabError(f"the {split} split has {dropped} empty or missing texts: clean the data, "
                                   f"or set data.empty_texts=drop to drop them")
        if dropped:
            notes.append(f"dropped {dropped} empty texts from the {split} split (data.empty_texts=drop)")
            ds = ds.select(keep)
        out[split] = ds
    return DatasetDict(out), notes


def balanced_head(ds: Dataset, limit: int) -> Dataset:
    """The first rows of each class, taken round-robin until ``limit`` rows (original order kept)."""
    if len(ds) <= limit:
        return ds
    by_class: dict[int, list[int]] = {}
    for i, label in enumerate(ds["label"]):
        by_class.setdefault(label, []).append(i)
    picked, queues = [], [iter(v) for _, v in sorted(by_class.items())]
    while len(picked) < limit and queues:
        for q in list(queues):
            nxt = next(q, None)
            if nxt is None:
                queues.remove(q)
            elif len(picked) < limit:
                picked.append(nxt)
    return ds.select(sorted(picked))
