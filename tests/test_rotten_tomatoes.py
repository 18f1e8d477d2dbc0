"""The vendored files rebuild the Hub's ``rotten_tomatoes`` splits exactly."""

import hashlib

import pytest

from helpers import SHARED
from transferlab.data.rotten_tomatoes import load_rotten_tomatoes

EXPECTED = {  # split: (size, first text, first label, last text, last label)
    "train": (8530, "the rock is destined to be the 21st century's new \" conan \" and that he's going to make a "
                    "splash even greater than arnold schwarzenegger , jean-claud van damme or steven segal .", 1,
              "things really get weird , though not particularly scary : the movie is all portent and no content .", 0),
    "validation": (1066, "compassionately explores the seemingly irreconcilable situation between conservative "
                         "christian parents and their estranged gay and lesbian children .", 1, None, 0),
    "test": (1066, "lovingly photographed in the manner of a golden book sprung to life , stuart little 2 manages "
                   "sweetness largely without stickiness .", 1,
             "enigma is well-made , but it's just too dry and too placid .", 0),
}
CHECKSUM = "6e33818d4b8db2c992729d133d4446d9c8103ad1cb56516f65a12af4f308eb2c"


def checksum(dd) -> str:
    h = hashlib.sha256()
    for split in ("train", "validation", "test"):
        for row in dd[split]:
            h.update(f"{split}\t{row['label']}\t{row['text']}\n".encode("utf-8"))
    return h.hexdigest()


def test_split_sizes_balance_and_edges(rt_data):
    for split, (size, first, first_label, last, last_label) in EXPECTED.items():
        ds = rt_data[split]
        assert len(ds) == size
        assert sum(ds["label"]) == size // 2  # per-class balance: half positive
        assert ds[0]["text"] == first and ds[0]["label"] == first_label
        assert ds[-1]["label"] == last_label
        if last is not None:
            assert ds[-1]["text"] == last
    assert rt_data["validation"][-1]["text"].startswith("the feature-length stretch . . . strains the show's concept")
    assert rt_data["train"].features["label"].names == ["neg", "pos"]


def test_checksum_over_all_rows(rt_data):
    assert checksum(rt_data) == CHECKSUM


def test_latin1_decoding_keeps_c1_characters(rt_data):
    # The Hub decodes latin-1, so typographic quotes survive as C1 control characters.
    rows = [t for s in rt_data for t in rt_data[s]["text"] if any(c in t for c in "\x85\x91\x96\x97")]
    assert len(rows) == 72


@pytest.mark.skipif(not (SHARED / "rotten_tomatoes").is_dir(), reason="../shared/data not present")
def test_shared_copy_gives_the_same_rows():
    assert checksum(load_rotten_tomatoes(SHARED / "rotten_tomatoes")) == CHECKSUM
