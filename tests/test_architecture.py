"""The package's shape, checked: dependencies point one way, functions stay readable, one experiment table."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from transferlab.cli import build_parser
from transferlab.experiments.registry import EXPERIMENTS
from transferlab.pipeline import STAGES

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "transferlab"
# Layer -> the modules it must not import (the layers above it).
FORBIDDEN = {
    "data": ("models", "training", "evaluation", "experiments", "studies", "pipeline", "reporting", "cli", "predict"),
    "models": ("training", "evaluation", "experiments", "studies", "pipeline", "reporting", "cli", "predict"),
    "tracking": ("models", "training", "evaluation", "experiments", "studies", "pipeline", "reporting", "cli", "predict"),
    "training": ("evaluation", "experiments", "studies", "pipeline", "reporting", "cli", "predict"),
    "evaluation": ("training", "experiments", "studies", "pipeline", "reporting", "cli", "predict"),
    "experiments": ("studies", "pipeline", "reporting", "cli", "predict"),
    "studies": ("pipeline", "reporting", "cli", "predict"),
}
MAX_FUNCTION_LINES = 60


def modules(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py"))


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n for n in names if n.startswith("transferlab.")}


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_dependencies_point_one_way(layer):
    bad = [(path.relative_to(PACKAGE).as_posix(), name) for path in modules(layer) for name in imported(path)
           if name.split(".")[1] in FORBIDDEN[layer]]
    assert not bad, f"{layer} imports a layer above it: {bad}"


def test_no_function_is_longer_than_60_lines():
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({length} lines)")
    assert not long, long


def test_cli_and_pipeline_read_the_one_registry():
    commands = build_parser()._subparsers._group_actions[0].choices  # noqa: SLF001 (argparse keeps them here)
    assert set(EXPERIMENTS) <= set(commands)
    assert set(STAGES) == set(EXPERIMENTS)
    for name, experiment in EXPERIMENTS.items():
        assert ("--resume" in commands[name]._option_string_actions) == experiment.resumable  # noqa: SLF001
        assert experiment.config_class().__dataclass_fields__["seed"]  # every config is seeded
