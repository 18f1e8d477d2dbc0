"""Where LoRA goes in a dual encoder: target layers by tower and block, and the parameters trained in full.

``lora_targets`` returns the full names of the layers to adapt (for ``training.lora.apply_lora``);
a request that matches nothing is a one-line error listing the layer names that exist.
"""

from __future__ import annotations

import re
from typing import Sequence

from torch import nn

from transferlab.errors import TransferlabError
from transferlab.models.dual_encoder import DualEncoder

ADAPTABLE = (nn.Linear, nn.Conv2d, nn.Embedding)
# The stand-in's text->image map (head rows) and logit scale, trained in full with lora.train_projection.
PROJECTION_PARAMETERS = ("text_map.values", "log_scale")


def tower_prefixes(model: DualEncoder, towers: str) -> list[str]:
    names = ["vision", "text"] if towers == "both" else [towers]
    return [model.towers[n] for n in names]


def in_towers(name: str, prefixes: Sequence[str]) -> bool:
    return any(name.startswith(p + ".") for p in prefixes)


def block_index(name: str) -> int | None:
    """The transformer block a module sits in (``...layer.3.attention...`` / ``...layers.3...``)."""
    match = re.search(r"\.layers?\.(\d+)\.", name)
    return int(match.group(1)) if match else None


def tower_blocks(model: nn.Module, prefix: str, layers: Sequence[int] | None) -> set[int] | None:
    """Block indices of one tower that ``layers`` names; negative indices count from the tower's end."""
    if layers is None:
        return None
    indices = [block_index(n) for n, _ in model.named_modules() if n.startswith(prefix + ".")]
    n_blocks = max((i for i in indices if i is not None), default=-1) + 1
    return {i + n_blocks if i < 0 else i for i in layers}


def lora_targets(model: DualEncoder, target_modules: Sequence[str], towers: str,
                 layers: Sequence[int] | None = None) -> list[str]:
    """Full names of the modules LoRA will adapt; a one-line error listing what exists if none match."""
    prefixes = tower_prefixes(model, towers)
    blocks = {p: tower_blocks(model, p, layers) for p in prefixes}
    found = [name for name, module in model.named_modules()
             if name.rsplit(".", 1)[-1] in target_modules and isinstance(module, ADAPTABLE)
             and any(name.startswith(p + ".") and (blocks[p] is None or block_index(name) in blocks[p])
                     for p in prefixes)]
    if not found:
        existing = sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                           if in_towers(name, prefixes) and isinstance(module, ADAPTABLE)})
        where = f" in blocks {list(layers)}" if layers is not None else ""
        raise TransferlabError(f"lora.target_modules {list(target_modules)} match no layer{where} of the {towers} "
                               f"tower(s) of this model; its layers are named: {', '.join(existing)}")
    return found


def projection_parameters(model: nn.Module) -> list[str]:
    """Names of the stand-in's map and logit-scale parameters; a one-line error for a model without them."""
    names = [n for n, _ in model.named_parameters() if n.endswith(PROJECTION_PARAMETERS)]
    if not names:
        raise TransferlabError("lora.train_projection=true applies to the stand-in (its text->image map); "
                               "set it to false for this model")
    return names


def unfreeze(model: nn.Module, names: Sequence[str]) -> None:
    params = dict(model.named_parameters())
    for name in names:
        params[name].requires_grad_(True)


def vision_frozen(model: DualEncoder) -> bool:
    """True when no parameter of the image tower trains (its embeddings can then be computed once)."""
    prefix = model.towers["vision"]
    return not any(p.requires_grad for n, p in model.named_parameters() if n.startswith(prefix + "."))
