"""GPU benchmark of the three experiments at the paper's model sizes, each against the lab's way.

No network and no pretrained weights on the GPU machine: DistilBERT-base and CLIP ViT-B/16 are built
from their configs with random weights (speed does not depend on the weights) and tokenizers are built
from the vendored Rotten Tomatoes words. Needs torch, transformers and peft (no `datasets`).

Prints: the matmul rate it measures first (fp32, bf16), then feature extraction sentences/s (lab's
per-sentence pipeline vs ours), fine-tuning steps/s with dynamic padding vs padding to 512, zero-shot
images/s (lab's one image at a time with a text pass each time vs ours), LoRA training images/s and
peak GPU memory, each beside the rate its FLOPs would allow at the measured matmul rate.

    python benchmarks/gpu.py            # on a GPU (about 3-5 minutes on an H100)
    python benchmarks/gpu.py --smoke    # tiny models on the CPU: checks the script runs
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from transferlab.models.text_encoder import encode  # noqa: E402

RT = ROOT / "src" / "transferlab" / "data" / "resources" / "rotten_tomatoes"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, repeats: int = 1) -> float:
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync(device)
    return (time.perf_counter() - start) / repeats


def matmul_rate(device: torch.device, dtype: torch.dtype, n: int) -> float:
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    seconds = timed(lambda: a @ b, device, repeats=10)
    return 2 * n ** 3 / seconds


def texts() -> list[str]:
    lines = []
    for name in ("rt-polarity.pos", "rt-polarity.neg"):
        lines += [line.strip() for line in (RT / name).read_text(encoding="latin-1").splitlines()]
    return lines


def text_tokenizer(folder: Path, sentences: list[str]):
    from transformers import DistilBertTokenizerFast

    counts: dict[str, int] = {}
    for s in sentences:
        for w in re.findall(r"\w+|[^\w\s]", s.lower()):
            counts[w] = counts.get(w, 0) + 1
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(counts, key=lambda w: -counts[w])[:30000]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return DistilBertTokenizerFast(vocab=str(folder / "vocab.txt"))  # transformers 5 ignores vocab_file=


def bert_flops(cfg, lengths) -> float:
    d, ffn, layers = cfg.dim, cfg.hidden_dim, cfg.n_layers
    return layers * sum(2 * t * (4 * d * d + 2 * d * ffn) + 4 * t * t * d for t in lengths)


def bench_features(args, device, rate, tokenizer, sentences) -> dict:
    from transformers import DistilBertConfig, DistilBertModel, pipeline

    cfg = DistilBertConfig() if not args.smoke else DistilBertConfig(dim=64, n_layers=2, n_heads=2, hidden_dim=128)
    cfg.vocab_size = tokenizer.vocab_size
    model = DistilBertModel(cfg).to(device).eval()
    lab_n = 200 if not args.smoke else 20
    extractor = pipeline("feature-extraction", model=model, tokenizer=tokenizer, device=device)
    extractor(sentences[0])
    lab = timed(lambda: [extractor(s)[0][0] for s in sentences[:lab_n]], device) / lab_n
    ours = {}
    for precision in ("fp32", "bf16"):
        # warm-up over the whole workload: every padded length met once (kernels are chosen per shape)
        encode(sentences, tokenizer, model, "cls", 512, args.text_batch, precision, progress=False)
        ours[precision] = timed(lambda: encode(sentences, tokenizer, model, "cls", 512, args.text_batch, precision,
                                               progress=False), device) / len(sentences)
    lengths = [len(x) for x in tokenizer(sentences, truncation=True, max_length=512)["input_ids"]]
    return {"lab_sentences_per_s": 1 / lab, "ours_fp32_sentences_per_s": 1 / ours["fp32"],
            "ours_bf16_sentences_per_s": 1 / ours["bf16"], "ratio_bf16": lab / ours["bf16"],
            "floor_bf16_sentences_per_s": len(sentences) / (bert_flops(cfg, lengths) / rate["bf16"])}


def bench_finetune(args, device, rate, tokenizer, sentences) -> dict:
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    cfg = DistilBertConfig(num_labels=2) if not args.smoke else DistilBertConfig(
        dim=64, n_layers=2, n_heads=2, hidden_dim=128, num_labels=2)
    cfg.vocab_size = tokenizer.vocab_size
    model = DistilBertForSequenceClassification(cfg).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-5)
    rng = np.random.default_rng(0)
    batches = [[sentences[i] for i in rng.choice(len(sentences), args.ft_batch, replace=False)] for _ in range(args.steps)]
    out = {}
    for name, padding in (("dynamic", True), ("pad512", "max_length")):
        def step(batch):
            enc = tokenizer(batch, padding=padding, truncation=True, max_length=512, return_tensors="pt").to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                loss = model(**enc, labels=torch.zeros(len(batch), dtype=torch.long, device=device)).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        for batch in batches:  # warm-up: every padded shape met once (kernels are chosen per shape)
            step(batch)
        out[name] = timed(lambda: [step(b) for b in batches], device) / len(batches)
        lengths = [len(x) for b in batches for x in tokenizer(b, padding=padding, truncation=True,
                                                               max_length=512)["input_ids"]]
        out[f"{name}_floor_steps_per_s"] = 1 / (3 * bert_flops(cfg, lengths) / len(batches) / rate["bf16"])
    return {"dynamic_steps_per_s": 1 / out["dynamic"], "pad512_steps_per_s": 1 / out["pad512"],
            "padding_ratio": out["pad512"] / out["dynamic"], "batch": args.ft_batch,
            "floor_dynamic_steps_per_s": out["dynamic_floor_steps_per_s"]}


def clip_parts(args, device):
    import string

    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    chars = list(string.ascii_lowercase + string.digits + ",.-' ")
    vocab = {t: i for i, t in enumerate(chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"])}
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    special = dict(bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
                   pad_token_id=vocab["<|endoftext|>"], vocab_size=len(vocab))
    if args.smoke:
        cfg = CLIPConfig(text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                          num_attention_heads=4, **special),
                         vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                            num_attention_heads=4, image_size=32, patch_size=8), projection_dim=16)
        size = 32
    else:  # ViT-B/16: the shapes of openai/clip-vit-base-patch16
        cfg = CLIPConfig(text_config=dict(**special), vision_config=dict(patch_size=16), projection_dim=512)
        size = 224
    processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    return CLIPModel(cfg).to(device).eval(), tokenizer, processor


def features(output) -> torch.Tensor:
    """transformers 5 returns a model output from get_*_features; 4.x returned the tensor."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def images(n: int) -> list:
    from PIL import Image

    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)) for _ in range(n)]


def bench_zeroshot(args, device, model, tokenizer, processor, prompts) -> dict:
    lab_n, n = (20, 2000) if not args.smoke else (4, 32)
    imgs = images(n)

    def lab_way(img):  # the lab: one image, all prompts re-encoded, full forward
        enc = tokenizer(prompts, padding=True, return_tensors="pt").to(device)
        pix = processor(images=[img], return_tensors="pt")["pixel_values"].to(device)
        with torch.no_grad():
            return model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                         pixel_values=pix).logits_per_image.argmax(-1)

    def ours():
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            enc = tokenizer(prompts, padding=True, return_tensors="pt").to(device)
            classes = torch.nn.functional.normalize(features(model.get_text_features(**enc)), dim=-1)
            preds = []
            for i in range(0, n, args.image_batch):
                pix = processor(images=imgs[i:i + args.image_batch], return_tensors="pt")["pixel_values"].to(device)
                feats = torch.nn.functional.normalize(features(model.get_image_features(pixel_values=pix)), dim=-1)
                preds.append((feats @ classes.T).argmax(-1))
            return torch.cat(preds)

    lab_way(imgs[0])
    lab = timed(lambda: [lab_way(im) for im in imgs[:lab_n]], device) / lab_n
    ours()
    our = timed(ours, device) / n
    return {"lab_images_per_s": 1 / lab, "ours_images_per_s": 1 / our, "ratio": lab / our}


def bench_lora(args, device, model, tokenizer, processor, prompts) -> dict:
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=32, lora_dropout=0.1, target_modules=["q_proj", "v_proj"]))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-5)
    batch = args.lora_batch if not args.smoke else 8
    imgs = images(batch)
    pix = processor(images=imgs, return_tensors="pt")["pixel_values"].to(device)
    enc = tokenizer(prompts, padding=True, return_tensors="pt").to(device)
    labels = torch.arange(batch, device=device) % len(prompts)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            img = torch.nn.functional.normalize(features(model.get_image_features(pixel_values=pix)), dim=-1)
            txt = torch.nn.functional.normalize(features(model.get_text_features(**enc)), dim=-1)
            loss = torch.nn.functional.cross_entropy(100 * img @ txt.T, labels)  # over all class prompts
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    seconds = timed(step, device, repeats=args.steps)
    peak = torch.cuda.max_memory_allocated() / 2 ** 30 if device.type == "cuda" else float("nan")
    return {"trainable_parameters": trainable, "images_per_s": batch / seconds, "batch": batch,
            "classes_encoded_per_step": len(prompts), "peak_gpu_memory_gib": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny models on whatever device: a quick check")
    parser.add_argument("--sentences", type=int, default=10662)
    parser.add_argument("--text-batch", type=int, default=256)
    parser.add_argument("--ft-batch", type=int, default=16)
    parser.add_argument("--image-batch", type=int, default=256)
    parser.add_argument("--lora-batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args()
    if args.smoke:
        args.sentences, args.steps = 64, 2
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    n = 8192 if device.type == "cuda" and not args.smoke else 512
    rate = {"fp32": matmul_rate(device, torch.float32, n), "bf16": matmul_rate(device, torch.bfloat16, n)}
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
    print(f"device {name}; torch {torch.__version__}; matmul {rate['fp32'] / 1e12:.1f} TFLOP/s fp32, "
          f"{rate['bf16'] / 1e12:.1f} TFLOP/s bf16", flush=True)
    results: dict = {"device": name, "matmul_tflops": {k: v / 1e12 for k, v in rate.items()}}
    sentences = texts()[: args.sentences]
    tokenizer = text_tokenizer(Path("/tmp/transferlab-gpu-bench-vocab"), sentences)

    r = results["features"] = bench_features(args, device, rate, tokenizer, sentences)
    print(f"features: lab {r['lab_sentences_per_s']:.0f} sentences/s, ours fp32 {r['ours_fp32_sentences_per_s']:.0f}, "
          f"bf16 {r['ours_bf16_sentences_per_s']:.0f} ({r['ratio_bf16']:.1f}x); "
          f"floor {r['floor_bf16_sentences_per_s']:.0f}", flush=True)
    r = results["finetune"] = bench_finetune(args, device, rate, tokenizer, sentences)
    print(f"finetune (batch {r['batch']}): dynamic padding {r['dynamic_steps_per_s']:.1f} steps/s, pad to 512 "
          f"{r['pad512_steps_per_s']:.1f} steps/s, ratio {r['padding_ratio']:.1f}x; "
          f"floor {r['floor_dynamic_steps_per_s']:.0f} steps/s", flush=True)
    model, ctok, processor = clip_parts(args, device)
    prompts = [f"a photo of a {w}" for w in sorted({w for s in sentences[:3000] for w in s.split() if w.isalpha()})][:200]
    r = results["zeroshot"] = bench_zeroshot(args, device, model, ctok, processor, prompts)
    print(f"zeroshot (200 classes): lab {r['lab_images_per_s']:.1f} images/s, ours {r['ours_images_per_s']:.0f} "
          f"images/s, ratio {r['ratio']:.0f}x", flush=True)
    r = results["lora"] = bench_lora(args, device, model, ctok, processor, prompts)
    print(f"lora r=8 q_proj/v_proj ({r['trainable_parameters']:,} trainable): {r['images_per_s']:.0f} images/s "
          f"(batch {r['batch']} + {r['classes_encoded_per_step']} class prompts a step), "
          f"peak GPU memory {r['peak_gpu_memory_gib']:.2f} GiB", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
