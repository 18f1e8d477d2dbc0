"""Tasks as data: one YAML file a task (``configs/tasks/<name>.yaml`` in the package, or a file of the user's).

A task names its modality (``text`` or ``image``), its source, its columns or folder layout, its class names,
its zero-shot prompt templates and its metric. ``--task NAME_OR_FILE`` sets an experiment's ``data`` section
from it (:func:`apply_task`); ``--suite NAME_OR_FILE`` lists tasks (``configs/suites/<name>.yaml``). Sources::

    source: {builtin: rotten_tomatoes}          # the vendored Rotten Tomatoes (text) or tiny_imagenet_demo (image)
    source: {hub: SetFit/sst2, revision: ...}   # a Hub data set (loads where the Hub or its cache is reachable)
    source: {folder: ./my-data}                 # text: train/validation/test .csv/.jsonl files in it (the Hub's
                                                # data-files layout); image: an imagefolder or Tiny ImageNet tree
    source: {files: {train: a.csv, test: b.csv}}
    source: {folder: ./caltech-101, coop_split: split_zhou_Caltech101.json, image_dir: 101_ObjectCategories}
    source: {folder: ./fgvc_aircraft, image_dir: images, image_suffix: .jpg, classes_file: variants.txt,
             image_lists: {train: images_variant_train.txt, val: images_variant_val.txt, test: images_variant_test.txt}}

The CoOp image sets follow CoOp's DATASETS.md and its ``datasets/*.py`` readers: a ``split_zhou_<Name>.json``
split file (``coop_split``), FGVCAircraft's list files (``image_lists``: ``<image id> <class name>`` a line, the
classes in ``classes_file`` order), and ImageNet's ``classnames.txt`` (``<folder> <class name>`` a line:
``class_names_by_folder: true``). CoOp's val joins train here: the runs hold out or draw their own validation.

Paths are relative to the task file. A task file inside a study folder (one holding ``study.json``) is data
received with it: its paths must stay inside that folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from transferlab.config import load_yaml
from transferlab.errors import TransferlabError

TASKS_DIR = Path(__file__).resolve().parent.parent / "configs" / "tasks"
SUITES_DIR = Path(__file__).resolve().parent.parent / "configs" / "suites"
MODALITIES = ("text", "image")
METRICS = ("accuracy", "f1", "recall", "top5_accuracy")
KEYS = {"name", "modality", "description", "source", "splits", "columns", "class_names", "class_names_file",
        "class_names_by_folder", "templates", "metric", "reference"}
SOURCE_KINDS = ("builtin", "hub", "folder", "files")
BUILTINS = {"rotten_tomatoes": "text", "tiny_imagenet_demo": "image"}
TEXT_SPLITS = ("train", "validation", "test")
LIST_SPLITS = ("train", "val", "test")  # FGVCAircraft's list files, as CoOp names its splits


@dataclass(frozen=True)
class Task:
    name: str
    modality: str
    source: dict
    file: str  # where the task was read from
    digest: str  # SHA-256 of the task file's bytes
    splits: dict = field(default_factory=dict)
    columns: dict = field(default_factory=dict)
    class_names: list | None = None
    class_names_file: str | None = None
    class_names_by_folder: bool = False  # class_names_file holds '<folder> <name>' lines (CoOp's ImageNet)
    templates: list | None = None
    metric: str = "accuracy"
    reference: bool = False  # the reference lab's own task, split and metric: the report may compare with it
    description: str = ""

    def record(self) -> dict:
        """What a study keeps of the task (``study.json``): enough to read its leaderboard back."""
        return {"name": self.name, "modality": self.modality, "metric": self.metric, "sha256": self.digest,
                "source": self.source, "reference": self.reference}


def known_tasks() -> list[str]:
    return sorted(p.stem for p in TASKS_DIR.glob("*.yaml"))


def known_suites() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))


def named_file(spec: str, folder: Path, what: str, known: list[str], hint: str) -> Path:
    """The YAML file ``spec`` names: a path that exists, else a built-in one in ``folder``, else one line."""
    path = Path(spec).expanduser()
    if path.suffix.lower() in (".yaml", ".yml") or "/" in spec:
        if not path.is_file():
            raise TransferlabError(f"{what} file {spec!r} does not exist: give a {what} file or one of "
                                   f"{', '.join(known)}")
        return path
    if (folder / f"{spec}.yaml").is_file():
        return folder / f"{spec}.yaml"
    raise TransferlabError(f"unknown {what} {spec!r}: give one of {', '.join(known)} or a {what} YAML file ({hint})")


def task_file(spec: str) -> Path:
    """The file of ``--task NAME_OR_FILE``: a path that exists, else a built-in task's file, else one line."""
    return named_file(spec, TASKS_DIR, "task", known_tasks(), "see docs/tasks.md")


def read_mapping(path: Path, what: str) -> dict:
    raw = path.read_bytes()
    try:
        data = load_yaml(raw)
    except yaml.YAMLError as exc:
        raise TransferlabError(f"{what} {str(path)!r} is not valid YAML ({str(exc).splitlines()[0]}): fix it") from None
    if not isinstance(data, dict):
        raise TransferlabError(f"{what} {str(path)!r} must be a YAML mapping (name: ..., modality: ..., ...)")
    return data


def load_task(spec: str) -> Task:
    """The task ``spec`` names (a built-in name or a YAML file), validated, its paths resolved."""
    path = task_file(spec)
    data = read_mapping(path, "task file")
    unknown = sorted(set(data) - KEYS)
    if unknown:
        raise TransferlabError(f"task file {str(path)!r} has unknown key(s) {', '.join(unknown)}: the keys are "
                               f"{', '.join(sorted(KEYS))}")
    check_shapes(data, path)
    name = str(data.get("name") or path.stem)
    if not name.replace("_", "").replace("-", "").isalnum() or len(name) > NAME_LENGTH:
        raise TransferlabError(f"task name {name[:80]!r} in {str(path)!r}: use letters, digits, '-' and '_' only, "
                               f"at most {NAME_LENGTH}")
    modality = data.get("modality")
    if modality not in MODALITIES:
        raise TransferlabError(f"task {name}: modality must be text or image, got {modality!r}")
    metric = data.get("metric", "accuracy")
    if metric not in METRICS:
        raise TransferlabError(f"task {name}: metric must be one of {', '.join(METRICS)}, got {metric!r}")
    source = resolve_source(data.get("source"), name, modality, path)
    task = Task(name, modality, source, str(path), hashlib.sha256(path.read_bytes()).hexdigest(),
                splits=dict(data.get("splits") or {}), columns=dict(data.get("columns") or {}),
                class_names=data.get("class_names"), class_names_file=local(data.get("class_names_file"), path),
                class_names_by_folder=bool(data.get("class_names_by_folder", False)),
                templates=check_templates(data.get("templates"), name), metric=metric,
                reference=bool(data.get("reference", False)), description=str(data.get("description", "")))
    check_received(task, path)
    return task


NAME_LENGTH = 100
# What each key of a task file holds (a received file may hold anything): text, a name (text or a number), true
# or false, a list of names, a mapping of names to names, or the source mapping (resolve_source checks its kind).
NAME = (str, int)  # a name or a path; YAML reads `image_dir: 2750` as a number
SHAPES = {"name": NAME, "modality": str, "description": str, "metric": str, "class_names_file": NAME,
          "class_names_by_folder": bool, "reference": bool, "class_names": [NAME], "templates": [str],
          "splits": {str: NAME}, "columns": {str: NAME}, "source": dict}
SOURCE_SHAPES = {"builtin": str, "hub": NAME, "folder": NAME, "coop_split": NAME, "classes_file": NAME,
                 "image_dir": NAME, "image_suffix": str, "files": {str: NAME}, "image_lists": {str: NAME},
                 "classes": [NAME]}


def has_shape(value, shape) -> bool:
    if isinstance(shape, list):
        return isinstance(value, list) and all(has_shape(v, shape[0]) for v in value)
    if isinstance(shape, dict) and shape:
        (key, item), = shape.items()
        return isinstance(value, dict) and all(has_shape(k, key) and has_shape(v, item) for k, v in value.items())
    return isinstance(value, shape) and (shape is bool or not isinstance(value, bool))


def shape_name(shape) -> str:
    if isinstance(shape, list):
        return "a list of names"
    if isinstance(shape, dict):
        return "a mapping of names to names" if shape else "a mapping"
    return "true or false" if shape is bool else "text"


def check_shapes(data: dict, path: Path) -> None:
    """Each key of a task file (and of its source) holds what it must; else one line naming the key."""
    source = data.get("source") if isinstance(data.get("source"), dict) else {}
    for prefix, mapping, shapes in (("", data, SHAPES), ("source.", source, SOURCE_SHAPES)):
        for key, shape in shapes.items():
            if key in mapping and mapping[key] is not None and not has_shape(mapping[key], shape):
                raise TransferlabError(f"task file {str(path)!r}: {prefix}{key} must be {shape_name(shape)}, got "
                                       f"{str(mapping[key])[:40]!r}")


def resolve_source(source, name: str, modality: str, path: Path) -> dict:
    """The ``source`` mapping with its paths made absolute (relative to the task file)."""
    if not isinstance(source, dict) or sum(k in source for k in SOURCE_KINDS) != 1:
        raise TransferlabError(f"task {name}: source must name exactly one of {', '.join(SOURCE_KINDS)} "
                               f"(e.g. source: {{hub: SetFit/sst2}} or source: {{folder: ./data}})")
    out = dict(source)
    if "builtin" in out and BUILTINS.get(out["builtin"]) != modality:
        raise TransferlabError(f"task {name}: builtin source {out['builtin']!r} is not a {modality} data set "
                               f"(built-in: {', '.join(f'{k} ({v})' for k, v in BUILTINS.items())})")
    if "folder" in out:
        out["folder"] = local(out["folder"], path)
    if "files" in out:
        files = out["files"]
        if not isinstance(files, dict) or not {"train", "test"} <= set(files) or set(files) - set(TEXT_SPLITS):
            raise TransferlabError(f"task {name}: source.files maps train, test (and optionally validation) to files")
        out["files"] = {split: local(f, path) for split, f in files.items()}
    if ("files" in out or "coop_split" in out or "image_lists" in out) and not ("files" in out) == (modality == "text"):
        raise TransferlabError(f"task {name}: source.files is for text tasks, source.coop_split and "
                               f"source.image_lists for image tasks")
    if "image_lists" in out:
        lists = out["image_lists"]
        if not isinstance(lists, dict) or not {"train", "test"} <= set(lists) or set(lists) - set(LIST_SPLITS) \
                or not out.get("classes_file") or "folder" not in out:
            raise TransferlabError(f"task {name}: source.image_lists maps train, test (and optionally val) to list "
                                   f"files in source.folder, with source.classes_file naming the classes in order")
    return out


def local(value, task_path: Path) -> str | None:
    """A path of a task file, relative to the file's folder; ``$DATA`` is ``$TRANSFERLAB_DATA`` (default
    ``~/data``), CoOp's data root."""
    if value in (None, ""):
        return None
    p = Path(str(value).replace("$DATA", os.environ.get("TRANSFERLAB_DATA", "~/data"))).expanduser()
    return str(p if p.is_absolute() else (task_path.parent / p))


def check_templates(templates, name: str) -> list[str] | None:
    if templates is None:
        return None
    if not isinstance(templates, list) or not templates or not all(isinstance(t, str) for t in templates):
        raise TransferlabError(f"task {name}: templates is a list of prompts such as 'a photo of a {{}}.'")
    return [t.replace("{}", "{name}") for t in templates]  # CoOp's '{}' is the class name


def study_root(path: Path) -> Path | None:
    """The study folder (one holding ``study.json``) a file lies in, if any."""
    for parent in path.resolve().parents:
        if (parent / "study.json").is_file():
            return parent
    return None


def split_files(task: Task) -> list[Path]:
    """The files in a task's folder that define its splits and classes (a CoOp split file, list files)."""
    src = task.source
    names = [src.get("coop_split"), src.get("classes_file")] + list((src.get("image_lists") or {}).values())
    return [Path(src["folder"]) / str(n) for n in names if n]


def task_paths(task: Task) -> list[str]:
    source = task.source
    out = [source.get("folder"), task.class_names_file] + list((source.get("files") or {}).values())
    return [p for p in out if p] + [str(p) for p in split_files(task)]


def check_received(task: Task, path: Path) -> None:
    """A task file inside a received study folder is data: each of its paths must resolve inside that folder,
    and so must a ``hub`` id that names an existing local folder (the ``datasets`` library would read it)."""
    root = study_root(path)
    if root is None:
        return
    paths = task_paths(task)
    hub = task.source.get("hub")
    if hub is not None and Path(str(hub)).expanduser().exists():
        paths.append(str(Path(str(hub)).expanduser()))
    for p in paths:
        if not Path(p).resolve().is_relative_to(root):
            raise TransferlabError(f"task file {str(path)!r} lies in the study folder {root} but names {p!r} outside "
                                   f"it: a received task may only name files inside its study folder")


# --- tasks loaded in this process (a study records their files' digests) ---------------------------

LOADED: dict[str, Task] = {}


def remember(task: Task) -> Task:
    """Keep the task by name for this process (two different tasks of one name in one study are refused)."""
    known = LOADED.get(task.name)
    if known is not None and known.digest != task.digest and known.file != task.file:
        raise TransferlabError(f"two tasks are named {task.name!r} ({known.file} and {task.file}): rename one")
    LOADED[task.name] = task
    return task


def loaded(name: str) -> Task | None:
    return LOADED.get(name)


def arm_task(arm: str) -> str | None:
    """The task of a study arm ``<experiment>[@<model>]#<task>`` (``None``: the arm's own data section)."""
    return arm.partition("#")[2] or None


def task_fingerprint(task: Task) -> str:
    """The task file's SHA-256, with those of its split files when it names some (its view holds only links)."""
    files = split_files(task)
    if not files:
        return task.digest
    extra = [hashlib.sha256(f.read_bytes()).hexdigest() if f.is_file() else "missing" for f in files]
    return hashlib.sha256(":".join([task.digest, *extra]).encode()).hexdigest()


# --- a task as an experiment's data section --------------------------------------------------------

TEXT_SOURCE_FIELDS = ("source", "name", "path", "train_file", "validation_file", "test_file", "text_column",
                      "label_column", "label_names")
IMAGE_SOURCE_FIELDS = ("path", "hub_id", "hub_test_id", "train_split", "test_split", "image_column", "label_column",
                       "class_names_file")


def modality_of(config) -> str:
    from transferlab.data.images import ImageDataConfig
    from transferlab.data.text import TextDataConfig

    data = getattr(config, "data", None)
    if isinstance(data, TextDataConfig):
        return "text"
    if isinstance(data, ImageDataConfig):
        return "image"
    raise TransferlabError(f"{type(config).__name__} has no text or image data section: a task cannot set its data")


def source_fields(config) -> tuple[str, ...]:
    return TEXT_SOURCE_FIELDS if modality_of(config) == "text" else IMAGE_SOURCE_FIELDS


def text_fields(task: Task) -> dict:
    src, cols = task.source, task.columns
    out = {"source": "files", "name": "rotten_tomatoes", "path": None, "train_file": None, "validation_file": None,
           "test_file": None, "text_column": cols.get("text", "text"), "label_column": cols.get("label", "label"),
           "label_names": list(task.class_names) if task.class_names else None}
    if "builtin" in src:
        out["source"] = "rotten_tomatoes"
    elif "hub" in src:
        out.update(source="hub", name=str(src["hub"]))
    elif "files" in src:
        out.update({f"{split}_file": f for split, f in src["files"].items()})
    else:
        out.update({f"{split}_file": f for split, f in folder_files(Path(src["folder"]), task.name).items()})
    return out


def folder_files(folder: Path, name: str) -> dict[str, str]:
    """The split files of a text folder in the Hub's data-files layout: ``train.csv`` / ``train.jsonl`` ...
    (or ``data/train.*``)."""
    if not folder.is_dir():
        raise TransferlabError(f"task {name}: folder {str(folder)!r} does not exist: fix source.folder")
    out = {}
    for split in TEXT_SPLITS:
        found = [p for base in (folder, folder / "data") for ext in (".csv", ".jsonl", ".json")
                 for p in [base / f"{split}{ext}"] if p.is_file()]
        if found:
            out[split] = str(found[0])
    if not {"train", "test"} <= set(out):
        raise TransferlabError(f"task {name}: {str(folder)!r} needs train and test files (train.csv / "
                               f"train.jsonl, test.csv / test.jsonl, optionally validation.*)")
    return out


def image_fields(task: Task, work_dir: Path | None) -> dict:
    src, cols = task.source, task.columns
    out = {"path": None, "hub_id": None, "hub_test_id": None, "train_split": task.splits.get("train", "train"),
           "test_split": task.splits.get("test", "valid"), "image_column": cols.get("image", "image"),
           "label_column": cols.get("label", "label"), "class_names_file": task.class_names_file}
    if "hub" in src:
        out["hub_id"] = str(src["hub"])
    elif "classes" in src:
        out["path"] = str(subset_view(task, work_dir))
    elif "folder" in src:
        if not Path(src["folder"]).is_dir():
            raise TransferlabError(f"task {task.name}: folder {src['folder']!r} does not exist: fix source.folder "
                                   f"(or download the data set into it: see CoOp's DATASETS.md for its sets)")
        view = coop_view(task, work_dir) if "coop_split" in src else list_view(task, work_dir) \
            if "image_lists" in src else None
        out["path"] = str(view or src["folder"])
        if view is not None and not out["class_names_file"] and not task.class_names:
            out["class_names_file"] = str(view.parent / "classnames.txt")  # the split's class names, in label order
    if task.class_names_by_folder and out["path"]:
        out["class_names_file"] = str(folder_names_file(task, work_dir, Path(out["path"])))
    elif task.class_names and not out["class_names_file"]:
        out["class_names_file"] = str(names_file(task, work_dir))
    return out


def task_work_dir(task: Task, work_dir: Path | None) -> Path:
    base = Path(work_dir) if work_dir else Path.home() / ".cache" / "transferlab" / "tasks"
    folder = base / f"{task.name}-{task_fingerprint(task)[:12]}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def names_file(task: Task, work_dir: Path | None) -> Path:
    path = task_work_dir(task, work_dir) / "classnames.txt"
    path.write_text("".join(f"{n}\n" for n in task.class_names))
    return path


def folder_names_file(task: Task, work_dir: Path | None, root: Path) -> Path:
    """CoOp's ImageNet ``classnames.txt`` (``<folder> <class name>`` a line, CLIP's names) as one name a line in
    the order of the class folders under ``root``'s ``train/`` (CoOp's labels: the folders, sorted)."""
    file = Path(task.class_names_file or "")
    if not file.is_file():
        raise TransferlabError(f"task {task.name}: class-name file {str(file)!r} does not exist: download CoOp's "
                               f"classnames.txt there (see CoOp's DATASETS.md)")
    names = {}
    for line in file.read_text().splitlines():
        folder, _, name = line.strip().partition(" ")
        if folder:
            names[folder] = name.strip() or folder
    train = root / "train" if (root / "train").is_dir() else root
    folders = sorted(d.name for d in train.iterdir() if d.is_dir())
    missing = [f for f in folders if f not in names]
    if missing:
        raise TransferlabError(f"task {task.name}: {str(file)!r} has no name for the class folder(s) "
                               f"{', '.join(missing[:3])}: it must hold '<folder> <class name>' lines")
    path = task_work_dir(task, work_dir) / "classnames-by-folder.txt"
    path.write_text("".join(f"{names[f]}\n" for f in folders))
    return path


def apply_task(config, task: Task, work_dir: Path | None = None):
    """``config`` with its data section's source settings (and, for an experiment with prompt templates, its
    templates) taken from ``task``; the other data settings (limit, shots...) stay. A modality mismatch is one
    line."""
    modality = modality_of(config)
    if modality != task.modality:
        raise TransferlabError(f"task {task.name} is a {task.modality} task but this experiment reads {modality} "
                               f"data: give a {modality} task (built-in: {', '.join(known_tasks())})")
    fields = text_fields(task) if modality == "text" else image_fields(task, work_dir)
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, **fields))
    model = getattr(config, "model", None)
    if task.templates and hasattr(model, "templates"):
        config = dataclasses.replace(config, model=dataclasses.replace(model, templates=list(task.templates)))
    remember(task)
    return config


def check_overrides(overrides: dict, config, task: Task) -> None:
    """A ``data.<source setting>=...`` override beside ``--task`` would be silently replaced: refused."""
    clash = sorted(set((overrides or {}).get("data") or {}) & set(source_fields(config)))
    if clash:
        raise TransferlabError(f"data.{clash[0]} is set by --task {task.name}: drop the override, or write a task "
                               f"file with the source you want (see docs/tasks.md)")


# --- CoOp's split files ----------------------------------------------------------------------------

def read_coop_split(task: Task) -> dict[str, list]:
    """CoOp's ``split_zhou_<Name>.json``: ``{"train"|"val"|"test": [[image path, label, class name], ...]}``,
    image paths relative to ``<folder>/<image_dir>``."""
    import json

    file = Path(task.source["folder"]) / task.source["coop_split"]
    if not file.is_file():
        raise TransferlabError(f"task {task.name}: split file {str(file)!r} does not exist: download CoOp's "
                               f"{task.source['coop_split']} into {task.source['folder']} (see CoOp's DATASETS.md)")
    try:
        split = json.loads(file.read_text())
        rows = {k: [(str(p), int(label), str(name)) for p, label, name in split[k]] for k in ("train", "test")}
        rows["val"] = [(str(p), int(label), str(name)) for p, label, name in split.get("val", [])]
    except (ValueError, KeyError, TypeError) as exc:
        raise TransferlabError(f"task {task.name}: {str(file)!r} is not a CoOp split file (train/val/test lists "
                               f"of [path, label, class name]): {exc.__class__.__name__}") from None
    return rows


def coop_view(task: Task, work_dir: Path | None) -> Path:
    """An imagefolder view of a CoOp split file (links to the images: ``train/<label>/``, ``test/<label>/``;
    CoOp's val joins train, from which the runs hold out their own validation), with the class names file."""
    rows = read_coop_split(task)
    return link_view(task, work_dir, {"train": rows["train"] + rows["val"], "test": rows["test"]})


def read_image_lists(task: Task) -> dict[str, list]:
    """FGVCAircraft's layout as CoOp reads it: ``classes_file`` (one class a line, in label order) and per split
    a list file of ``<image id> <class name>`` lines; the image is ``<image_dir>/<id><image_suffix>``."""
    folder, src = Path(task.source["folder"]), task.source
    files = {"classes_file": folder / src["classes_file"],
             **{split: folder / name for split, name in src["image_lists"].items()}}
    for key, file in files.items():
        if not file.is_file():
            raise TransferlabError(f"task {task.name}: {file.name} ({key}) does not exist in {folder}: download the "
                                   f"data set there (see CoOp's DATASETS.md)")
    classes = [line.strip() for line in files["classes_file"].read_text().splitlines() if line.strip()]
    index = {name: i for i, name in enumerate(classes)}
    rows: dict[str, list] = {"val": []}
    for split in src["image_lists"]:
        rows[split] = []
        for n, line in enumerate(files[split].read_text().splitlines(), 1):
            image, _, name = line.strip().partition(" ")
            if not image:
                continue
            if name.strip() not in index:
                raise TransferlabError(f"task {task.name}: {files[split].name} line {n}: class {name.strip()!r} is not "
                                       f"in {files['classes_file'].name}")
            rows[split].append((f"{image}{src.get('image_suffix', '')}", index[name.strip()], name.strip()))
    return rows


def list_view(task: Task, work_dir: Path | None) -> Path:
    """An imagefolder view of list files (FGVCAircraft's layout); val joins train, as for a CoOp split file."""
    rows = read_image_lists(task)
    return link_view(task, work_dir, {"train": rows["train"] + rows["val"], "test": rows["test"]})


def link_view(task: Task, work_dir: Path | None, entries: dict[str, list]) -> Path:
    """``<work dir>/view/<split>/<label>/<n><suffix>`` links to ``(image path, label, class name)`` entries (paths
    relative to ``<folder>/<image_dir>``), and ``classnames.txt`` beside the view (``_`` read as a space, as
    CoOp's prompts do). A received task's images must lie inside its study folder."""
    images = Path(task.source["folder"]) / str(task.source.get("image_dir") or "")
    view = task_work_dir(task, work_dir) / "view"
    root = study_root(Path(task.file))
    names: dict[int, str] = {}
    for split, rows in entries.items():
        for i, (rel, label, name) in enumerate(rows):
            names[label] = name.replace("_", " ")
            target = (images / rel).resolve()
            if root and not target.is_relative_to(root):
                raise TransferlabError(f"task {task.name}: image {rel!r} lies outside the received study folder")
            link = view / split / f"{label:04d}" / f"{i:06d}{Path(rel).suffix}"
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.is_symlink():
                link.symlink_to(target)
    if sorted(names) != list(range(len(names))):
        raise TransferlabError(f"task {task.name}: the split's labels are not 0..{len(names) - 1}")
    (view.parent / "classnames.txt").write_text("".join(f"{names[i]}\n" for i in range(len(names))))
    return view


def subset_view(task: Task, work_dir: Path | None) -> Path:
    """An imagefolder view (links) of some classes of an image folder or the vendored demo: a task with its own
    classes (``source: {builtin: tiny_imagenet_demo, classes: [n01443537, ...]}``)."""
    from transferlab.data.images import DEMO_PATH, detect_layout, read_imagefolder, read_tiny_imagenet

    root = Path(task.source.get("folder") or DEMO_PATH)
    if detect_layout(root) == "tiny-imagenet":
        _, _, train, test = read_tiny_imagenet(root)
    else:
        _, train, test = read_imagefolder(root)
    keep = [str(c) for c in task.source["classes"]]
    missing = sorted(set(keep) - {c for _, c in train})
    if missing or len(keep) < 2:
        raise TransferlabError(f"task {task.name}: source.classes needs two or more classes of {root}; not there: "
                               f"{', '.join(missing[:5]) or 'none'}")
    view = task_work_dir(task, work_dir) / "view"
    for split, rows in (("train", train), ("test", test)):
        for file, cls in rows:
            link = view / split / cls / Path(file).name
            if cls in keep and not link.is_symlink():
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(Path(file).resolve())
    return view


# --- suites -----------------------------------------------------------------------------------------

def suite_file(spec: str) -> Path:
    return named_file(spec, SUITES_DIR, "suite", known_suites(), "name: ..., tasks: [task names or files]")


def load_suite(spec: str) -> list[Task]:
    """The tasks of ``--suite NAME_OR_FILE`` (task files named relative to the suite file)."""
    path = suite_file(spec)
    data = read_mapping(path, "suite file")
    tasks = data.get("tasks")
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) for t in tasks):
        raise TransferlabError(f"suite {str(path)!r} needs tasks: a list of task names or task files")
    out, root = [], study_root(path)
    for entry in tasks:
        local_file = path.parent / entry
        if root is not None and (entry.endswith((".yaml", ".yml")) or "/" in entry) \
                and not (local_file if local_file.is_file() else Path(entry)).resolve().is_relative_to(root):
            raise TransferlabError(f"suite file {str(path)!r} lies in the study folder {root} but names the task "
                                   f"file {entry!r} outside it: a received suite may only name files inside it")
        out.append(load_task(str(local_file) if entry.endswith((".yaml", ".yml")) and local_file.is_file()
                             else entry))
    names = [t.name for t in out]
    if len(set(names)) != len(names):
        raise TransferlabError(f"suite {str(path)!r} lists task {next(n for n in names if names.count(n) > 1)!r} "
                               f"twice")
    return out
