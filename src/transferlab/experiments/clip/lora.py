"""LoRA fine-tuning of a dual encoder against class prompts, with zero-shot and linear-probe baselines.

One run: encode the images once with the base model (zero-shot baseline, linear-probe features and,
when the image tower stays frozen, the training inputs), add LoRA adapters (peft), train with the
Trainer and a class-prompt loss (``loss.py``), pick the best epoch on the validation split (class
embeddings recomputed with the current weights at every evaluation), report the test split once.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from transferlab.errors import TransferlabError
from transferlab.experiments.clip.loss import LOSSES
from transferlab.experiments.clip.zeroshot import (class_embeddings, encode_splits, image_embeddings, prepare,
                                                   split_result, zero_shot_results)
from transferlab.models.dual_encoder import DualEncoder

ADAPTABLE = (nn.Linear, nn.Conv2d, nn.Embedding)


# --- adapters -----------------------------------------------------------------------------------

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


def expected_lora_parameters(model: nn.Module, targets: Sequence[str], r: int) -> int:
    """r x (in + out) per adapted linear layer: LoRA's A (r x in) and B (out x r)."""
    modules = dict(model.named_modules())
    return sum(r * (modules[t].in_features + modules[t].out_features) for t in targets
               if isinstance(modules[t], nn.Linear))


def apply_lora(model: DualEncoder, settings, targets: Sequence[str]):
    """Inject adapters in place (the returned peft model saves them); the stand-in's text->image map
    and logit scale are trained in full when ``train_projection`` is set."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=list(targets))
    peft_model = get_peft_model(model, config)
    for name in extra_trainable(model, settings):
        dict(model.named_parameters())[name].requires_grad_(True)
    return peft_model


def extra_trainable(model: nn.Module, settings) -> list[str]:
    if not settings.train_projection:
        return []
    names = [n for n, _ in model.named_parameters() if n.endswith(("text_map.values", "log_scale"))]
    if not names:
        raise TransferlabError("lora.train_projection=true applies to the stand-in (its text->image map); "
                               "set it to false for this model")
    return names


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def vision_frozen(model: DualEncoder) -> bool:
    prefix = model.towers["vision"]
    return not any(p.requires_grad for n, p in model.named_parameters() if n.startswith(prefix + "."))


# --- the module the Trainer trains --------------------------------------------------------------

class PromptClassifier(nn.Module):
    """Images (pixels, or cached embeddings) scored against every class prompt with the current weights."""

    def __init__(self, encoder: DualEncoder, prompt_sets: Sequence[Sequence[str]], loss: str):
        super().__init__()
        self.encoder = encoder
        self.loss_fn = LOSSES[loss]
        self.n_templates = len(prompt_sets)
        for i, texts in enumerate(prompt_sets):
            for key, value in encoder.tokenize(texts).items():
                self.register_buffer(f"prompt{i}_{key}", value, persistent=False)

    def class_embeddings(self) -> torch.Tensor:
        per_template = []
        for i in range(self.n_templates):
            tokens = {k: getattr(self, f"prompt{i}_{k}") for k in ("input_ids", "attention_mask")}
            per_template.append(nn.functional.normalize(self.encoder.encode_texts(**tokens), dim=-1))
        return nn.functional.normalize(torch.stack(per_template).mean(0), dim=-1)

    def forward(self, labels=None, pixel_values=None, image_embeds=None):
        if image_embeds is None:
            image_embeds = self.encoder.encode_images(pixel_values)  # each image once per step
        logits = self.encoder.logits(image_embeds, self.class_embeddings())
        loss = self.loss_fn(logits.float(), labels) if labels is not None else None
        return {"loss": loss, "logits": logits}


class EmbeddingDataset(torch.utils.data.Dataset):
    def __init__(self, embeds: torch.Tensor, labels: np.ndarray):
        self.embeds, self.labels = embeds, torch.as_tensor(labels)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"image_embeds": self.embeds[i], "labels": self.labels[i]}


def evaluate_accuracy(classifier: PromptClassifier, images, config) -> tuple[float, tuple]:
    """Validation accuracy with class embeddings recomputed now; ``images``: cached (embeds, labels) or a split."""
    classifier.eval()
    encoder = classifier.encoder
    with torch.inference_mode():
        class_embeds = classifier.class_embeddings().float()
        if not isinstance(images, tuple):
            images = image_embeddings(encoder, images, config.model.batch_size, config.data.num_workers,
                                      config.model.precision, desc="validation")
        result = split_result(encoder, images[0], images[1], class_embeds)
    return float((result[0] == result[1]).mean()), result


def make_trainer(classifier: PromptClassifier, train_set, val_images, config, run_dir: Path, best: dict):
    from transformers import TrainingArguments

    from transferlab.tracking.tracker import trainer_report_to
    from transferlab.training.arguments import resolve_precision
    from transferlab.training.callbacks import use_tensorboard_dir
    from transferlab.training.trainer import GuardedTrainer

    class ClipTrainer(GuardedTrainer):
        """Evaluation = validation accuracy against freshly computed class embeddings; best state kept."""

        def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
            accuracy, _ = evaluate_accuracy(classifier, val_images, config)
            best["last_evaluated"] = self.state.global_step
            metrics = {f"{metric_key_prefix}_accuracy": accuracy}
            if accuracy > best.get("accuracy", -1.0):
                best.update(accuracy=accuracy, step=self.state.global_step, state=trainable_state(classifier))
            self.log(metrics)
            self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics=metrics)
            classifier.train()
            return metrics

    t = config.training
    device_gpu = torch.cuda.is_available()
    precision = resolve_precision(config.model.precision, "cuda" if device_gpu else "cpu")
    args = TrainingArguments(
        output_dir=str(run_dir / "trainer"), num_train_epochs=t.epochs, max_steps=t.max_steps,
        per_device_train_batch_size=t.batch_size, learning_rate=t.learning_rate, weight_decay=t.weight_decay,
        warmup_steps=t.warmup_ratio, logging_steps=t.logging_steps, save_strategy="no",
        eval_strategy="steps" if t.eval_steps else "epoch", eval_steps=t.eval_steps,
        report_to=trainer_report_to(config.tracking), seed=config.seed, remove_unused_columns=False,
        label_names=["labels"], dataloader_num_workers=config.data.num_workers if t.cache_image_features else 0,
        bf16=precision == "bf16" and device_gpu, fp16=precision == "fp16" and device_gpu, disable_tqdm=True,
        dataloader_pin_memory=device_gpu)
    optimizer = torch.optim.AdamW(param_groups(classifier, t), lr=t.learning_rate, weight_decay=t.weight_decay)
    eval_set = EmbeddingDataset(*val_images) if isinstance(val_images, tuple) else val_images  # read by evaluate()
    trainer = ClipTrainer(model=classifier, args=args, train_dataset=train_set, eval_dataset=eval_set,
                          optimizers=(optimizer, None))
    use_tensorboard_dir(trainer, run_dir / "tensorboard")
    return trainer


def param_groups(classifier: nn.Module, t) -> list[dict]:
    adapters = [p for n, p in classifier.named_parameters() if p.requires_grad and "lora_" in n]
    others = [p for n, p in classifier.named_parameters() if p.requires_grad and "lora_" not in n]
    groups = [{"params": adapters, "lr": t.learning_rate}]
    if others:
        groups.append({"params": others, "lr": t.projection_learning_rate or t.learning_rate})
    return groups


# --- baselines and the run ----------------------------------------------------------------------

def linear_probe(encoded: dict, config) -> dict:
    from transferlab.experiments.clip.probe import fit_probe, probe_result

    (tx, ty), (vx, vy) = encoded["train"], encoded["validation"]
    model, c, grid = fit_probe(tx.numpy(), ty, vx.numpy(), vy, config.probe.c_grid, config.probe.max_iter,
                               config.seed)
    results = {split: probe_result(model, encoded[split][0].numpy(), encoded[split][1])
               for split in ("validation", "test")}
    return {"results": results, "C": c, "validation_accuracy_by_C": grid}


def summary(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k != "per_class"}


def comparison_table(rows: dict[str, dict]) -> str:
    lines = ["| method | validation top-1 | test top-1 | test top-5 | test macro F1 |", "|---|---|---|---|---|"]
    for name, m in rows.items():
        lines.append(f"| {name} | {m['validation']['accuracy']:.4f} | {m['test']['accuracy']:.4f} | "
                     f"{m['test'].get('top5_accuracy', float('nan')):.4f} | {m['test']['f1']:.4f} |")
    return "\n".join(lines)


def run_lora(config, output_dir: str | Path) -> Path:
    from transferlab.config import to_dict
    from transferlab.evaluation.metrics import classification_metrics
    from transferlab.evaluation.results import write_results
    from transferlab.runs import Run, set_seed, write_json
    from transferlab.tracking.tracker import Tracker, configure_wandb_env

    set_seed(config.seed)
    data, model, prompt_sets = prepare(config)
    targets = lora_targets(model, config.lora.target_modules, config.lora.towers, config.lora.layers)
    extra_trainable(model, config.lora)
    run = Run.create(output_dir, "lora", config.run_name, to_dict(config), default_name=config.model.name)
    configure_wandb_env(config.tracking, run.path)
    with run.guard():
        timings = {}
        start = time.perf_counter()
        needs_train = config.probe.enabled or config.training.cache_image_features
        encoded = encode_splits(model, data, config, (["train"] if needs_train else []) + ["validation", "test"])
        timings["encode_images_s"] = round(time.perf_counter() - start, 1)
        zs, _ = zero_shot_results(model, prompt_sets, {s: encoded[s] for s in ("validation", "test")}, config)
        zero_shot = {s: classification_metrics(*r[:2], data.class_names, scores=r[2], top_k=(1, 5)) for s, r in zs.items()}
        print(f"zero-shot top-1: validation {zero_shot['validation']['accuracy']:.4f}, test {zero_shot['test']['accuracy']:.4f}")
        probe = None
        if config.probe.enabled:
            start = time.perf_counter()
            fitted = linear_probe(encoded, config)
            timings["linear_probe_s"] = round(time.perf_counter() - start, 1)
            probe = {s: classification_metrics(*r[:2], data.class_names, scores=r[2], top_k=(1, 5))
                     for s, r in fitted["results"].items()}
            print(f"linear probe top-1 (C={fitted['C']}): validation {probe['validation']['accuracy']:.4f}, "
                  f"test {probe['test']['accuracy']:.4f}")

        peft_model = apply_lora(model, config.lora, targets)
        n_lora = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
        n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        expected = expected_lora_parameters(model, [t + ".base_layer" for t in targets], config.lora.r)
        print(f"LoRA parameters: {n_lora:,} (r x (in + out) over {len(targets)} layers: {expected:,}); "
              f"trainable in all: {n_trainable:,}")
        cached = config.training.cache_image_features and vision_frozen(model)
        classifier = PromptClassifier(model, prompt_sets, config.training.loss).to(model.device)
        if cached:
            train_set = EmbeddingDataset(*encoded["train"])
            val_images = encoded["validation"]
        else:
            from transferlab.data.images import with_pixels

            train_set = with_pixels(data.train, model.preprocess)
            val_images = data.validation
        best: dict = {}
        trainer = make_trainer(classifier, train_set, val_images, config, run.path, best)
        start = time.perf_counter()
        from transferlab.training.trainer import train

        train(trainer, None, "training.batch_size", run.path)
        if (run.path / "trainer").is_dir() and not any((run.path / "trainer").iterdir()):
            (run.path / "trainer").rmdir()  # the Trainer's output_dir: nothing is saved there (save_strategy="no")
        if best.get("last_evaluated") != trainer.state.global_step:
            trainer.evaluate()  # the end of a max_steps run that stopped mid-epoch
        timings["train_s"] = round(time.perf_counter() - start, 1)
        classifier.load_state_dict(best["state"], strict=False)
        classifier.eval()

        peft_model.save_pretrained(run.path / "adapter")
        extra = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters()
                 if n in set(extra_trainable(model, config.lora))}
        if extra:
            from safetensors.torch import save_file

            save_file(extra, str(run.path / "adapter" / "extra_trainable.safetensors"))
        with Tracker(run.path, config.tracking, to_dict(config)) as tracker:
            with torch.inference_mode():
                class_embeds = classifier.class_embeddings().float()
                splits = {}
                for split in ("validation", "test"):
                    images = encoded[split] if cached else image_embeddings(
                        model, getattr(data, split), config.model.batch_size, config.data.num_workers,
                        config.model.precision, desc=split)
                    splits[split] = split_result(model, images[0], images[1], class_embeds)
            step = trainer.state.global_step
            metrics = write_results(run, tracker, splits, data.class_names, step=step, top_k=(1, 5))
            rows = {"zero-shot": zero_shot, "linear probe": probe, "LoRA": metrics}
            rows = {k: v for k, v in rows.items() if v}
            for name, m in (("zero_shot", zero_shot), ("linear_probe", probe)):
                if m:
                    tracker.log_metrics({s: summary(m[s]) for s in m}, step, prefix=name)
            table = comparison_table(rows)
            tracker.log_text("comparison", table, step)
            metrics.update(zero_shot=zero_shot, linear_probe=probe, info={
                "model": config.model.name, "n_classes": len(data.class_names),
                "lora_parameters": n_lora, "lora_parameters_formula": expected, "trainable_parameters": n_trainable,
                "lora_targets": len(targets), "best_validation_accuracy": best["accuracy"], "best_step": best["step"],
                "image_features_cached": cached, "loss": config.training.loss,
                "linear_probe_C": fitted["C"] if probe else None,
                "linear_probe_validation_by_C": fitted["validation_accuracy_by_C"] if probe else None,
                "skipped_unreadable_images": data.skipped, "timings": timings})
        if config.lora.save_merged:
            peft_model.merge_and_unload()
            model.save_pretrained(run.path / "merged_model")
        (run.path / "report.md").write_text(f"# LoRA vs baselines ({len(data.class_names)} classes)\n\n{table}\n")
        run.save_metrics(metrics)
        print(table)
    return run.path
