"""``load_dual_encoder``: the dual encoder a model reference names (the stand-in or a CLIP-family checkpoint).

Kept apart from ``dual_encoder.py`` (the interface) so the implementations import the interface and
nothing imports back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from transferlab.errors import TransferlabError
from transferlab.models.dual_encoder import DualEncoder


def is_standin(ref: str) -> bool:
    return ref == "standin" or (Path(ref).expanduser() / "standin.json").is_file()


def load_dual_encoder(model_cfg, class_ids: Sequence[str] = (), class_names: Sequence[str] = ()) -> DualEncoder:
    """The model ``model_cfg.name`` names: ``standin`` (built now, never fitted on ``class_ids``),
    a saved stand-in folder, or a CLIP-family checkpoint (Hub id or folder)."""
    if model_cfg.name == "standin":
        from transferlab.models.standin import build_standin

        return build_standin(model_cfg.text_model, model_cfg.templates, model_cfg.image_size,
                             model_cfg.temperature, exclude_ids=class_ids, exclude_names=class_names)
    if is_standin(model_cfg.name):
        from transferlab.models.standin import StandInDualEncoder

        model = StandInDualEncoder.from_pretrained(model_cfg.name)
        overlap = set(model.fitted_on) & set(class_ids)
        if overlap:
            raise TransferlabError(f"stand-in {model_cfg.name} was fitted on {len(overlap)} of the evaluated "
                                   f"classes (e.g. {sorted(overlap)[0]}), so its zero-shot result would not be "
                                   f"zero-shot: use model.name=standin to build one without them")
        return model
    from transferlab.models.clip_hf import HFDualEncoder

    return HFDualEncoder.from_pretrained(model_cfg.name)
