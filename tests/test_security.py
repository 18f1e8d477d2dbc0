"""Received run directories are data, not code; names stay inside the output folder; caches are written
without following links and read only where nobody else can write. Real files, real processes, real payloads.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from transferlab.cli import main

SRC = Path(__file__).resolve().parents[1] / "src"


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code: int, err: str) -> str:
    assert code == 2 and "Traceback" not in err, err[-2000:]
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and err.rstrip("\n").splitlines()[-1] == errors[0], err[-2000:]
    return errors[0]


class Payload:
    """Unpickling this creates ``marker``: what any code in a crafted pickle could do instead."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


# --- predict never runs code from a run directory ----------------------------------------------------------------

@pytest.fixture(scope="module")
def features_run(tmp_path_factory, tiny_text_models) -> Path:
    logs = tmp_path_factory.mktemp("features")
    assert main(["features", "--output-dir", str(logs), f"encoder.model={tiny_text_models['distilbert']}",
                 "encoder.max_length=32", "data.limit=40", "classifier.C_grid=[1.0]", "cache=false",
                 "run_name=done"]) == 0
    return logs / "features" / "done"


def received(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "received"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("checkpoints", "tensorboard"))
    return copy


@pytest.mark.slow
def test_a_crafted_classifier_pickle_is_never_loaded_by_default(capsys, tmp_path, features_run):
    run, marker = received(features_run, tmp_path), tmp_path / "pwned"
    (run / "classifier.skops").unlink()  # an old-style run: a pickle only
    (run / "classifier.joblib").write_bytes(pickle.dumps(Payload(marker)))
    code, out, err = cli(capsys, "predict", run, "--text", "a fine film")
    line = one_line_error(code, err)
    assert "is a pickle" in line and "--trust-pickle" in line and out == ""
    assert not marker.exists()  # the payload never ran
    code, _, err = cli(capsys, "predict", run, "--text", "a fine film", "--trust-pickle")
    assert "warning: loading the pickle" in err and marker.exists()  # asked for explicitly: it is a pickle


@pytest.mark.slow
def test_a_pickle_named_like_a_skops_file_is_not_unpickled(capsys, tmp_path, features_run):
    run, marker = received(features_run, tmp_path), tmp_path / "pwned"
    (run / "classifier.skops").write_bytes(pickle.dumps(Payload(marker)))
    code, out, err = cli(capsys, "predict", run, "--text", "a fine film")
    assert "cannot load the model saved in" in one_line_error(code, err) and "not a skops file" in err
    assert not marker.exists() and out == ""


@pytest.mark.slow
def test_a_skops_file_with_an_untrusted_type_is_refused(capsys, tmp_path, features_run):
    import skops.io as sio

    from transferlab.models.classifiers import load_classifier_file

    run = received(features_run, tmp_path)
    bundle = load_classifier_file(run / "classifier.skops")
    bundle["hook"] = os.system  # a function reference: skops would call nothing, but it is not ours to load
    sio.dump(bundle, run / "classifier.skops")
    code, out, err = cli(capsys, "predict", run, "--text", "a fine film")
    assert "holds types transferlab never saves (posix.system)" in one_line_error(code, err) and out == ""


@pytest.mark.slow
def test_the_saved_classifier_is_skops_and_predicts(capsys, features_run):
    import skops.io as sio

    assert not (features_run / "classifier.joblib").exists()
    assert sio.get_untrusted_types(file=features_run / "classifier.skops") == []  # only types skops trusts
    code, out, err = cli(capsys, "predict", features_run, "--text", "a fine film")
    assert code == 0 and out.split("\t")[0] in ("neg", "pos"), err


def test_a_pickled_model_bin_is_refused(capsys, tmp_path, finetuned_run):
    """The fine-tuned model loads from safetensors only: a pytorch_model.bin (a pickle) is not read."""
    run, marker = received(finetuned_run, tmp_path), tmp_path / "pwned"
    (run / "model" / "model.safetensors").unlink()
    (run / "model" / "pytorch_model.bin").write_bytes(pickle.dumps(Payload(marker)))
    code, out, err = cli(capsys, "predict", run, "--text", "a fine film")
    assert "holds pickled weights (pytorch_model.bin)" in one_line_error(code, err) and out == ""
    assert not marker.exists()


# --- names stay inside the output folder --------------------------------------------------------------------------

BAD_NAMES = {"parent": "../../../x", "absolute": "/tmp/transferlab-escape", "nested": "a/b", "newline": "a\nb",
             "dotdot": "..", "dot": ".", "long": "x" * 101, "backslash": "a\\b", "nul": "a\x00b"}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(BAD_NAMES))
def test_a_run_name_is_one_folder_inside_the_output_dir(capsys, tmp_path, case):
    from transferlab.config import parse_overrides

    name = BAD_NAMES[case]
    given = json.dumps(name)  # a double-quoted YAML string: escapes such as \n arrive as the character
    assert parse_overrides([f"run_name={given}"])["run_name"] == name
    logs = tmp_path / "work" / "logs"
    stop = "features.encoder.model=/no/such/model"  # were a name let through, the run would stop at once
    for argv in (["features", "--print-config", f"run_name={given}"], ["run", stop, f"run_name={given}"],
                 ["run", "--stages", "features", stop, f"features.run_name={given}"]):
        code, _, err = cli(capsys, argv[0], "--output-dir", logs, *argv[1:])
        assert "run_name" in one_line_error(code, err) and "give one folder name" in err
    assert not (tmp_path / "work").exists() and not Path("/tmp/transferlab-escape").exists()


def test_a_run_directory_that_resolves_outside_the_output_dir_is_refused(tmp_path):
    from transferlab.errors import TransferlabError
    from transferlab.tracking.rundir import Run

    logs, elsewhere = tmp_path / "logs", tmp_path / "elsewhere"
    logs.mkdir()
    elsewhere.mkdir()
    (logs / "features").symlink_to(elsewhere)  # a planted link under the output folder
    with pytest.raises(TransferlabError, match="outside the output folder"):
        Run.create(logs, "features", "ok", {})
    assert list(elsewhere.iterdir()) == []
    assert Run.create(tmp_path / "other", "features", "ok", {}).path == tmp_path / "other" / "features" / "ok"


# --- cache writes: exclusive temporary files, no links followed, no races -------------------------------------------

def test_a_symlink_planted_at_the_old_temporary_name_is_not_followed(tmp_path):
    from transferlab.models.feature_cache import cache_key, cached, entry_path

    cache, victim = tmp_path / "cache", tmp_path / "victim.txt"
    cache.mkdir()
    victim.write_text("precious")
    key = {"split": "train", "data": "abc"}
    stem = cache_key(**key)
    for name in (f"{stem}.tmp.npy", f"{stem}.tmp.json", f".{stem}.npy.tmp", f".{stem}.json.tmp"):
        (cache / name).symlink_to(victim)
    vectors, hit = cached(cache, key, lambda: np.arange(6, dtype=np.float32).reshape(2, 3))
    assert not hit and victim.read_text() == "precious"
    assert entry_path(cache, key).is_file() and not entry_path(cache, key).is_symlink()
    assert cached(cache, key, lambda: pytest.fail("recomputed"))[1]


WRITER = """
import sys
import numpy as np
from transferlab.models.feature_cache import save_atomically, entry_path
folder, seed = sys.argv[1], int(sys.argv[2])
key = {"split": "train", "data": "race"}
for i in range(200):
    save_atomically(entry_path(folder, key), key, np.full((50, 8), seed, np.float32))
print("ok")
"""


@pytest.mark.slow
def test_two_processes_writing_one_cache_key_do_not_collide(tmp_path):
    from transferlab.models.feature_cache import entry_path, load_checked

    env = dict(os.environ, PYTHONPATH=str(SRC))
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(seed)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for seed in (1, 2)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in results]
    assert all("FileNotFoundError" not in err for _, err in results)
    assert [p.name for p in tmp_path.iterdir() if ".tmp" in p.name] == []  # nothing left behind
    key = {"split": "train", "data": "race"}
    vectors = np.load(entry_path(tmp_path, key))
    assert set(np.unique(vectors)) <= {1.0, 2.0} and len(np.unique(vectors)) == 1  # one writer's whole array
    if load_checked(entry_path(tmp_path, key), key, 50) is None:  # the record may be the other writer's
        assert json.loads(entry_path(tmp_path, key).with_suffix(".json").read_text())["rows"] == 50


# --- cache trust: not read where others can write ------------------------------------------------------------------

@pytest.mark.parametrize("change", ["world-writable", "group-writable", "other-owner"])
def test_a_cache_folder_others_can_write_is_not_trusted(tmp_path, capsys, change):
    from transferlab.models import feature_cache

    cache, key = tmp_path / "cache", {"split": "train", "data": change}
    assert not feature_cache.cached(cache, key, lambda: np.ones((3, 2), np.float32))[1]
    assert feature_cache.cached(cache, key, lambda: pytest.fail("recomputed"))[1]  # private: trusted
    if change == "world-writable":
        cache.chmod(0o777)
    elif change == "group-writable":
        os.chown(cache, -1, 4242)  # a group this user does not have to itself
        cache.chmod(0o775)
    else:
        os.chown(cache, 4242, -1)
    vectors, hit = feature_cache.cached(cache, key, lambda: np.zeros((3, 2), np.float32))
    assert not hit and not vectors.any()  # computed afresh, the entry not read
    assert "warning: not using the cache" in capsys.readouterr().err


def test_a_sticky_shared_parent_does_not_spoil_a_private_cache(tmp_path):
    from transferlab.models.feature_cache import untrusted_because

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # as /tmp
    (shared / "mine").mkdir()
    assert untrusted_because(shared / "mine") is None
    shared.chmod(0o777)  # without the sticky bit anyone may swap the folder
    assert "is writable by others" in untrusted_because(shared / "mine")


@pytest.mark.slow
def test_tampered_rows_in_a_writable_cache_are_not_served(capsys, tmp_path, tiny_distilbert):
    """Rows permuted and the record rewritten to match: in a folder others can write, encoded again."""
    from transferlab.models.feature_cache import record_of

    logs = tmp_path / "logs"
    args = ["features", "--output-dir", logs, f"encoder.model={tiny_distilbert}", "encoder.max_length=32",
            "data.limit=40", "classifier.C_grid=[1.0]"]
    code, out, err = cli(capsys, *args)
    assert code == 0, err
    cold = json.loads((Path(out.strip().splitlines()[-1]) / "metrics.json").read_text())["methods"]["features"]
    cache = logs / "cache" / "features"
    for record_file in cache.glob("*.json"):
        record = json.loads(record_file.read_text())
        vectors = np.load(record_file.with_suffix(".npy"))
        tampered = vectors[np.random.default_rng(0).permutation(len(vectors))]
        np.save(record_file.with_suffix(".npy"), tampered)
        record_file.write_text(json.dumps(record_of(record["key"], tampered)))
    cache.chmod(0o777)
    code, out, err = cli(capsys, *args)
    assert code == 0 and "warning: not using the cache" in err and out.count("texts encoded") == 3, err
    warm = json.loads((Path(out.strip().splitlines()[-1]) / "metrics.json").read_text())["methods"]["features"]
    assert [warm[s]["accuracy"] for s in ("validation", "test")] == [cold[s]["accuracy"] for s in ("validation", "test")]


def test_a_link_planted_at_the_pipeline_lock_is_not_followed(capsys, tmp_path):
    pipe, victim = tmp_path / "run" / "p", tmp_path / "victim.txt"
    pipe.mkdir(parents=True)
    (pipe / "pipeline.json").write_text("{}")
    victim.write_text("precious")
    (pipe / "pipeline.lock").symlink_to(victim)
    code, _, err = cli(capsys, "run", "--resume", pipe)
    assert "cannot open the lock file" in one_line_error(code, err) and "remove it if it is a link" in err
    assert victim.read_text() == "precious"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["rng_state.pth", "optimizer.pt", "scheduler.pt"])
def test_a_crafted_pickle_in_a_received_checkpoint_does_not_run_on_resume(capsys, tmp_path, tiny_text_models,
                                                                         finetuned_run, name):
    """Resuming someone's run loads its checkpoint with torch.load(weights_only=True): a payload stays inert."""
    from helpers import finetune_overrides

    run, marker = tmp_path / "finetune" / "received", tmp_path / "pwned"
    shutil.copytree(finetuned_run, run, ignore=shutil.ignore_patterns("tensorboard"))
    (run / "metrics.json").unlink()
    for checkpoint in (run / "checkpoints").iterdir():
        (checkpoint / name).write_bytes(pickle.dumps(Payload(marker)))
    args = ["finetune", "--output-dir", str(tmp_path), *finetune_overrides(tiny_text_models["distilbert"]),
            "--resume", str(run)]
    if name == "rng_state.pth":  # transformers warns and goes on with fresh random states
        assert main(args) == 0
    else:
        with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
            main(args)
        assert json.loads((run / "status.json").read_text())["status"] == "failed"
    assert not marker.exists()


@pytest.mark.slow
def test_a_received_checkpoint_naming_a_best_checkpoint_elsewhere_is_refused(capsys, tmp_path, tiny_text_models,
                                                                            finetuned_run):
    """trainer_state.json names the best checkpoint by path: one outside the run is never loaded from."""
    from helpers import finetune_overrides

    run, elsewhere = tmp_path / "finetune" / "received", tmp_path / "elsewhere" / "checkpoint-999"
    shutil.copytree(finetuned_run, run, ignore=shutil.ignore_patterns("tensorboard"))
    shutil.copytree(finetuned_run / "checkpoints" / "checkpoint-40", elsewhere)  # loadable, but not this run's
    (run / "metrics.json").unlink()
    latest = run / "checkpoints" / "checkpoint-40" / "trainer_state.json"
    state = json.loads(latest.read_text())
    state["best_model_checkpoint"] = str(elsewhere)
    latest.write_text(json.dumps(state))
    code, _, err = cli(capsys, "finetune", "--output-dir", tmp_path, *finetune_overrides(tiny_text_models["distilbert"]),
                       "--resume", run)
    line = one_line_error(code, err)
    assert f"names its best checkpoint {elsewhere}, outside this run's" in line
    assert json.loads((run / "status.json").read_text())["status"] == "failed"


@pytest.mark.parametrize("run_dir, message", [("../victim", "outside the pipeline directory"),
                                              (None, "does not list known stages")])
def test_an_edited_pipeline_state_cannot_point_a_resume_outside(capsys, tmp_path, run_dir, message):
    """A resume renames a failed stage's directory (set aside) or continues it: only ones inside the pipeline."""
    pipe, victim = tmp_path / "run" / "p", tmp_path / "run" / "victim"
    pipe.mkdir(parents=True)
    victim.mkdir()
    (victim / "config.yaml").write_text("seed: 0\n")
    record = {"name": "features", "status": "failed", "run_dir": run_dir} if run_dir else {"name": "rm -rf"}
    (pipe / "pipeline.json").write_text(json.dumps({"config": None, "overrides": [], "seeds": None,
                                                    "stages": [record]}))
    (pipe / "config.yaml").write_text("features: {}\n")
    code, _, err = cli(capsys, "run", "--resume", pipe)
    assert message in one_line_error(code, err)
    assert sorted(p.name for p in victim.parent.iterdir()) == ["p", "victim"]  # nothing renamed or made
