"""``transferlab predict`` on runs of experiment 1 (features + classifier) and experiment 2 (fine-tuned model)."""

from __future__ import annotations

import json
import shutil

import pytest

from transferlab.cli import main

TEXTS = ["a gripping, beautifully acted film", "a dull , lifeless mess", "the plot is thin but the cast is fun"]


def predict(capsys, *argv: str) -> list[tuple[str, float, str]]:
    assert main(["predict", *argv]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.strip().splitlines()]
    return [(label, float(prob), text) for label, prob, text in rows]


@pytest.fixture(scope="module")
def features_run(tmp_path_factory, tiny_text_models):
    from transferlab.config import load_config
    from transferlab.experiments.features import FeaturesConfig, run_features

    cfg = load_config(FeaturesConfig, "features", "offline", [
        f"encoder.model={tiny_text_models['distilbert']}", "encoder.max_length=64", "data.limit=64",
        "classifier.name=logreg", "classifier.C_grid=[1.0]", "cache=false"])
    return run_features(cfg, tmp_path_factory.mktemp("features-logs"), progress=False)


@pytest.mark.slow
def test_predict_finetune_run_agrees_with_a_bare_pipeline(capsys, finetuned_run):
    from transformers import pipeline

    rows = predict(capsys, str(finetuned_run), *[a for t in TEXTS for a in ("--text", t)])
    expected = pipeline("text-classification", model=str(finetuned_run / "model"))(TEXTS)
    assert [r[2] for r in rows] == TEXTS
    for (label, prob, _), exp in zip(rows, expected):
        assert label == exp["label"] and prob == pytest.approx(exp["score"], abs=1e-4) and 0.5 <= prob <= 1


@pytest.mark.slow
def test_predict_features_run_agrees_with_its_classifier(capsys, features_run):
    import numpy as np

    from transferlab.experiments.features import load_classifier
    from transferlab.models.device import resolve_device
    from transferlab.models.text_encoder import encode, load_encoder

    rows = predict(capsys, str(features_run), *[a for t in TEXTS for a in ("--text", t)])
    bundle = load_classifier(features_run)
    tokenizer, model = load_encoder(bundle["encoder"]["model"], resolve_device("cpu"))
    assert bundle["encoder"]["layers"] == [-3, -2, -1]  # the offline preset's: predict must pool the same layers
    vectors = encode(TEXTS, tokenizer, model, bundle["encoder"]["pooling"], bundle["encoder"]["max_length"],
                     progress=False, layers=bundle["encoder"]["layers"])
    expected = [bundle["label_names"][i] for i in bundle["pipeline"].predict(vectors)]
    assert [r[0] for r in rows] == expected
    assert np.allclose([r[1] for r in rows], bundle["pipeline"].predict_proba(vectors).max(1), atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["txt", "csv", "jsonl"])
def test_predict_reads_texts_from_files_in_order(capsys, tmp_path, finetuned_run, kind):
    path = tmp_path / f"texts.{kind}"
    if kind == "txt":
        path.write_text("\n".join(TEXTS) + "\n\n")
    elif kind == "csv":
        import csv

        with open(path, "w", newline="") as f:
            csv.writer(f).writerows([["id", "review"], *[[i, t] for i, t in enumerate(TEXTS)]])
    else:
        path.write_text("".join(json.dumps({"review": t, "id": i}) + "\n" for i, t in enumerate(TEXTS)))
    extra = [] if kind == "txt" else ["--text-column", "review"]
    assert [r[2] for r in predict(capsys, str(finetuned_run), "--file", str(path), *extra)] == TEXTS


def test_predict_errors(capsys, tmp_path, finetuned_run):
    def error(*argv: str) -> str:
        assert main(["predict", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
        return err

    assert "is not a transferlab run directory" in error(str(tmp_path), "--text", "x")
    assert "is not a folder" in error(str(tmp_path / "missing"), "--text", "x")
    crashed = tmp_path / "crashed"
    shutil.copytree(finetuned_run, crashed, ignore=shutil.ignore_patterns("checkpoints"))
    (crashed / "metrics.json").unlink()
    assert "has no results" in error(str(crashed), "--text", "x")
    assert "does not exist" in error(str(finetuned_run), "--file", str(tmp_path / "nope.txt"))
    (tmp_path / "t.csv").write_text("id,review\n1,good\n")
    assert "has no 'text' column; columns found: id, review" in error(str(finetuned_run), "--file",
                                                                     str(tmp_path / "t.csv"))


def test_rows_with_an_empty_text_are_skipped_and_said(capsys, tmp_path, finetuned_run):
    path = tmp_path / "t.csv"
    path.write_text("id,text\n1,a fine film\n2,\n3,a dull film\n")
    assert main(["predict", str(finetuned_run), "--file", str(path)]) == 0
    out, err = capsys.readouterr()
    assert [line.split("\t")[2] for line in out.strip().splitlines()] == ["a fine film", "a dull film"]
    assert "note: skipped 1 row(s) of" in err and "with an empty 'text'" in err


@pytest.mark.slow
def test_jsonl_output_has_the_fields_of_the_predictions_files(capsys, finetuned_run):
    from transferlab.evaluation.predictions import read_predictions

    assert main(["predict", str(finetuned_run), "--format", "jsonl", *[a for t in TEXTS for a in ("--text", t)]]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [r["example"] for r in rows] == TEXTS and [r["id"] for r in rows] == [0, 1, 2]
    stored = read_predictions(finetuned_run, "finetune")[0]
    # the same fields, less what only a labelled split has
    assert set(rows[0]) == set(stored) - {"split", "label", "label_probability"}
    tsv = predict(capsys, str(finetuned_run), *[a for t in TEXTS for a in ("--text", t)])
    assert [(r["prediction"], r["probability"]) for r in rows] == [(label, pytest.approx(p, abs=1e-4))
                                                                  for label, p, _ in tsv]


def test_predict_file_with_a_review_over_the_csv_field_limit(capsys, tmp_path, finetuned_run):
    import csv

    long_review = ("a long, winding review\nof a film " * 7000)[:200_000]
    path = tmp_path / "long.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([["id", "text"], [1, long_review], [2, "a dull film"]])
    assert main(["predict", str(finetuned_run), "--file", str(path)]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.strip().splitlines()]
    assert [r[2] for r in rows] == [" ".join(long_review.split()), "a dull film"]


@pytest.fixture(scope="module")
def odd_names_run(tmp_path_factory, tiny_text_models):
    """A features run whose class names hold a newline, a tab, a backslash and a line separator."""
    from transferlab.config import load_config
    from transferlab.experiments.features import FeaturesConfig, run_features

    cfg = load_config(FeaturesConfig, "features", "offline", {
        "encoder": {"model": str(tiny_text_models["distilbert"]), "max_length": 32},
        "data": {"limit": 64, "label_names": ["bad\nreview", "good\treview\\2\u2028"]},
        "classifier": {"name": "logreg", "C_grid": [1.0]}, "cache": False})
    return run_features(cfg, tmp_path_factory.mktemp("odd-names"), progress=False)


@pytest.mark.slow
def test_a_class_name_with_a_newline_or_tab_stays_one_tsv_field(capsys, odd_names_run):
    assert main(["predict", str(odd_names_run), *[a for t in TEXTS for a in ("--text", t)]]) == 0
    out = capsys.readouterr().out
    lines = out.split("\n")[:-1]
    assert len(lines) == len(TEXTS) == len(out.splitlines())  # one row per text, whatever the names hold
    fields = [line.split("\t") for line in lines]
    assert all(len(f) == 3 for f in fields) and [f[2] for f in fields] == TEXTS
    assert {f[0] for f in fields} <= {"bad\\nreview", "good\\treview\\\\2\\u2028"}
    assert main(["predict", str(odd_names_run), "--format", "jsonl", "--text", TEXTS[0]]) == 0
    row = json.loads(capsys.readouterr().out)  # JSON keeps the name as it is
    assert row["prediction"] in ("bad\nreview", "good\treview\\2\u2028")
