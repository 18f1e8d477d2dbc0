"""Nothing wrong passed off as right: bad values, bad files, refused resumes, full disks and real kills.

Every bad input ends with exit code 2 and one ``error:`` line (no traceback); an up-front error leaves no
run directory, a failure in the middle of a run leaves ``status.json`` "failed" with the reason.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import get_args, get_type_hints

import numpy as np
import pytest

from helpers import finetune_overrides, make_csv
from transferlab.cli import main
from transferlab.tracking.files import read_json

SRC = Path(__file__).resolve().parents[1] / "src"
ENOSPC = OSError(errno.ENOSPC, "No space left on device")


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code: int, err: str) -> str:
    """The ``error:`` line of a refused command: exit code 2, the last line, the only one, no traceback."""
    assert code == 2, err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and err.rstrip("\n").splitlines()[-1] == errors[0], err[-2000:]
    return errors[0]


def run_dirs(out: Path) -> list[Path]:
    """Run directories under an output folder (anything with a config.yaml), the feature cache aside."""
    return sorted(p.parent for p in out.rglob("config.yaml")) if out.is_dir() else []


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def temporary_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".tmp" in p.name]


# --- up-front errors: one line, exit code 2, no run directory -----------------------------------------------

def data_files(tmp: Path, name: str) -> list[str]:
    """``data.*`` overrides for a bad data file (train, validation and test all the same file)."""
    path = tmp / name
    if name == "blank_label.csv":
        make_csv(path, [{"text": "a fine film", "label": "pos"}, {"text": "dull", "label": ""},
                        {"text": "great", "label": "pos"}, {"text": "bad", "label": "neg"}])
    elif name == "empty.csv":
        path.write_text("")
    elif name == "latin1.csv":
        path.write_bytes("text,label\na fine film,pos\ncaf\xe9 society,neg\n".encode("latin-1"))
    elif name == "broken.jsonl":
        path.write_text('{"text": "a fine film", "label": "pos"}\n{"text": "dull", "label": \n'
                        '{"text": "bad", "label": "neg"}\n')
    return ["data.source=files", f"data.train_file={path}", f"data.validation_file={path}", f"data.test_file={path}"]


UP_FRONT = {  # id: (command and arguments, given the tmp folder and the tiny model (--output-dir is added); message)
    "lr-nan": (lambda tmp, model: ["finetune", f"model={model}", "training.learning_rate=nan"],
               "config key 'training.learning_rate' must be a finite number; got nan"),
    "lr-inf": (lambda tmp, model: ["finetune", f"model={model}", "training.learning_rate=.inf"],
               "must be a finite number; got inf"),
    "scheduler-typo": (lambda tmp, model: ["finetune", f"model={model}", "training.lr_scheduler=cosin"],
                       "config key 'training.lr_scheduler' must be one of linear, cosine"),
    "C-nan": (lambda tmp, model: ["features", f"encoder.model={model}", "classifier.C=nan"],
              "config key 'classifier.C' must be a finite number; got nan"),
    "C-grid-inf": (lambda tmp, model: ["features", f"encoder.model={model}", "classifier.C_grid=[1,.inf]"],
                   "config key 'classifier.C_grid[1]' must be a finite number"),
    "template-field": (lambda tmp, model: ["zeroshot", "model.templates=['a photo of a {place}']"],
                       "uses unknown field {place}; the allowed fields are {name}, {definition}"),
    "validation-fraction": (lambda tmp, model: ["features", f"encoder.model={model}", "data.validation_fraction=1.5"],
                            "data.validation_fraction must be a fraction in (0, 1); got 1.5"),
    "limit-zero": (lambda tmp, model: ["features", f"encoder.model={model}", "data.limit=0"],
                   "data.limit must be at least 1"),
    "run-template": (lambda tmp, model: ["run", f"features.encoder.model={model}",
                                         "clip.model.templates=['a photo of a {place}']"],
                     "uses unknown field {place}"),
    "run-lr-nan": (lambda tmp, model: ["run", f"features.encoder.model={model}", "finetune.training.learning_rate=nan"],
                   "'training.learning_rate' must be a finite number"),
    "run-scheduler": (lambda tmp, model: ["run", "finetune.training.lr_scheduler=cosin"], "did you mean 'cosine'?"),
    "blank-label": (lambda tmp, model: ["features", f"encoder.model={model}", *data_files(tmp, "blank_label.csv")],
                    "blank_label.csv' line 3 has no label (column 'label' is blank)"),
    "empty-csv": (lambda tmp, model: ["features", f"encoder.model={model}", *data_files(tmp, "empty.csv")],
                  "empty.csv' is empty"),
    "latin1-csv": (lambda tmp, model: ["features", f"encoder.model={model}", *data_files(tmp, "latin1.csv")],
                   "latin1.csv' is not UTF-8 (line 3 holds byte 0xe9"),
    "broken-jsonl": (lambda tmp, model: ["features", f"encoder.model={model}", *data_files(tmp, "broken.jsonl")],
                     "broken.jsonl' line 2 is not valid JSON"),
    "bad-yaml": (lambda tmp, model: ["features", "--config", write(tmp / "c.yaml", "encoder:\n  pooling: [cls\n")],
                 "c.yaml is not valid YAML at line 3, column 1"),
    "output-dir-under-a-file": (lambda tmp, model: ["features", f"encoder.model={model}", "data.limit=20",
                                                    "--output-dir", write(tmp / "logs" / "a-file", "x") + "/sub"],
                                "(Not a directory): choose another --output-dir"),
}


def write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


@pytest.mark.slow
@pytest.mark.parametrize("case", list(UP_FRONT))
def test_bad_input_is_refused_up_front_with_one_line(capsys, tmp_path, tiny_distilbert, case):
    build, message = UP_FRONT[case]
    logs = tmp_path / "logs"
    command, *rest = build(tmp_path, tiny_distilbert)
    code, _, err = cli(capsys, command, "--output-dir", logs, *rest)
    assert message in one_line_error(code, err)
    assert run_dirs(logs) == []  # nothing started, nothing to mistake for a result


def test_scheduler_choices_are_the_ones_transformers_accepts():
    from transformers import SchedulerType

    from transferlab.training.config import TrainingConfig

    choices = get_args(get_type_hints(TrainingConfig)["lr_scheduler"])
    assert set(choices) == {s.value for s in SchedulerType}


@pytest.mark.slow
def test_an_unreachable_hub_fails_in_seconds(capsys, tmp_path, monkeypatch):
    """No minute of retries: one quick probe, then the libraries' offline mode (cache only) for the call."""
    import datasets.config
    import huggingface_hub.constants

    from transferlab.data import hub

    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)

    def no_network(*args, **kwargs):
        raise OSError(errno.ENETUNREACH, "Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", no_network)
    hub.hub_reachable.cache_clear()
    try:
        for extra, message in ((["encoder.model=distilbert-base-uncased"], "the Hub cannot be reached"),
                               (["data.source=hub", "data.name=imdb"], "cannot be loaded from the Hugging Face Hub")):
            start = time.perf_counter()
            code, _, err = cli(capsys, "features", "--output-dir", tmp_path, *extra)
            assert time.perf_counter() - start < 5
            assert message in one_line_error(code, err)
        from transferlab.data.images import load_hub
        from transferlab.errors import TransferlabError

        start = time.perf_counter()
        with pytest.raises(TransferlabError, match="cannot load Hub data set 'zh-plus/tiny-imagenet'"):
            load_hub("zh-plus/tiny-imagenet", None, "train", "valid", "image", "label")
        assert time.perf_counter() - start < 5
    finally:
        hub.hub_reachable.cache_clear()
    assert huggingface_hub.constants.HF_HUB_OFFLINE is False  # the offline mode was for the call only
    assert run_dirs(tmp_path) == []


# --- images: empty classes and truncated files ----------------------------------------------------------------

@pytest.fixture
def image_tree(tmp_path, tree) -> Path:
    copy = tmp_path / "tiny"
    shutil.copytree(tree, copy)
    return copy


def test_an_empty_class_folder_is_refused(image_tree, tmp_path):
    from clip_fixtures import WNIDS, image

    from transferlab.data.images import load_folder
    from transferlab.errors import TransferlabError

    (image_tree / "train" / "n99999999" / "images").mkdir(parents=True)  # listed, but no image in it
    (image_tree / "wnids.txt").write_text("\n".join(WNIDS + ["n99999999"]) + "\n")
    with pytest.raises(TransferlabError, match=r"1 class\(es\) under .* have no readable training images "
                                               r"\(n99999999\): add images, or remove the empty class folder"):
        load_folder(image_tree, val_per_class=2)
    folder = tmp_path / "imagefolder"  # the plain layout: <class>/<images>
    for c, name in enumerate(["cat", "dog"]):
        (folder / name).mkdir(parents=True)
        for k in range(4):
            image(folder / name / f"{k}.jpg", c)
    (folder / "empty").mkdir()
    with pytest.raises(TransferlabError, match=r"have no readable training images \(empty\)"):
        load_folder(folder, val_per_class=1)


def test_a_truncated_jpeg_is_found_up_front(image_tree):
    from transferlab.data.images import load_folder
    from transferlab.errors import TransferlabError

    victim = sorted((image_tree / "train" / "n02124075" / "images").iterdir())[1]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])  # the header survives, the data not
    data = load_folder(image_tree, val_per_class=2, on_corrupt="skip")
    assert data.skipped == {"train": 1, "test": 0} and len(data.train) + len(data.validation) == 17
    with pytest.raises(TransferlabError, match=f"1 unreadable image.*{victim.name}.*data.on_corrupt=skip"):
        load_folder(image_tree, val_per_class=2, on_corrupt="fail")


# --- the feature cache is checked, not trusted -----------------------------------------------------------------

def features_args(logs: Path, model: Path, *extra: str) -> list[str]:
    return ["features", "--output-dir", str(logs), f"encoder.model={model}", "encoder.max_length=32", "data.limit=40",
            "classifier.C_grid=[1.0]", *extra]


def accuracies(run_dir: Path) -> dict:
    metrics = read_json(run_dir / "metrics.json")
    return {split: metrics["methods"]["features"][split]["accuracy"] for split in ("validation", "test")}


def cache_file(logs: Path, split: str) -> Path:
    (path,) = [p.with_suffix(".npy") for p in (logs / "cache" / "features").glob("*.json")
               if read_json(p)["key"]["split"] == split]
    return path


@pytest.mark.slow
def test_a_damaged_or_swapped_cache_file_is_recomputed(capsys, tmp_path, tiny_distilbert):
    logs = tmp_path / "logs"
    code, out, err = cli(capsys, *features_args(logs, tiny_distilbert))
    assert code == 0, err
    cold = accuracies(Path(out.strip().splitlines()[-1]))
    test_file, validation_file = cache_file(logs, "test"), cache_file(logs, "validation")
    test_vectors = np.load(test_file)
    shutil.copyfile(validation_file, test_file)  # same shape, other split's vectors
    train_file = cache_file(logs, "train")
    train_file.write_bytes(train_file.read_bytes()[:200])  # cut short
    code, out, err = cli(capsys, *features_args(logs, tiny_distilbert))
    assert code == 0 and "Traceback" not in err, err
    assert "train: 40 texts encoded" in out and "test: 40 texts encoded" in out
    assert "validation: 40 texts from cache" in out
    assert accuracies(Path(out.strip().splitlines()[-1])) == cold
    np.testing.assert_array_equal(np.load(test_file), test_vectors)  # overwritten with the right vectors
    code, out, _ = cli(capsys, *features_args(logs, tiny_distilbert))
    assert code == 0 and out.count("from cache") == 3  # and trusted again once whole


def test_a_cached_array_of_another_length_is_recomputed(tmp_path):
    from transferlab.models.feature_cache import cached

    key = {"split": "train", "data": "abc"}
    cached(tmp_path, key, lambda: np.ones((5, 3), np.float32))
    vectors, hit = cached(tmp_path, key, lambda: np.zeros((4, 3), np.float32), rows=4)
    assert not hit and vectors.shape == (4, 3)
    assert cached(tmp_path, key, lambda: pytest.fail("recomputed"), rows=4)[1]


# --- full disks: "failed" with the reason, no temporary files, one line ---------------------------------------

def enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.slow
def test_full_disk_while_caching_features(capsys, tmp_path, tiny_distilbert, monkeypatch):
    monkeypatch.setattr(np, "save", enospc)
    logs = tmp_path / "logs"
    code, _, err = cli(capsys, *features_args(logs, tiny_distilbert))
    assert "disk full while writing" in one_line_error(code, err) and "free space or choose another --output-dir" in err
    assert "cache/features" in err  # names the file
    (run,) = run_dirs(logs)
    status = read_json(run / "status.json")
    assert status["status"] == "failed" and status["error"].startswith("TransferlabError: disk full while writing")
    assert temporary_files(logs) == [] and not (run / "metrics.json").exists()


@pytest.mark.slow
def test_full_disk_while_writing_the_metrics(capsys, tmp_path, tiny_distilbert, monkeypatch):
    """write_json's temporary file gets part of its content, then the disk is full: it is removed again."""
    from transferlab.tracking import rundir

    original = os.fdopen

    class FullFile:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, data):
            self.handle.write(data[:20])
            raise OSError(errno.ENOSPC, "No space left on device")

    def full_for_metrics(fd, *args, **kwargs):
        handle = original(fd, *args, **kwargs)
        return FullFile(handle) if ".metrics.json." in os.readlink(f"/proc/self/fd/{fd}") else handle

    monkeypatch.setattr(rundir.os, "fdopen", full_for_metrics)
    logs = tmp_path / "logs"
    code, _, err = cli(capsys, *features_args(logs, tiny_distilbert, "cache=false"))
    assert "disk full while writing" in one_line_error(code, err) and "metrics.json" in err
    (run,) = run_dirs(logs)
    status = read_json(run / "status.json")
    assert status["status"] == "failed" and status["error"].startswith("TransferlabError: disk full while writing")
    assert temporary_files(logs) == [] and not (run / "metrics.json").exists()


def torch_save_on_a_full_disk(monkeypatch):
    """torch.save on a full disk says only "unexpected pos ..." (measured on a real full tmpfs)."""
    import shutil as shutil_module

    import torch

    def short_write(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 9472 vs 9364")

    monkeypatch.setattr(torch, "save", short_write)
    monkeypatch.setattr(shutil_module, "disk_usage", lambda path: SimpleNamespace(total=10**9, used=10**9, free=0))


FULL_DISK_WRITERS = {  # id: (make the disk full for it, what status.json's error holds)
    "save_pretrained": (lambda mp: mp.setattr(__import__("transformers").PreTrainedModel, "save_pretrained", enospc),
                        "disk full while writing into"),
    "torch.save": (torch_save_on_a_full_disk, "0 bytes left; RuntimeError: [enforce fail"),
}


@pytest.mark.slow
@pytest.mark.parametrize("writer", list(FULL_DISK_WRITERS))
def test_full_disk_while_finetuning(capsys, tmp_path, tiny_text_models, monkeypatch, writer):
    make_full, reason = FULL_DISK_WRITERS[writer]
    make_full(monkeypatch)
    logs = tmp_path / "logs"
    code, _, err = cli(capsys, "finetune", "--output-dir", logs, *finetune_overrides(
        tiny_text_models["distilbert"], **{"data.limit": 16, "training.max_steps": 2, "training.eval_steps": 2,
                                           "tracking.tensorboard": False}))
    assert "disk full while writing" in one_line_error(code, err)
    (run,) = run_dirs(logs)
    status = read_json(run / "status.json")
    assert status["status"] == "failed" and "disk full while writing" in status["error"] and reason in status["error"]
    assert temporary_files(logs) == []


@pytest.mark.slow
def test_full_disk_while_creating_the_run_directory_leaves_nothing(capsys, tmp_path, tiny_distilbert, monkeypatch):
    from transferlab.tracking import rundir

    original = rundir.atomic_write

    def full_for_config(path, data):
        if Path(path).name == "config.yaml":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return original(path, data)

    monkeypatch.setattr(rundir, "atomic_write", full_for_config)
    logs = tmp_path / "logs"
    code, _, err = cli(capsys, *features_args(logs, tiny_distilbert, "cache=false"))
    assert "(No space left on device): free space or choose another --output-dir" in one_line_error(code, err)
    assert list((logs / "features").iterdir()) == []  # the half-made run directory is removed again


def test_status_keeps_the_reason_when_even_it_cannot_be_written_normally(tmp_path, monkeypatch):
    from transferlab.experiments.lifecycle import record_failure
    from transferlab.tracking import rundir

    run = rundir.Run.create(tmp_path, "features", "r", {})
    monkeypatch.setattr(rundir, "write_json", enospc)
    record_failure(run, OSError(errno.ENOSPC, "No space left on device"), 1.0)
    status = json.loads((run.path / "status.json").read_text())
    assert status == {"status": "failed", "error": "OSError: [Errno 28] No space left on device"}


# --- refused resumes leave the run untouched -----------------------------------------------------------------

@pytest.mark.parametrize("override, key", [("training.learning_rate=0.01", "training.learning_rate"),
                                           ("data.limit=64", "data.limit")])
@pytest.mark.slow
def test_finetune_resume_with_a_changed_setting_is_refused(capsys, tmp_path, tiny_text_models, finetuned_run,
                                                            override, key):
    crashed = tmp_path / "finetune" / "crashed"
    shutil.copytree(finetuned_run, crashed, ignore=shutil.ignore_patterns("tensorboard"))
    (crashed / "metrics.json").unlink()
    before = snapshot(tmp_path)
    code, _, err = cli(capsys, "finetune", "--output-dir", tmp_path,
                       *finetune_overrides(tiny_text_models["distilbert"]), override, "--resume", crashed)
    line = one_line_error(code, err)
    assert key in line and "Resume with the recorded settings" in line
    assert snapshot(tmp_path) == before


@pytest.fixture(scope="module")
def features_stage(tmp_path_factory, tiny_text_models) -> Path:
    """A `transferlab run` directory whose features stage completed."""
    out = tmp_path_factory.mktemp("pipeline")
    assert main(["run", "--output-dir", str(out), "--stages", "features",
                 f"features.encoder.model={tiny_text_models['distilbert']}", "features.data.limit=20",
                 "features.classifier.C_grid=[1.0]", "features.cache=false"]) == 0
    (pipe,) = (out / "run").iterdir()
    return pipe


@pytest.mark.slow
def test_pipeline_resume_touching_a_completed_stage_is_refused(capsys, features_stage):
    before = snapshot(features_stage)
    code, _, err = cli(capsys, "run", "--resume", features_stage, "features.data.limit=30")
    assert "change the config of completed stage(s) features" in one_line_error(code, err)
    assert snapshot(features_stage) == before


# --- predict and report -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def features_run(tmp_path_factory, tiny_text_models) -> Path:
    logs = tmp_path_factory.mktemp("features")
    assert main(features_args(logs, tiny_text_models["distilbert"], "cache=false", "run_name=done")) == 0
    return logs / "features" / "done"


def damaged(run: Path, tmp_path: Path, change) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("checkpoints", "tensorboard"))
    change(copy)
    return copy


PREDICT = {  # id: (argv after `predict RUN`, how to damage a copy of the run (or None), message)
    "empty-text": (["--text", "fine", "--text", ""], None, "--text number 2 is empty"),
    "blank-text": (["--text", "   "], None, "--text number 1 is empty"),
    "batch-size-0": (["--text", "fine", "--batch-size", "0"], None, "--batch-size must be at least 1; got 0"),
    "latin1-file": (["--file", "{tmp}/latin1.txt"], None, "latin1.txt' is not UTF-8 (line 1 holds byte 0xe9"),
    "classifier-deleted": (["--text", "fine"], lambda run: (run / "classifier.skops").unlink(), "has no saved model"),
    "classifier-truncated": (["--text", "fine"], lambda run: (run / "classifier.skops").write_bytes(b"PK\x03\x04"),
                             "cannot load the model saved in"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(PREDICT))
def test_predict_refuses_bad_input(capsys, tmp_path, features_run, case):
    extra, change, message = PREDICT[case]
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 society is fine\n".encode("latin-1"))
    run = damaged(features_run, tmp_path, change) if change else features_run
    code, out, err = cli(capsys, "predict", run, *[a.format(tmp=tmp_path) for a in extra])
    assert message in one_line_error(code, err) and out == ""


@pytest.mark.slow
def test_predict_a_finetune_run_whose_weights_were_deleted(capsys, tmp_path, finetuned_run):
    run = damaged(finetuned_run, tmp_path, lambda run: (run / "model" / "model.safetensors").unlink())
    code, out, err = cli(capsys, "predict", run, "--text", "fine")
    assert "the run directory is damaged" in one_line_error(code, err) and out == ""


@pytest.mark.parametrize("content, message", [
    ('{"experiment": "features", "meth', "is not valid JSON"),
    ("[1, 2]", "must hold a JSON object, not list"),
    ('{"experiment": "features"}', "lacks methods, model, n_classes, n_examples, primary"),
])
@pytest.mark.slow
def test_report_of_a_garbled_metrics_file(capsys, tmp_path, features_run, content, message):
    run = damaged(features_run, tmp_path, lambda run: (run / "metrics.json").write_text(content))
    code, _, err = cli(capsys, "report", run, "--output", tmp_path / "report")
    assert message in one_line_error(code, err)


# --- real processes, real signals --------------------------------------------------------------------------------

def start(*argv: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(SRC), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return subprocess.Popen([sys.executable, "-m", "transferlab.cli", *map(str, argv)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def terminate_when(proc: subprocess.Popen, pattern: Path, timeout: float = 120) -> Path:
    """SIGTERM as soon as a file matching ``pattern`` (a glob below its parent) exists; that file."""
    found = wait_for(proc, pattern, timeout)
    proc.send_signal(signal.SIGTERM)
    return found


@pytest.mark.slow
def test_sigterm_right_after_the_run_directory_is_created_is_recorded(capsys, tmp_path, tiny_distilbert,
                                                                      monkeypatch):
    """The narrowest window: status.json says "running" and the signal comes before the run's body starts."""
    from transferlab.experiments import lifecycle

    original = lifecycle.create_or_reopen

    def create_then_sigterm(*args, **kwargs):
        opened = original(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)
        return opened

    monkeypatch.setattr(lifecycle, "create_or_reopen", create_then_sigterm)
    code, _, err = cli(capsys, *features_args(tmp_path, tiny_distilbert, "cache=false"))
    assert code == 130 and "Traceback" not in err
    (run,) = run_dirs(tmp_path)
    status = read_json(run / "status.json")
    assert status["status"] == "failed" and "SIGTERM" in status["error"]


@pytest.mark.slow
def test_sigterm_while_the_pipeline_writes_its_report_is_recorded(capsys, tmp_path, tiny_distilbert, monkeypatch):
    """After the last stage, outside any stage's lifecycle: the pipeline's own status records it."""
    import transferlab.reporting.pipeline as pipeline

    def report_then_sigterm(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)  # the handler raises here
        pytest.fail("SIGTERM did not interrupt")

    monkeypatch.setattr(pipeline, "write_pipeline_report", report_then_sigterm)
    code, _, err = cli(capsys, "run", "--output-dir", tmp_path, "--stages", "features",
                       f"features.encoder.model={tiny_distilbert}", "features.data.limit=20",
                       "features.classifier.C_grid=[1.0]", "features.cache=false")
    assert code == 130 and "Traceback" not in err
    (pipe,) = (tmp_path / "run").iterdir()
    status = read_json(pipe / "status.json")
    assert status["status"] == "failed" and "SIGTERM" in status["error"]


# The whole Rotten Tomatoes set with small batches: several seconds of encoding for the signal to land in.
SLOW_FEATURES = ["encoder.batch_size=8", "encoder.max_length=32", "classifier.C_grid=[1.0]", "cache=false"]


@pytest.mark.slow
def test_sigterm_while_encoding_leaves_a_failed_status(tmp_path, tiny_distilbert):
    proc = start("features", "--output-dir", tmp_path, f"encoder.model={tiny_distilbert}", *SLOW_FEATURES)
    status_file = terminate_when(proc, tmp_path / "features" / "*" / "status.json")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err[-2000:]
    status = read_json(status_file)
    assert status["status"] == "failed" and "SIGTERM" in status["error"]
    assert not (status_file.parent / "metrics.json").exists()


@pytest.mark.slow
def test_sigterm_in_the_pipeline_features_stage_is_recorded_with_a_report(tmp_path, tiny_distilbert):
    proc = start("run", "--output-dir", tmp_path, "--stages", "features,finetune",
                 f"features.encoder.model={tiny_distilbert}", *["features." + o for o in SLOW_FEATURES])
    stage_status = terminate_when(proc, tmp_path / "run" / "*" / "features" / "*" / "status.json")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err[-2000:]
    (pipe,) = (tmp_path / "run").iterdir()
    state = read_json(pipe / "pipeline.json")
    features, finetune = state["stages"]
    assert features["status"] == "failed" and "SIGTERM" in features["error"]
    assert (pipe / features["run_dir"]) == stage_status.parent and finetune["status"] == "pending"
    assert read_json(pipe / "status.json")["status"] == "failed"
    assert "SIGTERM" in read_json(stage_status)["error"]
    report = (pipe / "report.md").read_text()
    assert "features" in report and "failed" in report and f"transferlab run --resume {pipe}" in report


# --- status: a dead run does not look alive --------------------------------------------------------------------

@pytest.mark.slow
def test_a_running_run_records_its_process_and_a_heartbeat(tmp_path):
    from transferlab.tracking.liveness import Heartbeat, describe_status, is_dead
    from transferlab.tracking.rundir import Run

    run = Run.create(tmp_path, "features", "r", {})
    first = read_json(run.path / "status.json")
    assert first["pid"] == os.getpid() and first["host"] == socket.gethostname() and first["heartbeat"]
    with Heartbeat(run, interval=0.05):
        time.sleep(0.3)
    assert read_json(run.path / "status.json")["heartbeat"] > first["heartbeat"]
    assert not is_dead(run.status())
    assert describe_status(run.path).startswith(f"running (heartbeat 0 s ago, pid {os.getpid()} on ")


def test_a_run_on_another_host_is_judged_by_its_heartbeat(tmp_path):
    from datetime import datetime, timedelta, timezone

    from transferlab.tracking.liveness import STALE_AFTER_S, describe_status, is_dead

    now = datetime.now(timezone.utc)
    fresh = {"status": "running", "pid": 1, "host": "elsewhere", "heartbeat": now.isoformat()}
    stale = dict(fresh, heartbeat=(now - timedelta(seconds=STALE_AFTER_S + 5)).isoformat())
    assert not is_dead(fresh) and is_dead(stale)
    assert "running (heartbeat 0 s ago, pid 1 on elsewhere)" == describe_status(fresh)
    assert describe_status(stale).startswith("running (no heartbeat since ")
    old = {"status": "running", "updated": stale["heartbeat"]}  # a run from before pids were recorded
    assert is_dead(old) and not is_dead({"status": "completed"})


@pytest.mark.slow
def test_a_sigkilled_run_reads_as_dead_in_report_and_predict(capsys, tmp_path, tiny_distilbert):
    proc = start("features", "--output-dir", tmp_path, f"encoder.model={tiny_distilbert}", *SLOW_FEATURES)
    status_file = wait_for(proc, tmp_path / "features" / "*" / "status.json")
    proc.kill()  # SIGKILL: nothing is recorded
    proc.communicate(timeout=60)
    run = status_file.parent
    status = read_json(status_file)
    assert status["status"] == "running" and status["pid"] == proc.pid
    since = datetime.fromisoformat(status["heartbeat"]).astimezone().strftime("%H:%M")
    said = f"running (no heartbeat since {since}; process gone)"
    code, _, err = cli(capsys, "predict", run, "--text", "fine")
    assert said in one_line_error(code, err) and "rerun or resume it" in err
    code, _, err = cli(capsys, "report", run, "--output", tmp_path / "report")
    assert code == 0, err
    assert said in (tmp_path / "report" / "report.md").read_text()


def wait_for(proc: subprocess.Popen, pattern: Path, timeout: float = 120) -> Path:
    """The first file matching ``pattern`` once it exists (the process still running)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sorted(Path(pattern.anchor).glob(str(pattern.relative_to(pattern.anchor))))
        if found:
            return found[0]
        if proc.poll() is not None:
            pytest.fail(f"ended before {pattern} appeared: {proc.communicate()[1][-2000:]}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail(f"no {pattern} within {timeout}s")


@pytest.mark.slow
def test_a_second_resume_of_one_pipeline_is_refused_while_the_first_runs(capsys, tmp_path, tiny_distilbert):
    stage = [f"features.encoder.model={tiny_distilbert}", "features.data.limit=100", "features.encoder.max_length=32",
             "features.classifier.C_grid=[1.0]", "features.cache=false"]
    first = start("run", "--output-dir", tmp_path, "--stages", "features", *stage)
    wait_for(first, tmp_path / "run" / "*" / "features" / "*" / "status.json")
    (pipe,) = (tmp_path / "run").iterdir()
    while "run_dir" not in read_json(pipe / "pipeline.json")["stages"][0]:  # recorded the moment it exists
        time.sleep(0.01)
    first.kill()
    first.communicate(timeout=60)
    assert read_json(pipe / "pipeline.json")["stages"][0]["status"] == "running"  # as the kill left it
    a = start("run", "--resume", pipe)
    wait_for(a, pipe / "features" / "*.failed" / "status.json")  # a works on it (set the killed attempt aside)
    a.send_signal(signal.SIGSTOP)  # held there, however fast this machine is, while b tries
    try:
        b = start("run", "--resume", pipe)
        _, err = b.communicate(timeout=120)
    finally:
        a.send_signal(signal.SIGCONT)
    assert b.returncode == 2 and err.strip().splitlines() == [
        f"error: {pipe} is in use by another `transferlab run` (pid {a.pid} on {socket.gethostname()}): wait for "
        f"it to finish, then resume"]
    out, err = a.communicate(timeout=300)
    assert a.returncode == 0, err[-2000:]
    assert f"note: {pipe} was running (no heartbeat since" in out and "marked failed (killed)" in out
    state = read_json(pipe / "pipeline.json")
    assert [s["status"] for s in state["stages"]] == ["completed"]
    (aside,) = (pipe / "features").glob("*.failed")  # the killed attempt, kept and marked
    killed = read_json(aside / "status.json")
    assert killed["status"] == "failed" and killed["error"].startswith("killed: no heartbeat since")
    assert sorted(p.name for p in (pipe / "features").iterdir()) == sorted([Path(state["stages"][0]["run_dir"]).name,
                                                                            aside.name])  # no orphan


@pytest.mark.slow
def test_a_resume_from_another_directory_reads_the_same_data(capsys, tmp_path, tiny_distilbert, monkeypatch):
    import transferlab.experiments.features.runner as features

    rows = [{"text": f"review number {i} is {'good' if i % 2 else 'bad'}", "label": "pos" if i % 2 else "neg"}
            for i in range(24)]
    for folder, n in (("a", 24), ("b", 12)):  # same relative names, other content
        (tmp_path / folder).mkdir()
        for split in ("train", "validation", "test"):
            make_csv(tmp_path / folder / f"{split}.csv", rows[:n])
    data = ["features.data.source=files", *[f"features.data.{s}_file={s}.csv" for s in ("train", "validation", "test")]]
    args = ["run", "--output-dir", tmp_path / "logs", "--stages", "features", f"features.encoder.model={tiny_distilbert}",
            "features.classifier.C_grid=[1.0]", "features.cache=false", *data]
    real = features.embed_splits
    monkeypatch.setattr(features, "embed_splits", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    monkeypatch.chdir(tmp_path / "a")
    assert cli(capsys, *args)[0] == 130
    (pipe,) = (tmp_path / "logs" / "run").iterdir()
    monkeypatch.setattr(features, "embed_splits", real)
    monkeypatch.chdir(tmp_path / "b")
    code, out, err = cli(capsys, "run", "--resume", pipe)
    assert code == 0, err
    state = read_json(pipe / "pipeline.json")
    assert state["paths"]["features"]["data.train_file"] == {"given": "train.csv",
                                                             "resolved": str(tmp_path / "a" / "train.csv")}
    metrics = read_json(pipe / state["stages"][0]["run_dir"] / "metrics.json")
    assert metrics["n_examples"] == {"train": 24, "validation": 24, "test": 24}  # a's files, not b's


# --- bad values ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["features", "--seeds", "-1"], "seed -1 is outside 0..4294967295"),
    (["run", "--seeds", "0,4294967296"], "seed 4294967296 is outside"),
])
def test_seeds_outside_the_range_numpy_takes_are_refused(capsys, tmp_path, argv, message):
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--output-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and message in err and "Traceback" not in err
    assert run_dirs(tmp_path) == []


@pytest.mark.parametrize("argv, message", [
    (["features", "seed=-1"], "config key 'seed' must be from 0 to 4294967295"),
    (["features", "data.seed=-3"], "config key 'data.seed' must be from 0"),
    (["run", "--stages", ","], "unknown stage(s) (an empty name)"),
    (["run", "--stages", "features,"], "unknown stage(s) (an empty name)"),
    (["run", "--stages", "features,features"], "names features more than once"),
])
def test_bad_seeds_and_stages_are_refused_with_one_line(capsys, tmp_path, argv, message):
    code, _, err = cli(capsys, *argv, "--output-dir", tmp_path)
    assert message in one_line_error(code, err)
    assert run_dirs(tmp_path) == []


def test_more_threads_than_cores_are_warned_about(capsys, tmp_path):
    cores = len(os.sched_getaffinity(0))
    code, _, err = cli(capsys, "features", "--threads", cores + 1, "--print-config")
    assert code == 0 and f"warning: --threads {cores + 1} is more than the {cores} core(s) available" in err
    code, _, err = cli(capsys, "features", "--threads", cores, "--print-config")
    assert code == 0 and "warning" not in err


@pytest.mark.slow
def test_a_config_only_model_folder_is_refused_before_a_finetune_run_exists(capsys, tmp_path, tiny_distilbert):
    model = tmp_path / "model"
    shutil.copytree(tiny_distilbert, model, ignore=shutil.ignore_patterns("*.safetensors"))
    code, _, err = cli(capsys, "finetune", "--output-dir", tmp_path / "logs", f"model={model}", "data.limit=8")
    assert "has no weights" in one_line_error(code, err)
    assert run_dirs(tmp_path / "logs") == []


# --- silent surprises in the data ------------------------------------------------------------------------------------

def test_macro_scores_average_over_the_classes_present_and_name_the_missing():
    from transferlab.evaluation.metrics import classification_metrics

    m = classification_metrics([0, 0, 1, 1], [0, 1, 1, 1], ["a", "b", "c"])
    assert m["missing_classes"] == ["c"] and m["macro_over"] == "the 2 of 3 classes present"
    assert m["recall"] == pytest.approx((0.5 + 1.0) / 2) and m["f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    assert m["per_class"]["c"]["support"] == 0  # kept
    assert "missing_classes" not in classification_metrics([0, 1, 2], [0, 1, 2], ["a", "b", "c"])


@pytest.mark.slow
def test_missing_classes_and_train_copies_in_test_are_noted(capsys, tmp_path, tiny_distilbert):
    words = ("bad", "fine", "great")
    train = [{"text": f"{word} review number {i}", "label": word} for i in range(8) for word in words]
    validation = [{"text": f"{word} new text {i}", "label": word} for i in range(4) for word in words]
    copies = [r for r in train if r["label"] != "fine"][:5]  # test: no 'fine' at all, and 5 training rows
    test = copies + [{"text": f"{w} unseen {i}", "label": w} for i in range(4) for w in ("bad", "great")]
    for name, rows in (("train", train), ("validation", validation), ("test", test)):
        make_csv(tmp_path / f"{name}.csv", rows)
    code, out, err = cli(capsys, "features", "--output-dir", tmp_path / "logs", f"encoder.model={tiny_distilbert}",
                         "data.source=files", *[f"data.{s}_file={tmp_path / s}.csv" for s in ("train", "validation", "test")],
                         "classifier.C_grid=[1.0]", "cache=false")
    assert code == 0, err
    assert "warning: 5 of 13 test texts are exact copies of training texts" in out
    assert "warning: the test split has no example of 1 class(es) present in train (fine)" in out
    metrics = read_json(Path(out.strip().splitlines()[-1]) / "metrics.json")
    assert any(n.startswith("5 of 13 test texts are exact copies") for n in metrics["notes"])
    assert any("no example of 1 class(es) present in train (fine)" in n for n in metrics["notes"])
    split = metrics["methods"]["features"]["test"]
    assert split["missing_classes"] == ["fine"] and split["macro_over"] == "the 2 of 3 classes present"
    per_class = split["per_class"]
    assert per_class["fine"]["support"] == 0
    assert split["recall"] == pytest.approx((per_class["bad"]["recall"] + per_class["great"]["recall"]) / 2)
    assert "missing_classes" not in metrics["methods"]["features"]["validation"]


def test_training_images_given_as_test_images_and_missing_classes_are_warned(capsys, image_tree):
    from clip_fixtures import WNIDS

    from transferlab.data.checks import image_split_notes
    from transferlab.data.images import load_folder

    val = image_tree / "val"
    lines = (val / "val_annotations.txt").read_text().splitlines()
    kept = [line for line in lines if line.split("\t")[1] != WNIDS[2]]  # the third class: no test image
    first = kept[0].split("\t")[0]
    (val / "images" / first).unlink()  # the first test image is a training image under another name
    (val / "images" / first).symlink_to(load_folder(image_tree, val_per_class=2).train["image"][0])
    (val / "val_annotations.txt").write_text("\n".join(kept) + "\n")
    notes = image_split_notes(load_folder(image_tree, val_per_class=2))
    out = capsys.readouterr().out
    assert notes[0].startswith(f"1 of {len(kept)} test images are exact copies of training images")
    assert f"the test split has no example of 1 class(es) present in train (" in notes[1]
    assert all(f"warning: {n}" in out for n in notes) and len(notes) == 2
