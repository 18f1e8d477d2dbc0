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
NORMS = (nn.LayerNorm,)  # what LayerNorm tuning (lora.variant=ln_tuning) trains
# Parameter-name markers of peft's trained adapters: LoRA (and DoRA's magnitudes), IA3's vectors, LN tuning's copies.
ADAPTER_MARKERS = ("lora_", "ia3_", "ln_tuning_layers")
# Feed-forward layers IA3 scales at their input (the IA3 paper's FFN rule); every other target at its output.
FEEDFORWARD = ("fc1", "fc2", "lin1", "lin2")
# The stand-in's text->image map (head rows) and logit scale, trained in full with lora.train_projection.
PROJECTION_PARAMETERS = ("text_map.values", "log_scale")


def tower_prefixes(model: DualEncoder, towers: str) -> list[str]:
    names = ["vision", "text"] if towers == "both" else [towers]
    return [model.towers[n] for n in names]


def in_towers(name: str, prefixes: Sequence[str]) -> bool:
    return any(name.startswith(p + ".") for p in prefixes)


def block_index(name: str) -> int | None:
    """The block a module sits in (``...layer.3.attention...``, ``...layers.3...``, EfficientNet's
    ``..._blocks.3...``)."""
    match = re.search(r"\.(?:layers?|_blocks)\.(\d+)\.", name)
    return int(match.group(1)) if match else None


def tower_positions(model: nn.Module, prefix: str) -> dict[str, int]:
    """Each module of a tower -> its block; a module outside the blocks takes the block before it (the
    head after the last block counts as the last block), or -1 before the first (the stem)."""
    positions, last = {}, -1
    for name, _ in model.named_modules():
        if name.startswith(prefix + "."):
            index = block_index(name + ".")
            last = index if index is not None else last
            positions[name] = last
    return positions


def tower_blocks(positions: dict[str, int], layers: Sequence[int] | None) -> set[int] | None:
    """Block indices of one tower that ``layers`` names; negative indices count from the tower's end."""
    if layers is None:
        return None
    n_blocks = max(positions.values(), default=-1) + 1
    return {i + n_blocks if i < 0 else i for i in layers}


def is_adapter_parameter(name: str) -> bool:
    return any(marker in name for marker in ADAPTER_MARKERS)


def lora_targets(model: DualEncoder, target_modules: Sequence[str] | None, towers: str,
                 layers: Sequence[int] | None | dict = None, kinds: tuple = ADAPTABLE) -> list[str]:
    """Full names of the modules LoRA will adapt; a one-line error listing what exists if none match.
    ``layers``: block indices of every tower (None: all), or ``{tower: indices or None}`` per tower.
    ``kinds``: the module classes that qualify; ``target_modules=None``: every module of those classes
    (LayerNorm tuning: ``kinds=NORMS``)."""
    prefixes = tower_prefixes(model, towers)
    positions = {p: tower_positions(model, p) for p in prefixes}
    by_prefix = ({model.towers[t]: v for t, v in layers.items()} if isinstance(layers, dict)
                 else {p: layers for p in prefixes})
    blocks = {p: tower_blocks(positions[p], by_prefix.get(p)) for p in prefixes}
    found = [name for name, module in model.named_modules()
             if (target_modules is None or name.rsplit(".", 1)[-1] in target_modules) and isinstance(module, kinds)
             and any(name.startswith(p + ".") and (blocks[p] is None or positions[p][name] in blocks[p])
                     for p in prefixes)]
    if not found:
        existing = sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                           if in_towers(name, prefixes) and isinstance(module, ADAPTABLE)})
        where = f" in blocks {layers if isinstance(layers, dict) else list(layers)}" if layers is not None else ""
        if target_modules is None:
            raise TransferlabError(f"no {'/'.join(k.__name__ for k in kinds)} layer{where} in the {towers} tower(s) "
                                   f"of this model: choose other lora.towers / lora.layers or another lora.variant")
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


def trunk_start(model: DualEncoder, targets: Sequence[str], tower: str = "vision") -> int | None:
    """The first block of ``tower`` an adapter sits in (the head counts as the last block): the frozen
    trunk before it can run once. ``None``: no adapter in that tower (all of it is frozen); 0: an
    adapter in the first block or the stem (nothing to cache: train from pixels / tokens)."""
    prefix = model.towers[tower]
    adapted = [t for t in targets if t.startswith(prefix + ".")]
    if not adapted:
        return None
    positions = tower_positions(model, prefix)
    # a module inside a block starts there; one after block k (the head) leaves blocks [0, k] frozen
    return max(0, min(positions[t] + (block_index(t + ".") is None) for t in adapted))


def adapter_formula(module: nn.Module, r: int, variant: str = "lora", name: str = "") -> int:
    """The adapter's added parameters for one layer. LoRA (rslora, pissa, olora): r x (in + out) for a linear
    layer, r x (in x k x k + out) for a convolution (A is an r-channel k x k convolution, B a 1 x 1 one),
    r x (rows + dim) for an embedding; DoRA: that plus one magnitude per output; IA3: one scale per output
    (per input for a feed-forward layer, ``name`` ending in ``FEEDFORWARD``); LN tuning: the norm's own
    weight and bias."""
    if variant == "ln_tuning":
        return sum(p.numel() for p in module.parameters())
    if variant == "ia3":
        feedforward = name.rsplit(".", 1)[-1] in FEEDFORWARD
        if isinstance(module, nn.Conv2d):
            return module.in_channels if feedforward else module.out_channels
        return module.in_features if feedforward else module.out_features
    extra = (module.embedding_dim if isinstance(module, nn.Embedding) else
             getattr(module, "out_channels", getattr(module, "out_features", 0))) if variant == "dora" else 0
    return extra + lora_formula_of(module, r)


def lora_formula_of(module: nn.Module, r: int) -> int:
    if isinstance(module, nn.Conv2d):
        k = module.kernel_size[0] * module.kernel_size[1]
        return r * (module.in_channels // module.groups * k + module.out_channels)
    if isinstance(module, nn.Embedding):
        return r * (module.num_embeddings + module.embedding_dim)
    return r * (module.in_features + module.out_features)


def formula_by_tower(model: DualEncoder, targets: Sequence[str], r: int, variant: str = "lora") -> dict[str, int]:
    """``{tower: formula count}`` for the adapted layers (base layers; call before or after adding)."""
    modules = dict(model.named_modules())
    counts = {}
    for tower, prefix in model.towers.items():
        names = [t for t in targets if t.startswith(prefix + ".")]
        if names:
            counts[tower] = sum(adapter_formula(getattr(modules[t], "base_layer", modules[t]), r, variant, t)
                                for t in names)
    return counts


def lora_by_tower(model: DualEncoder) -> dict[str, int]:
    """``{tower: adapter parameters}`` actually added (LoRA's A and B matrices, DoRA's magnitudes, IA3's
    vectors, LN tuning's trained copies), by module prefix."""
    counts = {}
    for name, p in model.named_parameters():
        tower = next((t for t, prefix in model.towers.items() if prefix + "." in name + "."
                      and is_adapter_parameter(name)), None)
        if tower:
            counts[tower] = counts.get(tower, 0) + p.numel()
    return counts


def plain_convolutions(model: nn.Module, targets: Sequence[str]) -> None:
    """peft builds a convolution's LoRA layers with the base layer's own class; EfficientNet's
    ``Conv2dStaticSamePadding`` cannot be built that way, so each targeted 1 x 1 one (its padding an
    identity) is swapped, in place, for the plain ``nn.Conv2d`` it computes (same weights, same output)."""
    modules = dict(model.named_modules())
    for name in targets:
        module = modules[name]
        if not isinstance(module, nn.Conv2d) or type(module) is nn.Conv2d:
            continue
        if module.kernel_size != (1, 1) or type(getattr(module, "static_padding", None)).__name__ != "Identity":
            raise TransferlabError(f"LoRA on {name} ({type(module).__name__}, kernel {module.kernel_size}) is not "
                                   f"supported: adapt its 1 x 1 convolutions instead")
        plain = nn.Conv2d(module.in_channels, module.out_channels, 1, module.stride, 0, module.dilation,
                          module.groups, module.bias is not None)
        plain.weight, plain.bias = module.weight, module.bias
        parent, _, child = name.rpartition(".")
        setattr(modules[parent] if parent else model, child, plain)
