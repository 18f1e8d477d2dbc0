"""``transferlab manifest FEWSHOT_PKL --task NAME_OR_FILE``: a CoOp few-shot split
(``split_fewshot/shot_K-seed_S.pkl``) as a split manifest of the task's images, for ``data.manifest=FILE``."""

from __future__ import annotations

import argparse
import os
from collections import Counter
from pathlib import Path

from transferlab.errors import TransferlabError


def add_parser(sub) -> None:
    text = ("Convert a CoOp few-shot split (split_fewshot/shot_K-seed_S.pkl, read without running anything in "
            "it) into a split manifest of a task's images: train on CoOp's own K-shot draw with "
            "data.manifest=FILE.")
    p = sub.add_parser("manifest", help=text, description=text)
    p.add_argument("split", metavar="FEWSHOT_PKL", help="CoOp's split_fewshot/shot_K-seed_S.pkl")
    p.add_argument("--task", required=True, metavar="NAME_OR_FILE",
                   help="the image task the split was drawn from (caltech101, dtd, ... or a task YAML file)")
    p.add_argument("--output", default=None, metavar="FILE",
                   help="the manifest to write (default: OUTPUT_DIR/manifests/<task>/<split file name>.jsonl)")
    p.add_argument("--output-dir", default="logs", metavar="DIR",
                   help="where the task's view of links and the default manifest go (default: logs)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> Path:
    from transferlab.data.coop_fewshot import fewshot_rows, read_fewshot
    from transferlab.data.images import ImageDataConfig, load_images, pool_fingerprint
    from transferlab.data.manifests import given_draw, write_manifest
    from transferlab.data.tasks import image_fields, load_task

    task = load_task(args.task)
    if task.modality != "image":
        raise TransferlabError(f"task {task.name} is a {task.modality} task: a CoOp few-shot split is for an image "
                               f"task (caltech101, oxford_pets, dtd, ...)")
    draw = read_fewshot(args.split)  # before the images are read: a bad file costs nothing
    fields = image_fields(task, Path(args.output_dir) / "tasks")
    data = load_images(ImageDataConfig(**fields, val_per_class=1))  # the pool (its hold-out is not used)
    labels = [int(label) for label in data.source["label"]]
    rows = fewshot_rows(draw, list(data.source["image"]), labels, data.class_names, Path(args.split).name)
    output = Path(args.output or Path(args.output_dir) / "manifests" / task.name / f"{Path(args.split).stem}.jsonl")
    if output.is_symlink() or (output.exists() and not output.is_file()):
        raise TransferlabError(f"{output} exists and is not a regular file: remove it or give another --output")
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.{os.getpid()}.partial")
    pool = pool_fingerprint(data.source)
    sha = write_manifest(partial, rows, labels, pool)
    per_class = Counter(labels[i] for i in rows["train"])
    shots = next(iter(per_class.values())) if len(set(per_class.values())) == 1 else None  # CoOp's: K every class
    try:  # what a run given it checks (at its K); a file already at --output stays until this one passed
        given_draw(partial, labels, shots, 0, 4, pool)
    except TransferlabError as exc:
        partial.unlink()
        said = str(exc).replace(f"manifest {str(partial)!r}", "its manifest")
        raise TransferlabError(f"{Path(args.split).name} does not convert: {said}") from None
    os.replace(partial, output)
    print(f"{task.name}: {len(rows['train'])} train and {len(rows['validation'])} validation images of "
          f"{len(per_class)} classes from {Path(args.split).name}; SHA-256 {sha[:12]}")
    print(f"use: transferlab lora --task {args.task} " + (f"data.shots={shots} " if shots else "")
          + f"data.manifest={output}")
    return output
