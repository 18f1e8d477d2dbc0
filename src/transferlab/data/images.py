"""Image classification data: Tiny ImageNet's folder layout, any imagefolder tree, or a Hub data set.

Every source becomes an :class:`ImageData`: ``datasets.Dataset`` splits with an ``image`` column
(a file path, or the Hub's image) and an integer ``label``, plus one list of class names used for
training and evaluation alike. Images are decoded lazily, per batch (:func:`with_pixels`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar, Literal, Sequence

import numpy as np

from transferlab.config import check_config, setting
from transferlab.data.hub import offline_unless_reachable
from transferlab.errors import TransferlabError

RESOURCES = Path(__file__).parent / "resources"
DEMO_PATH = RESOURCES / "tiny_imagenet_demo"
IMAGENET_CLASSES = RESOURCES / "imagenet1k_classes.tsv"
IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".bmp", ".gif", ".webp"}
WNID = re.compile(r"^n\d{8}$")


@dataclass
class ImageDataConfig:
    """Which images (the ``data`` section of ``transferlab zeroshot`` / ``transferlab lora``): a Tiny ImageNet
    folder or an imagefolder tree (``path``), or a Hub data set (``hub_id``). A label budget (``shots``) trains
    on K images of every class drawn from the training source and chooses settings on ``min(K,
    shots_validation)`` others of every class; the test split stays whole. ``manifest``: a split manifest
    (data/manifests.py) whose images are used instead of a draw."""

    SECTION: ClassVar[str] = "data"
    path: str | None = setting(None, "tiny-imagenet-200 folder or an imagefolder tree; null: the vendored demo "
                                     "subset", replaces=("hub_id", "hub_test_id"))
    hub_id: str | None = setting(None, "instead of path: a Hub data set (e.g. zh-plus/tiny-imagenet)",
                                 replaces=("path",))
    hub_test_id: str | None = setting(None, "a second Hub data set holding the test split (the lab's _validation "
                                            "copy)")
    train_split: str = setting("train", "the Hub data set's training split")
    test_split: str = setting("valid", "the Hub data set's test split")
    image_column: str = setting("image", "the Hub data set's image column")
    label_column: str = setting("label", "the Hub data set's label column")
    class_names_file: str | None = setting(None, "one name per line, in class order; overrides words.txt")
    val_per_class: int = setting(10, "seeded per-class hold-out of train: the validation split (model selection)",
                                 at_least=1, note="(the validation split picks the model)")
    max_train_per_class: int | None = setting(None, "at most this many training images a class (null: all)",
                                              at_least=1)
    max_test_per_class: int | None = setting(None, "at most this many test images a class (null: all)", at_least=1)
    on_corrupt: Literal["skip", "fail"] = setting("skip", "unreadable images: drop them with a count, or stop")
    num_workers: int = setting(0, "DataLoader workers decoding images", at_least=0)
    shots: int | None = setting(None, "a label budget: training images per class (null: all of the training "
                                      "source, minus the val_per_class hold-out)", at_least=1,
                                note="image per class (or null for all)")
    nested_shots: bool = setting(True, "within a seed the K = 2 draw holds the K = 1 draw (false: independent "
                                       "draws)")
    shots_validation: int = setting(4, "with shots: validation images per class, min(shots, this)", at_least=1,
                                    note="(the K-shot validation picks the settings)")
    manifest: str | None = setting(None, "a split manifest (JSONL: ids and labels of the training source, SHA-256; "
                                         "a run's split_manifest.jsonl) to train on instead of a draw (null: draw)")

    def __post_init__(self) -> None:
        check_config(self)

    def validate(self, prefix: str = "data") -> None:
        if self.path and self.hub_id:
            raise TransferlabError(f"give {prefix}.path or {prefix}.hub_id, not both")


@dataclass
class ImageData:
    train: "object"  # datasets.Dataset with columns image, label
    validation: "object"
    test: "object"
    class_ids: list[str]  # WordNet ids (or folder names)
    class_names: list[str]
    definitions: list[str | None] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # unreadable images dropped, per split
    # train and validation are one seeded hold-out of ``source``: their row indices in it. A cache keyed by the
    # source serves every seed's split (``experiments.clip.inputs.cached_split``)
    source: "object" = None
    rows: dict[str, np.ndarray] = field(default_factory=dict)
    fewshot: dict | None = None  # a K-shot draw (or a manifest's): its SHA-256, the manifest given, if any

    def write_manifest(self, folder: str | Path) -> str | None:
        """The draw's ``split_manifest.jsonl`` in ``folder`` (the run directory); its SHA-256 (``None``: no draw)."""
        from transferlab.data.manifests import save_draw

        if self.fewshot is None:
            return None
        return save_draw(folder, {s: self.rows[s] for s in ("train", "validation")}, list(self.source["label"]),
                         pool=self.fewshot["pool_fingerprint"])

    def draw_note(self) -> list[str]:
        """What metrics.json's notes say of the draw: its manifest's SHA-256, and the manifest given."""
        if self.fewshot is None:
            return []
        given = f" from data.manifest={self.fewshot['manifest']}" if self.fewshot.get("manifest") else ""
        return [f"split manifest split_manifest.jsonl{given}: {len(self.train)} training and {len(self.validation)} "
                f"validation images, SHA-256 {self.fewshot['manifest_sha256']}"]


def imagenet_classes() -> dict[str, tuple[list[str], str]]:
    """wnid -> (names, WordNet definition) for the 1,000 ImageNet-1k classes (vendored)."""
    out = {}
    for line in IMAGENET_CLASSES.read_text().splitlines()[1:]:
        _, wnid, names, definition = line.split("\t")
        out[wnid] = ([n.strip() for n in names.split(",")], definition.strip())
    return out


def clean_name(synonyms: str) -> str:
    """``"goldfish, Carassius auratus"`` -> ``"goldfish"``; underscores to spaces."""
    return synonyms.split(",")[0].strip().replace("_", " ")


def open_rgb(image) -> "Image.Image":
    """A path, bytes, a Hub image dict or a PIL image -> an RGB PIL image (greyscale converted)."""
    from PIL import Image

    if isinstance(image, dict):
        image = io.BytesIO(image["bytes"]) if image.get("bytes") else image["path"]
    elif isinstance(image, bytes):
        image = io.BytesIO(image)
    if not isinstance(image, Image.Image):
        image = Image.open(image)
    return image.convert("RGB")


ROW = "_row"  # the column ``with_pixels(..., rows=True)`` adds: each example's row in the split


def with_pixels(dataset, preprocess: Callable[..., "object"], rows: bool = False):
    """The split with images decoded and preprocessed on access, per batch: ``pixel_values``, ``labels``;
    ``rows``: ``preprocess(images, rows)`` is also given each image's row in the split (a view drawn per row)."""
    if rows:
        dataset = dataset.add_column(ROW, list(range(len(dataset))))

    def transform(batch: dict) -> dict:
        images = [open_rgb(x) for x in batch["image"]]
        pixels = preprocess(images, batch[ROW]) if rows else preprocess(images)
        return {"pixel_values": list(pixels), "labels": list(batch["label"])}

    return dataset.with_transform(transform)


# --- the folder layouts -------------------------------------------------------------------------

def detect_layout(path: Path) -> str:
    if (path / "wnids.txt").is_file() and (path / "train").is_dir():
        return "tiny-imagenet"
    root = path / "train" if (path / "train").is_dir() else path
    if any(d.is_dir() and any(f.suffix.lower() in IMAGE_SUFFIXES for f in d.rglob("*")) for d in root.iterdir()):
        return "imagefolder"
    raise TransferlabError(
        f"{path} is not a recognised image data layout: expected Tiny ImageNet's (wnids.txt, words.txt, "
        f"train/<wnid>/images/*.JPEG, val/val_annotations.txt) or an imagefolder tree "
        f"([train/|test/]<class>/<image files>)")


def read_tiny_imagenet(path: Path) -> tuple[list[str], dict[str, str], list, list]:
    """(wnids, wnid->words, train rows, test rows) of the original layout; rows are (file, wnid)."""
    wnids = (path / "wnids.txt").read_text().split()
    known = set(wnids)
    words = {}
    if (path / "words.txt").is_file():
        for line in (path / "words.txt").read_text().splitlines():
            wnid, _, text = line.partition("\t")
            if wnid in known:
                words[wnid] = text
    train = []
    for wnid_dir in sorted((path / "train").iterdir()):
        if not wnid_dir.is_dir():
            continue
        if wnid_dir.name not in known:
            raise TransferlabError(f"class {wnid_dir.name!r} in {path / 'train'} is missing from "
                                   f"{path / 'wnids.txt'}: add it there or remove the folder")
        images = wnid_dir / "images" if (wnid_dir / "images").is_dir() else wnid_dir
        train += [(str(f), wnid_dir.name) for f in sorted(images.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    test = []
    ann = path / "val" / "val_annotations.txt"
    if ann.is_file():
        for n, line in enumerate(ann.read_text().splitlines(), 1):
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) < 2:
                raise TransferlabError(f"{ann} line {n} is not 'file<TAB>wnid...': fix the file")
            if fields[1] not in known:
                raise TransferlabError(f"class {fields[1]!r} in {ann} (line {n}) is missing from "
                                       f"{path / 'wnids.txt'}: add it there or fix the annotation")
            test.append((str(path / "val" / "images" / fields[0]), fields[1]))
    return wnids, words, train, test


def read_imagefolder(path: Path) -> tuple[list[str], list, list]:
    """(class folders, train rows, test rows); test from ``test/`` or ``val/`` beside ``train/``."""
    root = path / "train" if (path / "train").is_dir() else path

    def rows(folder: Path) -> list:
        return [(str(f), d.name) for d in sorted(folder.iterdir()) if d.is_dir()
                for f in sorted(d.rglob("*")) if f.suffix.lower() in IMAGE_SUFFIXES]

    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    test_dir = next((path / n for n in ("test", "val", "validation") if root != path and (path / n).is_dir()), None)
    test = rows(test_dir) if test_dir else []
    unknown = sorted({c for _, c in test} - set(classes))
    if unknown:
        raise TransferlabError(f"test classes {unknown[:5]} have no folder in {root}: every test class needs training images")
    return classes, rows(root), test


_DECODED: dict[tuple[str, int, int], bool] = {}  # (path, size, mtime) -> readable, for this process's later runs


def readable(path: str) -> bool:
    """Whether the file decodes in full (``verify()`` reads the header only and passes a truncated JPEG);
    remembered per path, size and modification time, so the cells of a study check each file once."""
    from PIL import Image

    try:
        stat = os.stat(path)
    except OSError:
        return False
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _DECODED:
        try:
            with Image.open(path) as im:
                im.load()
            _DECODED[key] = True
        except Exception:  # noqa: BLE001 - any decoder failure means "unreadable"
            _DECODED[key] = False
    return _DECODED[key]


def find_corrupt(paths: Sequence[str]) -> list[int]:
    """Indices of files that cannot be decoded (checked up front, so an epoch never stops halfway)."""
    return [i for i, p in enumerate(paths) if not readable(p)]


def drop_corrupt(rows: list, on_corrupt: str, split: str) -> tuple[list, int]:
    bad = find_corrupt([r[0] for r in rows])
    if bad and on_corrupt == "fail":
        raise TransferlabError(f"{len(bad)} unreadable image(s) in the {split} split, e.g. {rows[bad[0]][0]}: "
                               f"replace them, or set data.on_corrupt=skip to drop them with a count")
    drop = set(bad)
    return [r for i, r in enumerate(rows) if i not in drop], len(bad)


# --- splits and names ---------------------------------------------------------------------------

def holdout(labels: Sequence[int], per_class: int, seed: int,
            names: Sequence[str] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Seeded per-class hold-out: (train indices, validation indices), each sorted."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    val = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) <= per_class:
            raise TransferlabError(f"class {names[c] if len(names) > c else c} has {len(idx)} training images, not more than "
                                   f"data.val_per_class={per_class}: lower data.val_per_class")
        val.extend(rng.choice(idx, per_class, replace=False))
    val = np.sort(np.asarray(val, dtype=int))
    return np.setdiff1d(np.arange(len(labels)), val), val


def cap_per_class(rows: list, limit: int | None) -> list:
    if not limit:
        return rows
    seen: dict[str, int] = {}
    out = []
    for row in rows:
        seen[row[1]] = seen.get(row[1], 0) + 1
        if seen[row[1]] <= limit:
            out.append(row)
    return out


def names_from_file(path: str, n: int) -> list[str]:
    file = Path(path)
    if not file.is_file():
        raise TransferlabError(f"class-name file {path} does not exist")
    names = [line.strip() for line in file.read_text().splitlines() if line.strip()]
    if len(names) != n:
        raise TransferlabError(f"class-name file {path} has {len(names)} names but the data has {n} classes: "
                               f"give one name per line, in class order")
    return names


def class_texts(class_ids: Sequence[str], words: dict[str, str]) -> tuple[list[str], list[str | None]]:
    """Names (words.txt's first synonym, else ImageNet's, else the id) and WordNet definitions if known."""
    known = imagenet_classes()
    names, definitions = [], []
    for cid in class_ids:
        if cid in words:
            names.append(clean_name(words[cid]))
        elif cid in known:
            names.append(known[cid][0][0])
        else:
            names.append(clean_name(cid))  # folder names, or a Hub ClassLabel's "name, synonym, ..."
        definitions.append(known[cid][1] if cid in known else None)
    return names, definitions


def check_two_classes(class_ids: Sequence[str], where: str) -> None:
    """A single class is no classification (every prediction right): one line instead of a perfect score."""
    if len(class_ids) < 2:
        raise TransferlabError(f"{where} holds {len(class_ids)} class: classification needs two or more classes "
                               f"(one folder of images each)")


def check_every_class_has_images(class_ids: Sequence[str], train: list, path: Path) -> None:
    """Refuse classes without a (readable) training image: an empty class folder, or a wnids.txt line with
    no folder, would otherwise become a class the model can never learn, scored as if it could."""
    present = {c for _, c in train}
    empty = [c for c in class_ids if c not in present]
    if empty:
        raise TransferlabError(f"{len(empty)} class(es) under {path} have no readable training images "
                               f"({', '.join(empty[:5])}{', ...' if len(empty) > 5 else ''}): add images, or remove "
                               f"the empty class folder(s) (and their wnids.txt lines)")


def pool_fingerprint(source) -> str | None:
    """A hash of a folder pool's images in row order (each image's label, file name and size, links followed:
    the same on any machine holding the same files); ``None`` for a Hub pool (its bytes are not read for it)."""
    images = source["image"]
    if not all(isinstance(p, str) for p in images):
        return None
    h = hashlib.sha256()
    for path, label in zip(images, source["label"]):
        real = Path(path).resolve()
        h.update(f"{label}\t{real.name}\t{real.stat().st_size if real.is_file() else -1}\n".encode())
    return h.hexdigest()[:16]


def to_dataset(rows: list, index: dict[str, int]):
    import datasets

    return datasets.Dataset.from_dict({"image": [r[0] for r in rows], "label": [index[r[1]] for r in rows]})


def load_folder(path: str | Path, val_per_class: int = 10, seed: int = 42, on_corrupt: str = "skip",
                max_train_per_class: int | None = None, max_test_per_class: int | None = None,
                class_names_file: str | None = None) -> ImageData:
    path = Path(path).expanduser()
    if not path.is_dir():
        raise TransferlabError(f"data folder {path} does not exist: give data.path=<tiny-imagenet-200 folder> "
                               f"or leave it unset for the vendored demo subset")
    if detect_layout(path) == "tiny-imagenet":
        class_ids, words, train, test = read_tiny_imagenet(path)
    else:
        (class_ids, train, test), words = read_imagefolder(path), {}
    train, test = cap_per_class(train, max_train_per_class), cap_per_class(test, max_test_per_class)
    train, bad_train = drop_corrupt(train, on_corrupt, "train")
    test, bad_test = drop_corrupt(test, on_corrupt, "test")
    if not train:
        raise TransferlabError(f"no training images found under {path}")
    check_two_classes(class_ids, str(path))
    check_every_class_has_images(class_ids, train, path)
    index = {c: i for i, c in enumerate(class_ids)}
    names, definitions = class_texts(class_ids, words)
    if class_names_file:
        names = names_from_file(class_names_file, len(class_ids))
    full = to_dataset(train, index)
    tr, va = holdout(full["label"], val_per_class, seed, class_ids)
    rows = {"train": tr, "validation": va} if test else {"train": tr, "validation": va, "test": va}
    return ImageData(full.select(tr), full.select(va), to_dataset(test, index) if test else full.select(va),
                     list(class_ids), names, definitions, {"train": bad_train, "test": bad_test}, full, rows)


def load_hub(hub_id: str, test_id: str | None, train_split: str, test_split: str, image_column: str,
             label_column: str, val_per_class: int = 10, seed: int = 42,
             class_names_file: str | None = None) -> ImageData:
    """A Hub copy (``zh-plus/tiny-imagenet``; the lab's ``Multimodal-Fatima/TinyImagenet_train`` with
    ``_validation``). Labels are a ClassLabel; WordNet-id label names get their ImageNet names."""
    import datasets

    try:
        with offline_unless_reachable():
            train = datasets.load_dataset(hub_id, split=train_split)
            test = datasets.load_dataset(test_id or hub_id, split=test_split)
    except Exception as exc:  # noqa: BLE001 - offline, unknown id or split
        raise TransferlabError(f"cannot load Hub data set {hub_id!r} ({exc.__class__.__name__}): it needs "
                               f"the Hub or its local cache; offline, use data.path=<folder> or the default demo") from None
    for ds, split in ((train, train_split), (test, test_split)):
        missing = [c for c in (image_column, label_column) if c not in ds.column_names]
        if missing:
            raise TransferlabError(f"Hub data set split {split!r} lacks column(s) {missing}; columns are "
                                   f"{ds.column_names}: set data.image_column / data.label_column")
    feature = train.features[label_column]
    class_ids = list(getattr(feature, "names", None) or sorted(set(train[label_column])))
    check_two_classes(class_ids, f"Hub data set {hub_id!r}")
    rename = {image_column: "image", label_column: "label"}
    train, test = (ds.select_columns([image_column, label_column]).rename_columns(
        {k: v for k, v in rename.items() if k != v}) for ds in (train, test))
    train, test = (ds.cast_column("image", datasets.Image(decode=False)) for ds in (train, test))
    names, definitions = class_texts(class_ids, {})
    if class_names_file:
        names = names_from_file(class_names_file, len(class_ids))
    tr, va = holdout(train["label"], val_per_class, seed, class_ids)
    return ImageData(train.select(tr), train.select(va), test, class_ids, names, definitions, {}, train,
                     {"train": tr, "validation": va})


def load_images(cfg: ImageDataConfig, seed: int = 42) -> ImageData:
    """The data an :class:`ImageDataConfig` names (default: the vendored demo);
    with ``cfg.shots``, its K-shot draw (:func:`with_shots`)."""
    if cfg.hub_id:
        data = load_hub(cfg.hub_id, cfg.hub_test_id, cfg.train_split, cfg.test_split, cfg.image_column,
                        cfg.label_column, cfg.val_per_class, seed, cfg.class_names_file)
    else:
        data = load_folder(cfg.path or DEMO_PATH, cfg.val_per_class, seed, cfg.on_corrupt,
                           cfg.max_train_per_class, cfg.max_test_per_class, cfg.class_names_file)
    if cfg.shots is None and not cfg.manifest:
        return data
    return with_shots(data, cfg.shots, seed, nested=cfg.nested_shots,
                      validation_shots=min(cfg.shots or cfg.shots_validation, cfg.shots_validation),
                      manifest=cfg.manifest)


def with_shots(data: ImageData, shots: int | None, seed: int, *, nested: bool = True,
               validation_shots: int | None = None, manifest: str | None = None) -> ImageData:
    """The data with train = ``shots`` images of every class and validation = ``validation_shots`` others of
    every class, both drawn from the training source (``data.fewshot.fewshot_split``); test unchanged. The
    rows index ``data.source``, so a cache of the source serves every K and seed. ``manifest``: the images of
    that split manifest instead of a draw (checked against the source's labels: data/manifests.py)."""
    from transferlab.data.fewshot import fewshot_split
    from transferlab.data.manifests import draw_digest, given_draw

    if data.source is None or "test" in data.rows:
        raise TransferlabError(f"data.{'manifest' if manifest else 'shots'} needs a test split apart from the training "
                               f"images (Tiny ImageNet's val/ folder, an imagefolder's test/ or a Hub test split)")
    labels = list(data.source["label"])
    pool = pool_fingerprint(data.source)  # checked against a given manifest's, recorded in the run's own
    if manifest:
        try:
            train, validation = given_draw(manifest, labels, shots, seed, validation_shots or 4, pool=pool)
        except TransferlabError as exc:
            raise TransferlabError(f"data.manifest: {exc}") from None
    else:
        train, validation = fewshot_split(labels, shots, seed, nested=nested, validation_shots=validation_shots)
    fewshot = {"shots": shots, "manifest": manifest, "pool_fingerprint": pool,
               "manifest_sha256": draw_digest({"train": train, "validation": validation}, labels)}
    return dataclasses.replace(data, train=data.source.select(train), validation=data.source.select(validation),
                               rows={"train": train, "validation": validation}, fewshot=fewshot)
