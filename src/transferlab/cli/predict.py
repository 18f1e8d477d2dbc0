"""``transferlab predict RUN_DIR (--text TEXT | --file FILE)``: label and probability per text, for runs of
experiment 1 (encoder + saved classifier), experiment 2 (the saved fine-tuned model) and SetFit (its tuned body and
head)."""

from __future__ import annotations

import argparse
import json

from transferlab.errors import TransferlabError
from transferlab.experiments.predict import load_predictor, read_texts


def add_parser(subparsers) -> argparse.ArgumentParser:
    text = "Classify texts with the model of a finished features, finetune or setfit run."
    p = subparsers.add_parser("predict", help=text, description=text + " Prints label<TAB>probability<TAB>text "
                              "per input, in input order; --format jsonl prints the fields of a run's "
                              "predictions/*.jsonl files (id, example, prediction, probability, top5).")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory printed by transferlab features/finetune/setfit")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", action="append", help="a text to classify (repeat for several)")
    source.add_argument("--file", help="one text a line, or a .csv / .jsonl file with a text column")
    p.add_argument("--text-column", default="text", help="column of --file CSV/JSONL holding the text (default: text)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="auto", help="auto (GPU when present), cpu, cuda, ...")
    p.add_argument("--format", choices=("tsv", "jsonl"), default="tsv",
                   help="tsv: label, probability, text; jsonl: one JSON object per text (default: tsv)")
    p.add_argument("--trust-pickle", action="store_true",
                   help="also load a classifier.joblib of a run made before skops: a pickle runs any code it "
                        "holds, so only for runs you made yourself")
    p.set_defaults(func=main)
    return p


def main(args: argparse.Namespace) -> None:
    if args.batch_size < 1:
        raise TransferlabError(f"--batch-size must be at least 1; got {args.batch_size}")
    texts = args.text if args.text else read_texts(args.file, args.text_column)
    blank = [i for i, text in enumerate(texts, 1) if not text.strip()]
    if blank:
        raise TransferlabError(f"--text number {blank[0]} is empty: a model labels any input, so an empty one "
                               f"would get a meaningless label; give the text to classify")
    predictor = load_predictor(args.run_dir, args.device, args.batch_size, args.trust_pickle)
    from transferlab.evaluation.predictions import prediction_record

    probabilities, names = predictor(texts)
    for i, (text, probs) in enumerate(zip(texts, probabilities)):
        row = prediction_record(i, text, probs, names)
        if args.format == "jsonl":
            print(json.dumps(row, ensure_ascii=False))
        else:
            print(f"{tsv_field(row['prediction'])}\t{row['probability']:.4f}\t{' '.join(text.split())}")


def tsv_field(value: str) -> str:
    """A class name as one TSV field: a backslash, tab, and every character that ends a line (newline, carriage
    return, and those ``str.splitlines`` splits on) is escaped, as ``\\t``, ``\\n``, ``\\r``, ``\\\\``,
    ``\\x0b``, ``\\u2028``..., so a name holding one cannot split a row or add a column."""
    return str(value).translate(TSV_ESCAPES)


LINE_ENDS = "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # besides \n and \r, where str.splitlines splits
TSV_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r",
                             **{c: c.encode("unicode_escape").decode() for c in LINE_ENDS}})
