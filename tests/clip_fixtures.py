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
