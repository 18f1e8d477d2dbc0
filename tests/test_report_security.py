"""The report writer on a folder someone sends you (issue 28): nothing it holds makes the report write outside the
folder, read a file from outside into report.html, or turn the receiver's own images into thumbnails. Real runs
(a tiny CLIP zero-shot run), real links and files."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from test_clip_lora import overrides
from test_security import cli, one_line_error
from transferlab.cli import main


@pytest.fixture(scope="module")
def zeroshot_run(tmp_path_factory, clip_folder, tree) -> Path:
    """A finished zero-shot run of the tiny CLIP on the generated Tiny ImageNet tree (its predictions name the
    tree's images by absolute path)."""
    out = tmp_path_factory.mktemp("zeroshot")
    assert main(["zeroshot", *overrides(clip_folder, tree, out), "run_name=zs"]) == 0
    return out / "zeroshot" / "zs"


def received(run: Path, tmp_path: Path) -> Path:
    """A copy of ``run`` two folders down, as a folder someone sent."""
    copy = tmp_path / "inbox" / "sent" / "received"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("report*"))
    return copy


def files_outside(tmp_path: Path, folder: Path) -> dict[str, bytes]:
    """Every file under ``tmp_path`` but inside ``folder``, with its bytes (links not followed)."""
    return {str(p): p.read_bytes() for p in tmp_path.rglob("*")
            if p.is_file() and not p.is_symlink() and folder not in p.parents}


@pytest.mark.slow
def test_planted_report_links_are_replaced_not_written_through(capsys, tmp_path, zeroshot_run):
    run = received(zeroshot_run, tmp_path)
    mine = {name: tmp_path / f"my-{name}" for name in ("report.md", "report.html")}
    for name, target in mine.items():
        target.write_text(f"my own {name}\n")
        (run / name).symlink_to(target)
    code, out, err = cli(capsys, "report", run)
    assert code == 0, err
    for name, target in mine.items():
        assert target.read_text() == f"my own {name}\n"  # untouched
        assert not (run / name).is_symlink() and "transferlab report" in (run / name).read_text()


def test_a_report_assets_link_to_an_outside_folder_is_never_written_through(capsys, tmp_path, zeroshot_run):
    run = received(zeroshot_run, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (run / "report_assets").symlink_to(elsewhere, target_is_directory=True)
    code, _, err = cli(capsys, "report", run)
    assert code == 0, err
    assert list(elsewhere.iterdir()) == []
    assert (run / "report_assets").is_dir() and not (run / "report_assets").is_symlink()
    assert (run / "report_assets" / "summary.png").is_file()


@pytest.mark.slow
def test_names_from_received_files_cannot_place_files_outside(capsys, tmp_path, zeroshot_run, tree):
    run = received(zeroshot_run, tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["experiment"] = "../../../escaped"
    (run / "metrics.json").write_text(json.dumps(metrics))
    before = files_outside(tmp_path, run)
    code, _, err = cli(capsys, "report", run, "--images", tree)  # thumbnails too
    assert code == 0, err
    assert files_outside(tmp_path, run) == before  # nothing new or changed outside the run folder
    made = [p.name for p in (run / "report_assets").iterdir()]
    assert any(name.startswith("escaped-received-reliability-") for name in made)  # slugged, with a hash
    assert any(name.startswith("received-zero_shot-") for name in made)
    assert all("/" not in name and not name.startswith(".") for name in made)


def test_a_curve_named_by_a_received_data_set_stays_in_its_folder(tmp_path):
    from transferlab.reporting.curves import curve_section

    folder = tmp_path / "a" / "assets"
    folder.mkdir(parents=True)
    methods = {"features": [(2.0, "2", [0.6, 0.7], [(0.5, 0.8), (0.6, 0.8)]), (4.0, "4", [0.8], [(0.7, 0.9)])]}
    blocks = curve_section("../../../x", methods, folder, 2)
    (path,) = [b[1] for b in blocks if b[0] == "img"]
    assert path.parent == folder and path.is_file() and [p.name for p in tmp_path.rglob("*.png")] == [path.name]


def png_holding(secret: bytes) -> bytes:
    """A real PNG file whose bytes hold ``secret`` (in a text chunk)."""
    import io

    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("secret", secret.decode())
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), "red").save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


@pytest.mark.slow
def test_a_png_link_to_an_outside_file_is_not_inlined(capsys, tmp_path, zeroshot_run):
    run = received(zeroshot_run, tmp_path)
    secret = tmp_path / "secret.png"
    secret.write_bytes(png_holding(b"SECRET-7f3a"))
    (run / "confusion_matrix.png").unlink()
    (run / "confusion_matrix.png").symlink_to(secret)
    (run / "zz_notes.png").symlink_to(secret)
    code, _, err = cli(capsys, "report", run)
    assert code == 0, err
    page = (run / "report.html").read_text()
    assert "SECRET-7f3a" not in page and base64.b64encode(secret.read_bytes()).decode() not in page
    assert "confusion_matrix.png" not in (run / "report.md").read_text()
    # a PNG of the run itself is shown, inline
    (run / "zz_notes.png").unlink()
    (run / "zz_notes.png").write_bytes((zeroshot_run / "confusion_matrix.png").read_bytes())
    assert cli(capsys, "report", run)[0] == 0
    page = (run / "report.html").read_text()
    assert base64.b64encode((run / "zz_notes.png").read_bytes()).decode() in page


def test_a_received_metrics_file_linked_from_outside_is_refused(capsys, tmp_path, zeroshot_run):
    run = received(zeroshot_run, tmp_path)
    outside = tmp_path / "their-metrics.json"
    outside.write_text((run / "metrics.json").read_text())
    (run / "metrics.json").unlink()
    (run / "metrics.json").symlink_to(outside)
    code, _, err = cli(capsys, "report", run, "--output", tmp_path / "rep")
    assert "outside the run folder" in one_line_error(code, err) and not (tmp_path / "rep").exists()


@pytest.mark.slow
def test_predictions_naming_images_outside_make_no_thumbnails(capsys, tmp_path, zeroshot_run, tree):
    run = received(zeroshot_run, tmp_path)
    private = tmp_path / "private"
    private.mkdir()
    photo = next(tree.rglob("*.JPEG"))
    shutil.copy(photo, private / "me.JPEG")
    rows = [json.loads(line) for line in (run / "predictions" / "zero_shot.jsonl").read_text().splitlines()]
    relative = os.path.relpath(private / "me.JPEG", Path.cwd())
    for i, row in enumerate(rows):
        row["example"] = str(private / "me.JPEG") if i % 2 else "../" * 12 + relative
    (run / "predictions" / "zero_shot.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    def thumbnails(folder: Path) -> list[Path]:
        return [p for p in (folder / "report_assets").iterdir() if p.name.startswith("received-zero_shot-")]

    code, _, err = cli(capsys, "report", run, "--output", tmp_path / "plain")
    assert code == 0, err
    assert thumbnails(tmp_path / "plain") == []
    assert '<div class="gallery">' not in (tmp_path / "plain" / "report.html").read_text()
    assert "images not shown" in (tmp_path / "plain" / "report.md").read_text()
    # the same run with the folder vouched for: the thumbnails are made (the check above can fail)
    code, _, err = cli(capsys, "report", run, "--output", tmp_path / "vouched", "--images", private)
    assert code == 0, err
    made = thumbnails(tmp_path / "vouched")
    assert made and "images not shown" not in (tmp_path / "vouched" / "report.md").read_text()


@pytest.mark.parametrize("case", ["reversed", "read-only", "link"])
def test_a_readme_that_cannot_be_updated_is_one_line(capsys, tmp_path, zeroshot_run, case):
    readme = tmp_path / "README.md"
    text = "intro\n<!-- results:begin -->\nold\n<!-- results:end -->\noutro\n"
    if case == "reversed":
        text = "intro\n<!-- results:end -->\nold\n<!-- results:begin -->\noutro\n"
    readme.write_text(text)
    if case == "read-only":
        readme.chmod(0o444)
    given = readme
    if case == "link":
        given = tmp_path / "LINKED.md"
        given.symlink_to(readme)
    code, _, err = cli(capsys, "report", zeroshot_run, "--output", tmp_path / "rep", "--readme", given)
    line = one_line_error(code, err)
    assert {"reversed": "end marker before", "read-only": "read-only", "link": "not a regular file"}[case] in line
    assert readme.read_text() == text and not (tmp_path / "rep").exists()  # refused before anything is written
    if case == "read-only":
        assert stat.S_IMODE(readme.stat().st_mode) == 0o444


def test_bidi_controls_and_newlines_in_class_names_do_not_reach_the_report(capsys, tmp_path, zeroshot_run):
    run = received(zeroshot_run, tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    per_class = metrics["methods"]["zero_shot"]["test"]["per_class"]
    first = next(iter(per_class))
    per_class["evil\u202egnp.exe\nnew row | x\u2066"] = per_class.pop(first)
    (run / "metrics.json").write_text(json.dumps(metrics))
    code, _, err = cli(capsys, "report", run)
    assert code == 0, err
    for name in ("report.md", "report.html"):
        text = (run / name).read_text()
        assert not any(c in text for c in "\u202e\u2066\u200f"), name
    md = (run / "report.md").read_text()
    row = next(line for line in md.splitlines() if "evil" in line)
    assert "evilgnp.exe new row \\| x" in row and row.startswith("| ") and row.endswith(" |")


def test_a_received_study_naming_a_cell_outside_is_refused_in_one_line(capsys, tmp_path, zeroshot_run):
    study = tmp_path / "study"
    outside = tmp_path / "outside-run"
    shutil.copytree(zeroshot_run, outside)
    study.mkdir()
    (study / "study.json").write_text(json.dumps({"nested": True, "seeds": [0], "status": "completed", "cells": [
        {"experiment": "zeroshot", "shots": None, "seed": 0, "status": "completed", "run_dir": "../outside-run"}]}))
    code, _, err = cli(capsys, "report", study, "--output", tmp_path / "rep")
    assert "outside" in one_line_error(code, err)
    assert not (outside / "report.md").exists() and not (tmp_path / "rep").exists()
