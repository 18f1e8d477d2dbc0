"""The report from real (tiny) runs: strict HTML, every image embedded, seeds summarised, captions per plot."""

from __future__ import annotations

import re

import base64
import statistics
from html.parser import HTMLParser
from pathlib import Path

import pytest

from transferlab.cli import main
from transferlab.tracking.files import read_json


class StrictPage(HTMLParser):
    """Fails on mismatched tags; collects images, figure captions and table cells."""

    VOID = {"img", "meta", "br", "hr", "link"}

    def __init__(self):
        super().__init__()
        self.stack, self.srcs, self.captions, self.cells, self._text = [], [], [], [], None

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.srcs.append(dict(attrs)["src"])
        if tag not in self.VOID:
            self.stack.append(tag)
        if tag in ("figcaption", "td"):
            self._text = []

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1] if self.stack else None}>"
        self.stack.pop()
        if tag in ("figcaption", "td"):
            (self.captions if tag == "figcaption" else self.cells).append("".join(self._text))
            self._text = None

    def handle_data(self, data):
        if self._text is not None:
            self._text.append(data)


def parse(html: str) -> StrictPage:
    page = StrictPage()
    page.feed(html)
    page.close()
    assert not page.stack, f"unclosed tags: {page.stack}"
    return page


@pytest.fixture(scope="module")
def feature_runs(tmp_path_factory, tiny_distilbert) -> list[Path]:
    """Three features runs that differ only in their seed, and one with other settings."""
    out = tmp_path_factory.mktemp("report-runs")
    runs = []
    for seed, extra in ((0, []), (1, []), (2, []), (0, ["classifier.name=logreg"])):
        args = ["features", "--output-dir", str(out), f"encoder.model={tiny_distilbert}", "encoder.pooling=cls",
                "data.limit=60", "classifier.C_grid=[0.1,1,10]", f"seed={seed}", f"run_name=s{seed}{len(extra)}",
                *extra]
        assert main(args) == 0
        runs.append(out / "features" / f"s{seed}{len(extra)}")
    return runs


@pytest.mark.slow
def test_report_reads_at_a_glance(feature_runs, tmp_path, capsys):
    assert main(["report", *map(str, feature_runs), "--output", str(tmp_path)]) == 0
    page = parse((tmp_path / "report.html").read_text())
    assert page.srcs and all(s.startswith("data:image/png;base64,") and base64.b64decode(s.split(",", 1)[1])[:4]
                             == b"\x89PNG" for s in page.srcs)  # self-contained
    assert page.captions[0].startswith("Test accuracy of each method (one bar per method; several seeds averaged) "
                                       "with its 95% bootstrap interval")
    selection = [c for c in page.captions if "for each C tried" in c]
    assert len(selection) == 4 and not any("curves" in c.lower() for c in page.captions)  # no step axis for C
    # the three seeds of one setting are summarised; the logreg run stands alone
    tests = [read_json(p / "metrics.json")["methods"]["features"]["test"]["accuracy"] for p in feature_runs[:3]]
    mean, sd = statistics.fmean(tests), statistics.stdev(tests)
    assert f"{mean:.4f} ± {sd:.4f}" in page.cells and "3 (0, 1, 2)" in page.cells
    md = (tmp_path / "report.md").read_text()
    assert md.count("Most confidently wrong test examples (features)") == 4


@pytest.mark.slow
def test_confident_mistakes_come_from_the_predictions(feature_runs):
    from transferlab.evaluation.predictions import read_predictions
    from transferlab.reporting.analysis import confident_mistakes

    rows = [r for r in read_predictions(feature_runs[0], "features") if r["split"] == "test"]
    picked = confident_mistakes(rows, per_class=2)
    wrong = [r for r in rows if r["label"] != r["prediction"]]
    assert picked and all(r["label"] != r["prediction"] for r in picked)
    for label in {r["label"] for r in picked}:
        mine = [r["probability"] for r in picked if r["label"] == label]
        best = sorted((r["probability"] for r in wrong if r["label"] == label), reverse=True)[:2]
        assert mine == best


@pytest.mark.slow
def test_seeds_option_runs_once_per_seed_and_reports_mean_and_sd(tmp_path, tiny_distilbert, capsys):
    args = ["features", "--output-dir", str(tmp_path), "--seeds", "3,4", f"encoder.model={tiny_distilbert}",
            "data.limit=40", "classifier.C_grid=[1.0]", "classifier.name=logreg", "run_name=demo"]
    assert main(args) == 0
    report_dir = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert report_dir == tmp_path / "features" / "demo-seeds"
    runs = sorted(p.name for p in (tmp_path / "features").iterdir() if (p / "metrics.json").is_file())
    assert runs == ["demo-seed3", "demo-seed4"]
    seeds = [read_json(tmp_path / "features" / r / "metrics.json") for r in runs]
    assert [yaml_seed(tmp_path / "features" / r) for r in runs] == [3, 4]
    tests = [m["methods"]["features"]["test"]["accuracy"] for m in seeds]
    page = parse((report_dir / "report.html").read_text())
    assert f"{statistics.fmean(tests):.4f} ± {statistics.stdev(tests):.4f}" in page.cells
    with pytest.raises(SystemExit):
        main(["features", "--seeds", "1,1"])
    assert "distinct integers" in capsys.readouterr().err


def yaml_seed(run: Path) -> int:
    import yaml

    return yaml.safe_load((run / "config.yaml").read_text())["seed"]


@pytest.mark.slow
def test_the_same_run_twice_is_not_a_seed_study(feature_runs, tmp_path):
    assert main(["report", str(feature_runs[0]), str(feature_runs[0]), "--output", str(tmp_path)]) == 0
    md = (tmp_path / "report.md").read_text()
    assert "Over several seeds" not in md and md.count("| features | s00 |") == 6  # runs, results, calibration


def test_markdown_from_data_cannot_make_html_links_cells_or_code_blocks(tmp_path):
    from transferlab.reporting.document import to_markdown

    hostile = "<script>alert(1)</script> a|b [x](javascript:alert(1)) \\| ```\n# not a heading"
    md = to_markdown([("h2", hostile), ("p", hostile), ("table", ["h|"], [[hostile]]),
                      ("img", tmp_path / "a b(1).png", "x] [y](z)"), ("pre", "text ```` inside"),
                      ("details", "<b>s</b>", "key: ```")], tmp_path)
    assert "<script>" not in md and "<b>" not in md and "](javascript" not in md
    row = next(line for line in md.splitlines() if line.startswith("| &lt;script"))
    assert row.count(" | ") == 0 and row.endswith(" |")                # one cell: every | in the text escaped
    assert "\n# not" not in md and "# not a heading" in md              # no line of the text starts a heading
    assert "![x\\] \\[y\\]\\(z)](a%20b%281%29.png)" in md                # the alt text cannot close early
    assert "`````\ntext ```` inside\n`````" in md                       # a longer fence than any run inside


def test_hparams_hold_the_settings_that_define_a_run_and_counts_are_no_series():
    from transferlab.tracking.tracker import flatten, hparams

    config = {"seed": 0, "run_name": "x", "source": "preset:offline", "cache_dir": "/tmp/c", "score_test": True,
              "data": {"limit": 40, "path": None, "shots": None}, "classifier": {"name": "svc", "C_grid": [1.0]},
              "tracking": {"tensorboard": True}, "resolved": {"device": "cpu"}, "environment": {"cpu_count": 2},
              "paths": {"data.path": {"given": "a"}}}
    assert hparams(config) == {"seed": 0, "score_test": True, "data.limit": 40, "classifier.name": "svc",
                               "classifier.C_grid": "[1.0]"}
    split = {"accuracy": 0.8, "n_examples": 40, "calibration": {"ece": 0.1, "n_bins": 15}, "per_class": {"a": 1}}
    assert flatten(split, "features/test") == {"features/test/accuracy": 0.8, "features/test/calibration/ece": 0.1,
                                               "features/test/per_class/a": 1.0}


def test_a_short_training_history_is_a_table_and_a_long_one_a_panel_of_marked_points(tmp_path):
    from transferlab.reporting.figures import training_blocks
    from transferlab.reporting.runs import RunRecord

    short = RunRecord(tmp_path, {}, None, {}, {"train/loss": [(4, 0.7)], "eval/accuracy": [(4, 0.55), (8, 0.6)]})
    blocks = training_blocks(short, tmp_path / "short.png")
    assert [b[0] for b in blocks] == ["p", "table"] and not (tmp_path / "short.png").exists()
    assert blocks[1][2] == [["training loss", "4", "0.7000"], ["validation accuracy", "4", "0.5500"],
                            ["validation accuracy", "8", "0.6000"]]
    mixed = RunRecord(tmp_path, {}, None, {}, {"train/loss": [(i, 1 / i) for i in range(1, 6)],
                                               "eval/accuracy": [(5, 0.6)]})
    blocks = training_blocks(mixed, tmp_path / "mixed.png")
    assert [b[0] for b in blocks] == ["img", "p", "table"] and "(5 points)" in blocks[0][2]
    assert (tmp_path / "mixed.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_the_lab_stars_stand_only_on_a_curve_of_its_class_count_and_the_caption_says_it(tmp_path):
    from transferlab.reporting.curves import curve_figure

    methods = {"lora": [(1.0, "1", [0.3], [(0.2, 0.4)]), (16.0, "16", [0.5], [(0.4, 0.6)])],
               "zero_shot": [(1.0, "1", [0.25], [(0.2, 0.3)])]}
    _, demo = curve_figure("tiny_imagenet_demo", methods, tmp_path / "demo.png", n_classes=20)
    assert demo.startswith("tiny_imagenet_demo (20 classes): ") and not re.search(r"\blab\b", demo)  # not its task
    _, full = curve_figure("tiny-imagenet-200", methods, tmp_path / "full.png", n_classes=200)
    assert "(200 classes)" in full and "stars: the reference lab's full-data figures" in full and "not drawn" not in full
    _, other = curve_figure("my-reviews", methods, tmp_path / "other.png", n_classes=200)
    assert not re.search(r"\blab\b", other)  # the user's own data: nothing about the lab


@pytest.mark.slow
def test_a_study_keeps_its_curves_when_reported_elsewhere_and_write_report_guesses_nothing(tmp_path,
                                                                                          tiny_distilbert):
    from helpers import make_csv
    from test_study_ledger import rows
    from transferlab.reporting.report import write_report

    make_csv(tmp_path / "train.csv", rows(24))
    make_csv(tmp_path / "test.csv", rows(10, 100))
    assert main(["features", "--shots", "2,4", "--output-dir", str(tmp_path / "out"), f"encoder.model={tiny_distilbert}",
                 "data.source=files", f"data.train_file={tmp_path / 'train.csv'}", "classifier.C_grid=[1.0]",
                 f"data.test_file={tmp_path / 'test.csv'}", "tracking.tensorboard=false", "run_name=s"]) == 0
    study = tmp_path / "out" / "study" / "s"
    assert "Learning curve: train" in (study / "report.md").read_text()
    assert main(["report", str(study), "--output", str(tmp_path / "elsewhere")]) == 0
    md = (tmp_path / "elsewhere" / "report.md").read_text()
    assert "Learning curve: train" in md and "(report_assets/curve-train.png)" in md
    write_report([], study)  # a plain report into a study's folder: no section it was not handed
    assert "Learning curve" not in (study / "report.md").read_text()


@pytest.mark.slow
def test_a_report_on_the_users_own_csv_says_nothing_about_the_lab(tmp_path, tiny_distilbert):
    """The lab's figures stand beside ours only on its own task (Rotten Tomatoes, Tiny ImageNet 200 classes)."""
    from helpers import make_csv
    from test_study_ledger import rows

    make_csv(tmp_path / "train.csv", rows(40))
    make_csv(tmp_path / "test.csv", rows(20, 100))
    common = ["features", "--output-dir", str(tmp_path / "out"), f"encoder.model={tiny_distilbert}",
              "classifier.C_grid=[1.0]", "tracking.tensorboard=false"]
    assert main([*common, "data.source=files", f"data.train_file={tmp_path / 'train.csv'}",
                 f"data.test_file={tmp_path / 'test.csv'}", "run_name=own"]) == 0
    assert main(["report", str(tmp_path / "out" / "features" / "own")]) == 0
    own = (tmp_path / "out" / "features" / "own" / "report.md").read_text()
    assert not re.search(r"\blab(?:'s)?\b", own.lower())
    assert main([*common, "data.limit=40", "run_name=rt"]) == 0
    assert main(["report", str(tmp_path / "out" / "features" / "rt")]) == 0
    assert "reference lab" in (tmp_path / "out" / "features" / "rt" / "report.md").read_text()
