"""The documentation, checked: the README stays short and opens with results; no committed file holds a path
of the machine that wrote it; every link resolves; the README's Python example runs as written; and every
``transferlab ...`` command shown in README.md and docs/*.md parses with today's parser and runs.

Commands are read from ``bash`` code blocks (also ``torchrun ... -m transferlab.cli ...`` lines), from ``$ ``
lines of ``text`` blocks (a shown error: run, and the error line after it checked), and from inline code spans.
A bare ``transferlab <command>`` span is a reference and needs only the command to exist. A command marked
with a trailing ``# needs the Hub``, ``# needs a GPU`` or ``# needs a cluster`` is parsed (its config resolved
where it names an experiment) but not run. Every other command runs, in a workspace laid out like a checkout
(``../shared/data`` beside it holding small data), on small data: the seeds and label budgets it names are cut
to two, search trials to one, and settings the command leaves alone point at tiny local models and few
examples (``small_overrides``). Placeholders (``logs/<experiment>/RUN``, ``RUN_DIR``, a ``transferlab run``
directory made elsewhere) become run directories made here first. The few commands that need an interrupted
run or several processes are run by the tests named in ``RUN_ELSEWHERE``.
"""

from __future__ import annotations

import ast
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import finetune_overrides

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
MARKERS = ("needs the Hub", "needs a GPU", "needs a cluster")
# Written in pieces, so that this file does not match itself.
MACHINE_PATH = re.compile("|".join(["/" + "work/", "/" + r"home/(?!(you|user|username|me)/)[\w.-]+/", "/" + "root/",
                                     "/" + "tmp/pytest"]))  # /home/you/...: an example, not a machine's
TEXT_FILES = (".md", ".yaml", ".yml", ".txt", ".json", ".csv", ".toml", ".py", ".cfg", ".ini", ".sh")

# Commands that need an interrupted run or several processes, and the tests that run them on small data.
RUN_ELSEWHERE = {
    "transferlab finetune --resume":
        "tests/test_finetune_resume.py::test_resume_after_sigint_and_sigterm_reaches_the_uninterrupted_result",
    "transferlab finetune --resume logs/finetune/RUN":
        "tests/test_finetune_resume.py::test_resume_after_sigint_and_sigterm_reaches_the_uninterrupted_result",
    "transferlab run --resume logs/run/RUN": "tests/test_pipeline.py::test_failed_stage_keeps_results_and_resume_continues",
    "transferlab finetune training.device=cpu":
        "tests/test_finetune_distributed.py::test_two_process_run_agrees_and_writes_outputs_once",
}


@dataclass(frozen=True)
class Command:
    text: str  # "transferlab ..." with single spaces, no comment
    where: str  # file:line
    marker: str | None = None  # needs the Hub / a GPU / a cluster
    error: str | None = None  # the error line a `$ ` example shows after it

    @property
    def argv(self) -> list[str]:
        return shlex.split(self.text)[1:]


def split_comment(line: str) -> tuple[str, str]:
    match = re.search(r"\s#\s", line)
    return (line[:match.start()], line[match.end():]) if match else (line, "")


def marker_of(comment: str) -> str | None:
    return next((m for m in MARKERS if m in comment), None)


def block_commands(path: Path, start: int, lang: str, body: str) -> list[Command]:
    """The commands of one fenced block whose first line is line ``start`` of ``path``."""
    lines, out = body.split("\n"), []
    joined, i = [], 0
    while i < len(lines):  # join shell continuation lines, remembering where each command starts
        first, text = i, lines[i]
        while text.rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            text = text.rstrip()[:-1] + " " + lines[i].strip()
        joined.append((first, text))
        i += 1
    for n, (first, text) in enumerate(joined):
        where = f"{path.relative_to(ROOT)}:{start + first + 1}"
        if lang == "text" and text.startswith("$ transferlab "):
            following = joined[n + 1][1].strip() if n + 1 < len(joined) else ""
            out.append(Command(" ".join(split_comment(text[2:])[0].split()), where, error=following))
        elif lang in ("bash", "sh", "shell"):
            code, comment = split_comment(text.strip())
            if "-m transferlab.cli " in code:
                code = "transferlab " + code.split("-m transferlab.cli ", 1)[1]
            if code.startswith("transferlab "):
                out.append(Command(" ".join(code.split()), where, marker_of(comment)))
    return out


def page_commands(path: Path) -> tuple[list[Command], list[str]]:
    """The commands shown on one page, and the bare ``transferlab X`` references."""
    text = path.read_text()
    commands, references = [], []
    for match in re.finditer(r"^```(\w*)\n(.*?)^```", text, flags=re.S | re.M):
        line = text[:match.start()].count("\n") + 1
        commands += block_commands(path, line, match.group(1), match.group(2))
    prose = re.sub(r"^```.*?^```", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S | re.M)
    for match in re.finditer(r"`([^`]+)`", prose):
        span = " ".join(match.group(1).split())
        if not span.startswith("transferlab "):
            continue
        where = f"{path.relative_to(ROOT)}:{prose[:match.start()].count(chr(10)) + 1}"
        if len(span.split()) == 2 and not span.split()[1].startswith("-"):
            references.append(span.split()[1])
        else:
            commands.append(Command(span, where))
    return commands, references


def documented() -> tuple[list[Command], list[str]]:
    commands, references = [], []
    for page in PAGES:
        more, refs = page_commands(page)
        commands, references = commands + more, references + refs
    return commands, references


COMMANDS, REFERENCES = documented()


def to_run() -> list[Command]:
    """One command per text that some page shows unmarked and without an expected error, producers first
    (those naming no run directory), each once."""
    seen, out = set(), []
    for c in COMMANDS:
        if c.marker or c.error or c.text in RUN_ELSEWHERE or c.text in seen:
            continue
        seen.add(c.text)
        out.append(c)
    return sorted(out, key=consumes)


def consumes(command: Command) -> bool:
    return any(re.search(r"\bRUN\b|RUN_DIR|logs/(?!cache)|/run/", token) for token in command.argv)


def parser():
    from transferlab.cli.main import build_parser

    return build_parser()


# ---------------------------------------------------------------------------------------------- the README


def test_readme_is_short_and_opens_with_the_set_up_and_a_results_table():
    lines = README.read_text().split("\n")
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move the rest to docs/"
    first_block = next(i for i, line in enumerate(lines) if line.startswith("```"))
    assert "make demo" in lines[first_block + 1] and "make test" in lines[first_block + 2]
    table = next(i for i, line in enumerate(lines) if line.startswith("|") and "test acc" in line)
    assert table < 60, f"the results table starts at line {table + 1}; it belongs in the first 60"
    assert README.read_text().count("the reference lab") >= 1 and "450" not in README.read_text()


def glance_rows() -> list[list[str]]:
    text = README.read_text()
    block = text.split("<!-- glance:begin -->")[1].split("<!-- glance:end -->")[0]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in block.strip().split("\n")]
    return [r for r in rows[2:] if r]


def test_the_readme_figures_are_the_generated_blocks_figures():
    results = (ROOT / "docs" / "results.md").read_text()
    generated = results.split("<!-- results:begin -->")[1].split("<!-- results:end -->")[0]
    rows = glance_rows()
    assert len(rows) >= 4
    for row in rows:
        validation, test = row[3], row[4]
        assert re.fullmatch(r"0\.\d{4}", validation) and re.fullmatch(r"0\.\d{4} \[0\.\d{3}, 0\.\d{3}\]", test), row
        assert f"| {validation} ±" in generated, f"{validation} is not a validation mean of docs/results.md"
        assert f"| {test} |" in generated, f"{test} is not an interval of docs/results.md's generated block"
        assert row[6].startswith("`transferlab ") or row[6] == "the same command"


def python_example() -> str:
    blocks = re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)
    assert len(blocks) == 1, "the README shows one Python example"
    return blocks[0]


@pytest.mark.slow
def test_the_readme_python_example_runs_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(python_example(), "README.md", "exec"), scope)  # noqa: S102: the README's own code
    result, again = scope["result"], scope["again"]
    assert result.status == "completed" and result.run_dir.parent == Path("logs") / "features"
    assert again.metrics == result.metrics and 0.5 < result.test_accuracy() < 1
    assert result.metrics["n_examples"]["test"] == 200
    printed = capsys.readouterr().out
    assert str(result.run_dir) in printed and f"{result.test_accuracy()}" in printed


def test_a_bad_value_set_in_python_is_one_line_naming_the_field():
    import dataclasses

    import transferlab as tl

    with pytest.raises(tl.TransferlabError, match="classifier.name") as caught:
        tl.load_config("features", overrides=["classifier.name=forest"])
    assert "\n" not in str(caught.value)
    config = tl.load_config("features")
    with pytest.raises(tl.TransferlabError, match="classifier.name"):  # a config edited in Python
        dataclasses.replace(config, classifier=dataclasses.replace(config.classifier, name="forest"))


# ------------------------------------------------------------------------------------ files, paths, links


def tracked_text_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [ROOT / p for p in out.split("\n") if p.endswith(TEXT_FILES)]


def test_no_tracked_text_file_holds_a_path_of_this_machine():
    files = tracked_text_files()
    assert README in files or not (ROOT / ".git").exists()
    found = [f"{p.relative_to(ROOT)}:{n}: {line.strip()[:120]}" for p in files if p.is_file()
             for n, line in enumerate(p.read_text(errors="replace").split("\n"), 1) if MACHINE_PATH.search(line)]
    assert not found, "absolute machine paths (name run directories relative to the repository):\n" + "\n".join(found)


def test_the_docs_hold_no_dated_notes():
    dated = [f"{p.relative_to(ROOT)}:{n}" for p in PAGES for n, line in enumerate(p.read_text().split("\n"), 1)
             if re.search(r"\b20\d\d-\d\d-\d\d\b", line)]
    assert not dated, f"dates in the docs (say what, not when): {dated}"


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
    return {slug(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}


def test_every_relative_link_points_to_an_existing_file_and_heading():
    broken = []
    for page in PAGES:
        text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto:
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and file.suffix == ".md" and anchor not in anchors(file):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


# -------------------------------------------------------------------------------------- commands: parsing


def test_the_docs_show_commands_and_every_one_is_run_or_marked():
    assert len(COMMANDS) > 30
    running = {c.text for c in to_run()}
    for command in COMMANDS:
        assert command.text in running or command.marker or command.error or command.text in RUN_ELSEWHERE, command
    shown = {c.text for c in COMMANDS}
    assert set(RUN_ELSEWHERE) <= shown, f"RUN_ELSEWHERE names commands the docs no longer show: {set(RUN_ELSEWHERE) - shown}"
    for command, test in RUN_ELSEWHERE.items():  # the test named runs the command's shape
        file, name = test.split("::")
        functions = {n.name for n in ast.walk(ast.parse((ROOT / file).read_text())) if isinstance(n, ast.FunctionDef)}
        assert name in functions, f"{test} (which runs {command!r}) does not exist"


def test_every_referenced_command_exists():
    names = set(parser()._subparsers._group_actions[0].choices)
    assert set(REFERENCES) <= names, set(REFERENCES) - names


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.where)
def test_every_documented_command_parses(command, capsys):
    try:
        parser().parse_args(command.argv)
    except SystemExit as stop:  # --help exits 0; a renamed flag exits 2
        assert stop.code == 0, f"{command.where}: {command.text}\n{capsys.readouterr().err}"


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.marker], ids=lambda c: c.where)
def test_a_marked_command_still_resolves_its_config(command):
    """What is not run here (the Hub, a GPU, a cluster) still names a preset and settings that exist."""
    from transferlab.config import load_config
    from transferlab.experiments.registry import EXPERIMENTS

    args = parser().parse_args(command.argv)
    name = getattr(args, "experiment", None) or args.command
    if name in EXPERIMENTS:
        entry = EXPERIMENTS[name]
        load_config(entry.config_class(), entry.section, args.config, list(args.overrides))


# ------------------------------------------------------------------------------------ commands: running


def small_overrides(workspace: dict) -> dict[str, dict[str, object]]:
    """Per config section: the settings that make a run small, used where a command leaves them alone."""
    finetune = dict(o.split("=", 1) for o in finetune_overrides(workspace["text_model"]))
    finetune.update({"data.limit": 32, "training.epochs": 1, "training.eval_steps": 2, "shots_training.epochs": 1,
                     "tracking.tensorboard": "false"})
    return {
        "features": {"encoder.model": workspace["text_model"], "data.limit": 40, "encoder.max_length": 32,
                     "classifier.C_grid": "[1.0]", "tracking.tensorboard": "false"},
        "finetune": finetune,
        "setfit": {"model": workspace["sentence_model"], "data.limit": 40, "max_length": 32,
                   "training.num_iterations": 1, "device": "cpu", "tracking.tensorboard": "false"},
        "clip": {"model.name": workspace["clip"], "data.path": workspace["images"], "data.val_per_class": 2,
                 "model.batch_size": 8, "model.templates": "['a photo of a {name}.']", "lora.towers": "both",
                 "lora.target_modules": "[q_proj,v_proj]", "lora.train_projection": "false", "lora.layers": "null",
                 "training.max_steps": 2, "training.batch_size": 4, "probe.c_grid": "[1.0]",
                 "tip_adapter.epochs": 1, "tracking.tensorboard": "false"},
    }


def cut(value: str, keep: int = 2) -> str:
    """``--shots 8,16,32,full`` -> ``1,2,full``; ``clip=1,2,4`` -> ``clip=1,2``; ``--seeds 0,1,2`` -> ``0,1``."""
    section, _, values = value.rpartition("=")
    parts = values.split(",")
    numbers = [p for p in parts if p != "full"][:keep]
    small = [str(i + 1) for i in range(len(numbers))] + (["full"] if "full" in parts else [])
    return (f"{section}=" if section else "") + ",".join(small)


def substitute(argv: list[str], made) -> list[str]:
    """The command's own arguments, smaller: seeds, shots and trials cut, placeholders made real."""
    out = []
    for i, token in enumerate(argv):
        flag = argv[i - 1] if i else ""
        if flag == "--shots":
            token = cut(token)
        elif flag == "--seeds":
            token = ",".join(token.split(",")[:2])
        elif flag == "--trials":
            token = str(min(int(token), 1))
        elif re.fullmatch(r"logs/\w+/RUN", token):
            token = str(made(token.split("/")[1]))
        elif token.startswith("RUN_DIR"):
            token = str(made("finetune" if argv[0] == "predict" else "features"))
        elif re.fullmatch(r"\.\./runs/.*/run/[^/]+", token):  # a `transferlab run` directory made elsewhere
            token = str(made("run"))
        out.append(token)
    return out


def extra_settings(args, small: dict) -> list[str]:
    """The small settings a command does not set itself (``section.key`` for ``transferlab run``; none of a
    search's searched or fixed keys)."""
    from transferlab.experiments.registry import EXPERIMENTS
    from transferlab.studies.pipeline import parse_stages

    given = {o.split("=", 1)[0] for o in getattr(args, "overrides", [])}
    if args.command == "run":
        sections = dict.fromkeys(EXPERIMENTS[s].section for s in parse_stages(args.stages))
        wanted = {f"{s}.{k}": v for s in sections for k, v in small[s].items()}
    elif args.command == "tune":
        from transferlab.studies.search_space import load_search_space, search_file

        space = load_search_space(search_file(args.search, args.config, args.experiment))
        taken = {p.name for p in space.params} | set(space.fixed) | set(space.trials)
        wanted = {k: v for k, v in small[EXPERIMENTS[args.experiment].section].items() if k not in taken}
        if args.experiment == "features":  # its space searches the pooled layers: MiniLM's six, not a tiny two
            wanted.pop("encoder.model")
    elif args.command in EXPERIMENTS:
        wanted = dict(small[EXPERIMENTS[args.command].section])
        if str(args.config).endswith("best.yaml"):  # a search's best settings: its own model (MiniLM's layers)
            wanted.pop("encoder.model", None)
    else:
        return []
    return [f"{k}={v}" for k, v in wanted.items() if k not in given]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_distilbert, tiny_text_models, clip_folder):
    """A folder laid out like a checkout, with ``../shared/data`` beside it holding small data, the files the
    docs name (train.csv, test.jsonl, reviews.txt, my-encoder, my-clip, my-images, docs/results.md)."""
    from clip_fixtures import tiny_imagenet_tree
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    from transferlab.data.rotten_tomatoes import load_rotten_tomatoes

    root = tmp_path_factory.mktemp("docs")
    main, shared = root / "main", root / "shared" / "data"
    tiny_imagenet_tree(shared / "tiny-imagenet-200", n_train=6, n_val=2)
    vendored = ROOT / "src" / "transferlab" / "data" / "resources" / "rotten_tomatoes"
    shutil.copytree(vendored, shared / "rotten_tomatoes")
    (main / "docs").mkdir(parents=True)
    shutil.copy(ROOT / "docs" / "results.md", main / "docs" / "results.md")
    (main / "src").symlink_to(ROOT / "src")
    (main / "my-encoder").symlink_to(tiny_distilbert)
    (main / "my-clip").symlink_to(clip_folder)
    images = tiny_imagenet_tree(main / "my-images", n_train=6, n_val=2)
    train = load_rotten_tomatoes()["train"]
    half = len(train) // 2  # positives first, then negatives: interleave them
    rows = [(train[i]["text"], "good" if train[i]["label"] else "bad") for k in range(0, half, 60)
            for i in (k, half + k)]
    with open(main / "train.csv", "w", newline="") as f:
        import csv

        csv.writer(f).writerows([("review", "stars"), *rows[:100]])
    import json

    (main / "test.jsonl").write_text("".join(json.dumps({"review": t, "stars": s}) + "\n" for t, s in rows[100:]))
    (main / "reviews.txt").write_text("a gripping, beautifully acted film\nflat and tedious\n")
    word = Transformer(str(tiny_text_models["bert"]), max_seq_length=64)
    sentence = root / "tiny-st"
    SentenceTransformer(modules=[word, Pooling(word.get_embedding_dimension(), "mean")], device="cpu").save(str(sentence))
    return {"main": main, "text_model": str(tiny_distilbert), "sentence_model": str(sentence),
            "clip": str(clip_folder), "images": str(images), "made": {}}


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    from transferlab.cli.main import main

    try:
        code = main([str(a) for a in argv])
    except SystemExit as stop:
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, err


def made_by(workspace, small, capsys):
    """``made("features")``: a finished run of that experiment (``"run"``: a `transferlab run`) in the workspace,
    made once, for the placeholders of the commands that read one."""
    def made(kind: str) -> Path:
        if kind not in workspace["made"]:
            argv = [kind, "--output-dir", "logs"]
            args = parser().parse_args(argv)
            code, out, err = run_cli(argv + extra_settings(args, small), capsys)
            assert code == 0, f"making a {kind} run for a placeholder failed:\n{err[-3000:]}"
            workspace["made"][kind] = Path(out.strip().split("\n")[-1])
        return workspace["made"][kind]
    return made


@pytest.mark.slow
@pytest.mark.parametrize("command", to_run(), ids=lambda c: c.where)
def test_every_documented_command_runs_on_small_data(command, workspace, monkeypatch, capsys):
    monkeypatch.chdir(workspace["main"])
    small = small_overrides(workspace)
    argv = substitute(command.argv, made_by(workspace, small, capsys))
    if argv[0] == "tune" and "--trials" not in argv:
        argv += ["--trials", "1"]
    if "--help" in argv:
        code, out, err = run_cli(argv, capsys)
        assert code == 0 and "usage: transferlab" in out, err
        return
    args = parser().parse_args(argv)
    code, out, err = run_cli(argv + extra_settings(args, small), capsys)
    assert code == 0, f"{command.where}: {command.text}\n{err[-4000:]}"


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.error], ids=lambda c: c.where)
def test_a_documented_error_is_the_one_line_shown(command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # "a machine without the Hub"
    code, out, err = run_cli(command.argv, capsys)
    assert code == 2 and err.strip() == command.error, f"{command.where}: {command.text}\n{err}"
    assert not (tmp_path / "logs").exists()
