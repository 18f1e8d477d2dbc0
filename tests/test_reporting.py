"""The report from real (tiny) runs: strict HTML, every image embedded, seeds summarised, captions per plot."""

from __future__ import annotations

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
