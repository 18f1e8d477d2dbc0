"""Shared builders for the CLIP tests: a generated Tiny-ImageNet-layout tree and a tiny random CLIPModel."""

from __future__ import annotations

from pathlib import Path

import numpy as np

WNIDS = ["n01443537", "n01629819", "n02124075"]  # goldfish, European fire salamander, Egyptian cat
WORDS = {"n01443537": "goldfish, Carassius auratus",
         "n01629819": "European fire salamander, Salamandra salamandra",
         "n02124075": "Egyptian cat", "n99999999": "not a class here"}


def image(path: Path, colour: int, grey: bool = False, size: int = 16) -> None:
    from PIL import Image

    rng = np.random.default_rng(colour * 1000 + len(str(path)))
    base = np.zeros((size, size, 3), np.uint8) + np.array([60 * colour, 255 - 60 * colour, 128], np.uint8)
    pixels = np.clip(base + rng.integers(-20, 20, base.shape), 0, 255).astype(np.uint8)
    im = Image.fromarray(pixels)
    (im.convert("L") if grey else im).save(path, "JPEG")


def tiny_imagenet_tree(root: Path, n_train: int = 8, n_val: int = 3) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    (root / "words.txt").write_text("".join(f"{w}\t{t}\n" for w, t in WORDS.items()))
    lines = []
    (root / "val" / "images").mkdir(parents=True)
    for c, wnid in enumerate(WNIDS):
        folder = root / "train" / wnid / "images"
        folder.mkdir(parents=True)
        for k in range(n_train):
            image(folder / f"{wnid}_{k}.JPEG", c, grey=(c == 0 and k == 0))
        for k in range(n_val):
            name = f"val_{c * n_val + k}.JPEG"
            image(root / "val" / "images" / name, c)
            lines.append(f"{name}\t{wnid}\t0\t0\t15\t15")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return root


def tiny_clip(folder: Path) -> Path:
    """A 2-layer, 32-wide CLIPModel (random weights) with a character-level CLIP tokenizer, saved."""
    import string

    import torch
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor, CLIPTokenizer

    chars = list(string.ascii_lowercase + string.digits + ",.-'")
    vocab = {t: i for i, t in enumerate(chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"])}
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    images = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    special = dict(bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
                   pad_token_id=vocab["<|endoftext|>"])
    config = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=77, **special),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8),
        projection_dim=16)
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(folder)
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def character_tokenizer(max_length: int):
    """A character-level Gemma-style tokenizer (SigLIP 2's kind; SigLIP's own is SentencePiece, not installed)."""
    import string

    from transformers import Siglip2Tokenizer

    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4}
    for c in string.ascii_lowercase + string.digits + ",.-'":
        vocab[c] = len(vocab)
    vocab["\u2581"] = len(vocab)  # the space
    return Siglip2Tokenizer(vocab=vocab, merges=[], model_max_length=max_length), len(vocab)


def siglip_configs(vocab_size: int, max_length: int, **vision) -> dict:
    text = dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=max_length, pad_token_id=0, bos_token_id=2,
                eos_token_id=1)
    return dict(text_config=text, vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                                     num_attention_heads=4, **vision))


def set_scale_and_bias(model, scale: float = 10.0, bias: float = -2.0):
    """A nonzero bias (zero-shot must add it) and a known scale, as a trained SigLIP has (about 118 and -16)."""
    import math

    import torch

    with torch.no_grad():
        model.logit_scale.fill_(math.log(scale))
        model.logit_bias.fill_(bias)


def tiny_siglip(folder: Path) -> Path:
    """A 2-layer, 32-wide SiglipModel (random weights, logit bias -2) with SigLIP's image processor at 32 px and
    a character-level tokenizer (as the fixed-resolution SigLIP 2 checkpoints pair SiglipModel with a Gemma
    tokenizer), saved."""
    import torch
    from transformers import SiglipConfig, SiglipImageProcessorPil, SiglipModel, SiglipProcessor

    tokenizer, vocab_size = character_tokenizer(64)
    torch.manual_seed(0)
    model = SiglipModel(SiglipConfig(**siglip_configs(vocab_size, 64, image_size=32, patch_size=8)))
    set_scale_and_bias(model)
    model.save_pretrained(folder)
    SiglipProcessor(image_processor=SiglipImageProcessorPil(size={"height": 32, "width": 32}),
                    tokenizer=tokenizer).save_pretrained(folder)
    return folder


def tiny_siglip2(folder: Path) -> Path:
    """A 2-layer, 32-wide Siglip2Model (NaFlex; random weights, logit bias -2) with its processor's defaults
    (16-pixel patches, at most 256 of them, texts padded to 64 tokens), saved."""
    import torch
    from transformers import Siglip2Config, Siglip2ImageProcessorPil, Siglip2Model, Siglip2Processor

    tokenizer, vocab_size = character_tokenizer(64)
    torch.manual_seed(0)
    model = Siglip2Model(Siglip2Config(**siglip_configs(vocab_size, 64, num_patches=256, patch_size=16)))
    set_scale_and_bias(model)
    model.save_pretrained(folder)
    Siglip2Processor(image_processor=Siglip2ImageProcessorPil(), tokenizer=tokenizer).save_pretrained(folder)
    return folder
