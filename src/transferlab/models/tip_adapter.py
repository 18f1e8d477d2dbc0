"""Tip-Adapter (Zhang et al., ECCV 2022): a training-free key-value cache of the few-shot training images,
blended with the zero-shot logits; and Tip-Adapter-F, its keys fine-tuned.

In small pure steps, as the paper's code:
- ``cache_model``: keys = the L2-normalised training image features, values = their one-hot labels;
- ``cache_logits``: affinity ``exp(-beta (1 - f . k))`` of each (normalised) query ``f`` with every key,
  times the values: each class's summed affinity;
- ``tip_logits``: ``zero-shot logits + alpha * cache_logits`` (alpha = 0 is zero-shot exactly);
- ``search_alpha_beta``: alpha and beta from small grids, on a validation split (the paper searches them
  on validation);
- ``finetune_keys``: Tip-Adapter-F, the keys as a trainable matrix, AdamW (eps 1e-4) with a cosine
  schedule over the training features, cross-entropy on the blended logits; values and zero-shot fixed.

Zero-shot logits are the model's (its logit scale times the cosine): the paper's CLIP scale is 100, the
stand-in's 1/0.07, so the alpha grid spans what either needs.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def cache_model(features: torch.Tensor, labels: np.ndarray, n_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(keys, values)``: (n x dim) normalised features and (n x classes) one-hot labels."""
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    return F.normalize(features.float(), dim=-1), F.one_hot(labels, n_classes).float()


def cache_logits(queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, beta: float) -> torch.Tensor:
    """(queries x classes): ``exp(-beta (1 - f . k)) @ values`` for normalised queries ``f``."""
    affinity = F.normalize(queries.float(), dim=-1) @ keys.T
    return torch.exp(-beta * (1.0 - affinity)) @ values


def tip_logits(zero_shot: torch.Tensor, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
               alpha: float, beta: float) -> torch.Tensor:
    """The zero-shot logits plus ``alpha`` times the cache's."""
    return zero_shot + alpha * cache_logits(queries, keys, values, beta)


def accuracy(logits: torch.Tensor, labels: np.ndarray) -> float:
    return float((logits.argmax(1).numpy() == np.asarray(labels)).mean())


def search_alpha_beta(zero_shot: torch.Tensor, queries: torch.Tensor, labels: np.ndarray, keys: torch.Tensor,
                      values: torch.Tensor, alpha_grid: Sequence[float],
                      beta_grid: Sequence[float]) -> tuple[float, float, dict]:
    """``(alpha, beta, record)``: the grid point with the best accuracy on the given (validation) split;
    ties go to the earlier point (alphas in the grid's order, then betas), so list small alphas first."""
    best, table = None, []
    with torch.no_grad():
        for beta in beta_grid:
            cache = cache_logits(queries, keys, values, beta)
            for alpha in alpha_grid:
                acc = accuracy(zero_shot + alpha * cache, labels)
                table.append({"alpha": alpha, "beta": beta, "accuracy": round(acc, 6)})
    for row in sorted(table, key=lambda r: (list(alpha_grid).index(r["alpha"]), list(beta_grid).index(r["beta"]))):
        if best is None or row["accuracy"] > best["accuracy"]:
            best = row
    return best["alpha"], best["beta"], {"alpha": best["alpha"], "beta": best["beta"],
                                         "validation_accuracy": best["accuracy"], "grid": table}


def finetune_keys(keys: torch.Tensor, values: torch.Tensor, queries: torch.Tensor, zero_shot: torch.Tensor,
                  labels: np.ndarray, alpha: float, beta: float, epochs: int = 20, learning_rate: float = 1e-3,
                  batch_size: int = 256, seed: int = 0) -> tuple[torch.Tensor, list[float]]:
    """Tip-Adapter-F: ``(trained keys, mean loss per epoch)``; the training ``queries`` (their
    ``zero_shot`` logits beside them) are the few-shot features, mini-batches in a seeded order."""
    generator = torch.Generator().manual_seed(seed)
    weight = torch.nn.Parameter(keys.clone())
    optimizer = torch.optim.AdamW([weight], lr=learning_rate, eps=1e-4)
    steps_per_epoch = -(-len(queries) // batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * steps_per_epoch)
    queries, targets = F.normalize(queries.float(), dim=-1), torch.as_tensor(np.asarray(labels), dtype=torch.long)
    losses = []
    with torch.enable_grad():
        for _ in range(epochs):
            total = 0.0
            for rows in torch.randperm(len(queries), generator=generator).split(batch_size):
                logits = tip_logits(zero_shot[rows], queries[rows], weight, values, alpha, beta)
                loss = F.cross_entropy(logits, targets[rows])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
                total += loss.item() * len(rows)
            losses.append(round(total / len(queries), 6))
    return weight.detach(), losses
