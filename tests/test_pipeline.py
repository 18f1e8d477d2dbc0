"""`transferlab run` and `transferlab report`: small real runs of all three experiments, failure, resume."""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from helpers import finetune_overrides
from transferlab.cli import main
from transferlab.evaluation.predictions import read_predictions
from transferlab.tracking.files import read_json

pytestmark = pytest.mark.slow  # whole-pipeline runs


class Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.srcs, self.cells = [], []
        self._in_cell = False

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.srcs.append(dict(attrs)["src"])
        self._in_cell = tag == "td"

    def handle_data(self, data):
        if self._in_cell:
            self.cells.append(data)


def stage_args(tiny_distilbert, tiny_text_models, clip_folder, tree) -> list[str]:
    features = [f"features.encoder.model={tiny_distilbert}", "features.data.limit=40", "features.classifier.C_grid=[1.0]"]
    finetune = ["finetune." + o for o in finetune_overrides(tiny_text_models["distilbert"], **{
        "data.limit": 32, "training.epochs": 1, "training.eval_steps": 2, "training.batch_size": 16})]
    clip = [f"clip.model.name={clip_folder}", f"clip.data.path={tree}", "clip.data.val_per_class=2",
            "clip.model.batch_size=8", "clip.lora.towers=both", "clip.lora.target_modules=[q_proj,v_proj]",
            "clip.lora.train_projection=false", "clip.training.max_steps=2", "clip.training.batch_size=4",
            "clip.probe.c_grid=[1.0]", "clip.model.templates=['a photo of a {name}.']"]
    return features + finetune + clip




@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory, tiny_distilbert, tiny_text_models, clip_folder, tree) -> Path:
    out = tmp_path_factory.mktemp("pipeline")
    code = main(["run", "--output-dir", str(out)] + stage_args(tiny_distilbert, tiny_text_models, clip_folder, tree))
    assert code == 0
    (run_dir,) = (out / "run").iterdir()
    return run_dir


def test_all_stages_complete_and_report_holds_the_metrics(pipeline_run):
    state = read_json(pipeline_run / "pipeline.json")
    assert [s["name"] for s in state["stages"]] == ["features", "finetune", "zeroshot", "lora"]
    assert all(s["status"] == "completed" and s["elapsed_s"] > 0 for s in state["stages"])
    html = (pipeline_run / "report.html").read_text()
    parser = Images()
    parser.feed(html)
    parser.close()
    assert parser.srcs, "no image in the report"
    for src in parser.srcs:  # self-contained: every image inline, and a real PNG
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    for stage in state["stages"]:
        assert not Path(stage["run_dir"]).is_absolute()  # recorded relative to the pipeline directory
        metrics = json.loads((pipeline_run / stage["run_dir"] / "metrics.json").read_text())
        test = metrics["methods"][metrics["primary"]]["test"]
        # the row of this run: its experiment, then its name (two stages may get the same timestamped name)
        row_start = next(i for i in range(1, len(parser.cells)) if parser.cells[i] == Path(stage["run_dir"]).name
                         and parser.cells[i - 1] == stage["name"])
        row = parser.cells[row_start:row_start + 3]  # the runs table: run, model, classes / test examples
        assert row[2] == f"{metrics['n_classes']} / {test['n_examples']:,}"
        result_start = next(i for i in range(row_start + 1, len(parser.cells)) if parser.cells[i] == row[0]
                            and parser.cells[i - 1] == stage["name"])
        row = parser.cells[result_start:result_start + 5]  # the results table: run, method, val, test, F1
        assert row[1] == metrics["primary"] and row[3].startswith(f"{test['accuracy']:.4f} ["), (stage["name"], row)
        assert row[4].startswith(f"{test['f1']:.4f} [")
    lora_dir = pipeline_run / state["stages"][3]["run_dir"]
    lora = json.loads((lora_dir / "metrics.json").read_text())
    assert list(lora["methods"]) == ["zero_shot", "linear_probe", "lora"]
    for method in lora["methods"]:  # one predictions file per method, agreeing with metrics.json
        rows = [r for r in read_predictions(lora_dir, method) if r["split"] == "test"]
        assert all(Path(r["example"]).is_file() and len(r["top5"]) == 3 for r in rows)
        assert sum(r["label"] == r["prediction"] for r in rows) / len(rows) == pytest.approx(
            lora["methods"][method]["test"]["accuracy"])
    rows = [r for r in read_predictions(lora_dir, "lora") if r["split"] == "test"]
    wrong_classes = {r["label"] for r in rows if r["label"] != r["prediction"]}
    right = sum(r["label"] == r["prediction"] for r in rows)
    galleries = html.split('<div class="gallery">')[1:]
    lora_gallery = galleries[1]  # the zeroshot run's gallery comes first, then the lora run's
    assert lora_gallery.split("</div>")[0].count("<img") == min(8, len(wrong_classes)) + min(4, right)
    lora_rows = [i for i in range(1, len(parser.cells)) if parser.cells[i - 1] == "lora"
                 and parser.cells[i] == Path(state["stages"][3]["run_dir"]).name]
    assert len(lora_rows) == 3  # its methods grouped under it, in the runs, results and calibration tables
    md = (pipeline_run / "report.md").read_text()
    assert "DistilBERT [CLS] + SVC" in md and "CLIP ViT-B/16 + LoRA r=8" in md  # the lab's numbers beside ours
    assert "read from its TensorBoard event files" in md and "Per-class accuracy" in md and "Software and hardware" in md


def test_report_command_rebuilds_without_recomputing(pipeline_run, tmp_path, capsys):
    state = read_json(pipeline_run / "pipeline.json")
    dirs = [str(pipeline_run / s["run_dir"]) for s in state["stages"]]
    before = {d: (Path(d) / "metrics.json").stat().st_mtime for d in dirs}
    assert main(["report", *dirs, "--output", str(tmp_path / "rep")]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(tmp_path / "rep" / "report.html")
    assert before == {d: (Path(d) / "metrics.json").stat().st_mtime for d in dirs}
    assert (tmp_path / "rep" / "report.md").read_text().count("| completed |") >= 4


def test_two_runs_of_one_experiment_side_by_side(pipeline_run, tmp_path, capsys):
    features = str(pipeline_run / read_json(pipeline_run / "pipeline.json")["stages"][0]["run_dir"])
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results:begin -->\nold\n<!-- results:end -->\noutro\n")
    assert main(["report", features, features, "--output", str(tmp_path / "rep"), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old" not in text
    assert text.count(f"| features | {Path(features).name} |") == 4 and "Generated by `transferlab report" in text


def test_failed_stage_keeps_results_and_resume_continues(tmp_path, tiny_distilbert, tiny_text_models, capsys):
    out = tmp_path / "logs"
    good = [f"features.encoder.model={tiny_distilbert}", "features.data.limit=40", "features.classifier.C_grid=[1.0]"]
    good += ["finetune." + o for o in finetune_overrides(tiny_text_models["distilbert"], **{
        "data.limit": 32, "training.epochs": 1, "training.eval_steps": 2})]
    broken = good + [f"finetune.model={tmp_path}/no-such-model"]
    code = main(["run", "--output-dir", str(out), "--stages", "features,finetune"] + broken)
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and err.startswith("error: stage finetune failed:") and "transferlab run --resume" in err
    (run_dir,) = (out / "run").iterdir()
    state = read_json(run_dir / "pipeline.json")
    assert [s["status"] for s in state["stages"]] == ["completed", "failed"]
    assert "no-such-model" in state["stages"][1]["error"]
    report = (run_dir / "report.md").read_text()
    assert "| finetune | failed |" in report and "no-such-model" in report and "--resume" in report
    assert (run_dir / state["stages"][0]["run_dir"] / "metrics.json").is_file()  # the finished stage stays
    code = main(["run", "--resume", str(run_dir), "features.classifier.C_grid=[2.0]"])
    assert code == 2 and "change the config of completed stage(s) features" in capsys.readouterr().err

    code = main(["run", "--resume", str(run_dir), f"finetune.model={tiny_text_models['distilbert']}"])
    out_text = capsys.readouterr().out
    assert code == 0, capsys.readouterr().err
    assert "stage 1/2: features already completed" in out_text
    state2 = read_json(run_dir / "pipeline.json")
    assert [s["status"] for s in state2["stages"]] == ["completed", "completed"]
    assert state2["stages"][0]["run_dir"] == state["stages"][0]["run_dir"]  # not recomputed
    assert len(list((run_dir / "features").iterdir())) == 1
    assert "| finetune | completed |" in (run_dir / "report.md").read_text()
    status = read_json(run_dir / "status.json")
    assert status["status"] == "completed" and "error" not in status


def test_report_of_a_copied_pipeline_reads_the_copy(pipeline_run, tmp_path, capsys):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(pipeline_run, copy)
    features = copy / read_json(copy / "pipeline.json")["stages"][0]["run_dir"]
    metrics = read_json(features / "metrics.json")
    metrics["methods"]["features"]["test"]["accuracy"] = 0.123456  # only the copy says so
    (features / "metrics.json").write_text(json.dumps(metrics))
    assert main(["report", str(copy)]) == 0
    assert "0.1235" in (copy / "report.md").read_text()
    assert "0.1235" not in (pipeline_run / "report.md").read_text()


def test_run_with_seeds_runs_each_stage_once_per_seed(tmp_path, tiny_distilbert, capsys):
    out = tmp_path / "logs"
    args = ["run", "--output-dir", str(out), "--stages", "features", "--seeds", "0,1",
            f"features.encoder.model={tiny_distilbert}", "features.data.limit=40", "features.classifier.C_grid=[1.0]"]
    assert main(args) == 0
    (run_dir,) = (out / "run").iterdir()
    state = read_json(run_dir / "pipeline.json")
    assert [(s["name"], s["seed"], s["run_dir"]) for s in state["stages"]] == [
        ("features", 0, "features/seed0"), ("features", 1, "features/seed1")]
    report = (run_dir / "report.md").read_text()
    assert "| features (seed 1) | completed |" in report and "Over several seeds" in report


def test_resume_after_a_failed_seeded_stage_keeps_the_attempt_and_reruns(tmp_path, tiny_distilbert, monkeypatch,
                                                                        capsys):
    import transferlab.experiments.features.runner as features

    out = tmp_path / "logs"
    args = ["--output-dir", str(out), "--stages", "features", "--seeds", "0", f"features.encoder.model={tiny_distilbert}",
            "features.data.limit=40", "features.classifier.C_grid=[1.0]"]
    real = features.embed_splits

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(features, "embed_splits", interrupted)
    assert main(["run", *args]) == 130  # Ctrl-C: the stage is recorded as failed
    (run_dir,) = (out / "run").iterdir()
    assert read_json(run_dir / "pipeline.json")["stages"][0]["run_dir"] == "features/seed0"
    assert read_json(run_dir / "features" / "seed0" / "status.json")["status"] == "failed"
    monkeypatch.setattr(features, "embed_splits", real)
    assert main(["run", "--resume", str(run_dir)]) == 0
    assert "kept as seed0.failed" in capsys.readouterr().out
    assert read_json(run_dir / "features" / "seed0" / "status.json")["status"] == "completed"
    assert read_json(run_dir / "features" / "seed0.failed" / "status.json")["status"] == "failed"


def test_run_errors(tmp_path, capsys):
    assert main(["run", "--output-dir", str(tmp_path), "featurs.data.limit=3"]) == 2
    assert "names no stage section" in capsys.readouterr().err
    assert main(["run", "--output-dir", str(tmp_path), "features.data.limt=3"]) == 2
    assert "did you mean 'data.limit'" in capsys.readouterr().err
    assert main(["run", "--resume", str(tmp_path)]) == 2
    assert "not a `transferlab run` directory" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
