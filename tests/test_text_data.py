import json

import pytest

from helpers import make_csv
from transferlab.data.text import TextDataConfig, load_text_data
from transferlab.errors import TransferlabError


def rows(texts_labels):
    return [{"review": t, "sentiment": y} for t, y in texts_labels]


@pytest.fixture
def files(tmp_path, rt_data):
    def take(split, n):
        ds = rt_data[split]
        half = len(ds) // 2
        picks = list(range(n // 2)) + list(range(half, half + n // 2))
        return [(ds[i]["text"], "positive" if ds[i]["label"] else "negative") for i in picks]

    train = make_csv(tmp_path / "train.csv", rows(take("train", 40)))
    test = tmp_path / "test.jsonl"
    test.write_text("".join(json.dumps(r) + "\n" for r in rows(take("test", 20))))
    return train, test


def test_user_files_with_own_columns_and_string_labels(files):
    train, test = files
    data = load_text_data(TextDataConfig(source="files", train_file=str(train), test_file=str(test),
                                         text_column="review", label_column="sentiment"))
    assert data.label_names == ["negative", "positive"]
    assert set(data.splits) == {"train", "validation", "test"}
    assert len(data.splits["train"]) + len(data.splits["validation"]) == 40  # validation held out of train
    assert len(data.splits["test"]) == 20 and data.splits["test"].column_names == ["text", "label"]
    assert sorted(set(data.splits["validation"]["label"])) == [0, 1]  # stratified hold-out


def test_missing_column_lists_the_columns_found(files):
    train, test = files
    with pytest.raises(TransferlabError, match=r"no text column 'text'; columns found: review, sentiment\. "
                                               r"Set data\.text_column"):
        load_text_data(TextDataConfig(source="files", train_file=str(train), test_file=str(test),
                                      label_column="sentiment"))


def test_missing_file_and_missing_folder(tmp_path):
    with pytest.raises(TransferlabError, match="data file .*nope.csv' for the train split does not exist"):
        load_text_data(TextDataConfig(source="files", train_file=str(tmp_path / "nope.csv"), test_file="x.csv"))
    with pytest.raises(TransferlabError, match="lacks rt-polarity.pos, rt-polarity.neg: point data.path"):
        load_text_data(TextDataConfig(path=str(tmp_path)))


def test_single_class_split_is_refused(tmp_path):
    train = make_csv(tmp_path / "train.csv", [{"text": f"good film {i}", "label": 1} for i in range(10)])
    test = make_csv(tmp_path / "test.csv", [{"text": "bad", "label": 0}, {"text": "good", "label": 1}])
    with pytest.raises(TransferlabError, match="split holds one class only"):
        load_text_data(TextDataConfig(source="files", train_file=str(train), validation_file=str(train),
                                      test_file=str(test)))


def test_empty_texts_dropped_with_count_or_refused(tmp_path):
    data_rows = [{"text": t, "label": i % 2} for i, t in enumerate(["a fine film", "", "dull", "   ", "great", "bad"])]
    path = make_csv(tmp_path / "d.csv", data_rows)
    cfg = TextDataConfig(source="files", train_file=str(path), validation_file=str(path), test_file=str(path))
    data = load_text_data(cfg)
    assert len(data.splits["train"]) == 4
    assert "dropped 2 empty texts from the train split" in data.notes[0]
    cfg.empty_texts = "error"
    with pytest.raises(TransferlabError, match="has 2 empty or missing texts: clean the data, or set data.empty_texts=drop"):
        load_text_data(cfg)


@pytest.mark.slow
def test_limit_keeps_both_classes_and_order(rt_data):
    data = load_text_data(TextDataConfig(limit=10))
    for split in data.splits.values():
        assert len(split) == 10 and sum(split["label"]) == 5
    assert data.splits["train"][0]["text"] == rt_data["train"][0]["text"]


@pytest.mark.slow
def test_fingerprint_tracks_content():
    a = load_text_data(TextDataConfig(limit=20))
    b = load_text_data(TextDataConfig(limit=22))
    assert a.fingerprint("train") == load_text_data(TextDataConfig(limit=20)).fingerprint("train")
    assert a.fingerprint("train") != b.fingerprint("train")


@pytest.mark.parametrize("name, content, message", [
    ("fields.csv", 'text,label\n"a, quoted text",pos\nan unquoted, text,neg\n',
     "fields.csv' line 3 has 3 fields, its header 2 (text, label): quote texts that hold commas"),
    ("header.csv", "text,label\n", "header.csv' has a header but no rows"),
    ("blank.jsonl", '{"text": "fine", "label": "pos"}\n\n{"text": "dull", "label": null}\n',
     "blank.jsonl' line 3 has no label (column 'label' is blank)"),
    ("list.jsonl", '{"text": "fine", "label": "pos"}\n["dull", "neg"]\n', "list.jsonl' line 2 is not a JSON object"),
])
def test_broken_files_are_named_with_line_and_cause(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(TransferlabError) as err:
        load_text_data(TextDataConfig(source="files", train_file=str(path), test_file=str(path)))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_json_document_of_records_still_loads(tmp_path):
    path = tmp_path / "all.json"
    path.write_text(json.dumps([{"text": f"film {i}", "label": ["neg", "pos"][i % 2]} for i in range(20)]))
    data = load_text_data(TextDataConfig(source="files", train_file=str(path), test_file=str(path)))
    assert data.label_names == ["neg", "pos"] and len(data.splits["test"]) == 20


def test_rows_without_a_label_are_refused_whatever_the_source(monkeypatch):
    from datasets import Dataset, DatasetDict

    import transferlab.data.text as text

    rows = {"text": ["fine", "dull", "bad"], "label": ["pos", None, "neg"]}
    monkeypatch.setattr(text, "load_hub", lambda name: DatasetDict({s: Dataset.from_dict(rows)
                                                                     for s in ("train", "test")}))
    with pytest.raises(TransferlabError, match=r"the train split has 1 rows without a label \(first: row 2\)"):
        load_text_data(TextDataConfig(source="hub", name="any"))


@pytest.mark.parametrize("settings, message", [
    ({"validation_fraction": 0.0}, "data.validation_fraction must be a fraction in (0, 1); got 0.0"),
    ({"validation_fraction": 1.5}, "data.validation_fraction must be a fraction in (0, 1); got 1.5"),
    ({"limit": -3}, "data.limit must be at least 1 (or null for all examples); got -3"),
])
def test_out_of_range_settings_are_refused(settings, message):
    with pytest.raises(TransferlabError) as err:
        TextDataConfig(**settings)
    assert str(err.value) == message


def test_a_review_over_the_csv_field_limit_loads_whole(tmp_path, rt_data):
    """csv's default field limit is 128 kB: a 200 kB review (a quoted field with commas and newlines) loads."""
    long_review = ("a long, winding review\nof a film " * 7000)[:200_000]
    assert len(long_review) == 200_000
    texts = list(rt_data["train"]["text"][:20]) + list(rt_data["train"]["text"][-20:])
    rows = [{"text": long_review, "label": "pos"}] + [{"text": t, "label": "pos" if i >= 20 else "neg"}
                                                      for i, t in enumerate(texts)]
    train = make_csv(tmp_path / "train.csv", rows)
    test = make_csv(tmp_path / "test.csv", rows[1:])
    data = load_text_data(TextDataConfig(source="files", train_file=str(train), test_file=str(test)))
    loaded = list(data.splits["train"]["text"]) + list(data.splits["validation"]["text"])
    assert long_review in loaded and len(loaded) == 41
