"""The package's shape, checked: layers import only downwards, the import graph has no circle, the command
line is the top wing nothing imports, functions stay readable, and every layer reads the one registry."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from transferlab.cli.main import build_parser
from transferlab.experiments.registry import EXPERIMENTS

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "transferlab"
# Bottom to top. A module may import its own layer and the layers below it, never one above.
LAYERS = (
    ("errors", "config"),
    ("data", "tracking"),
    ("models",),
    ("training", "evaluation"),
    ("experiments",),
    ("studies",),
    ("reporting",),
    ("api", "__init__"),  # the public Python API
    ("cli",),
)
# Pairs inside one layer that must not know each other (two libraries side by side).
APART = {("training", "evaluation"), ("evaluation", "training"), ("data", "tracking")}
MAX_FUNCTION_LINES = 60


def unit(module: str) -> str:
    """``transferlab.studies.shots`` -> ``studies``; ``transferlab`` -> ``__init__``; exact names only."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer_of(name: str) -> int:
    for i, names in enumerate(LAYERS):
        if name in names:
            return i
    raise AssertionError(f"{name!r} is in no layer: add it to LAYERS in tests/test_architecture.py")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every ``transferlab`` module a file imports, at the top or inside a function (lazy imports count)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)  # `from pkg import module`
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n for n in names if n == "transferlab" or n.startswith("transferlab.")}


GRAPH = {module_name(p): p for p in PACKAGE.rglob("*.py") if p.name != "__main__.py"}


def edges() -> dict[str, set[str]]:
    """module -> the package modules it imports (names that are attributes, not modules, dropped)."""
    return {m: {n for n in imports(p) if n in GRAPH and n != m} for m, p in GRAPH.items()}


def test_every_module_has_a_layer():
    for module in GRAPH:
        layer_of(unit(module))


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_point_down(module):
    here = unit(module)
    bad = []
    for name in imports(GRAPH[module]):
        there = unit(name)
        if name == "transferlab" and here != "__init__":
            bad.append(name)  # the API is above every library module
        elif layer_of(there) > layer_of(here) or (here, there) in APART:
            bad.append(name)
    assert not bad, f"{module} imports above its layer ({here}): {sorted(bad)}"


def test_nothing_outside_cli_imports_cli():
    offenders = [m for m in GRAPH if unit(m) != "cli" and any(unit(n) == "cli" for n in imports(GRAPH[m]))]
    assert not offenders


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle in the graph, or ``None`` (depth-first search with colours)."""
    colour, stack = {}, []

    def visit(node):
        colour[node] = "grey"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if colour.get(nxt) == "grey":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in colour and (found := visit(nxt)):
                return found
        stack.pop()
        colour[node] = "black"
        return None

    for node in sorted(graph):
        if node not in colour and (found := visit(node)):
            return found
    return None


def test_the_import_graph_has_no_circle():
    # a package's __init__ re-exporting its own modules is not a circle of code; leave those edges out
    graph = {m: {n for n in targets if not (n.startswith(m + ".") and GRAPH[m].name == "__init__.py")}
             for m, targets in edges().items()}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_function_is_longer_than_60_lines():
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({length} lines)")
    assert not long, long


NAME_KEYED = ("STAGES", "DEFAULT_STAGES", "PATH_KEYS", "MODEL_KEYS", "TUNABLE", "SHARED_CACHES", "TRAINING_FREE")


@pytest.mark.slow
def test_experiment_facts_live_only_in_the_registry():
    """No name-keyed copy of the registry's facts anywhere else in the package."""
    copies = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            copies += [f"{path.relative_to(PACKAGE)}: {t.id}" for t in targets
                       if isinstance(t, ast.Name) and t.id in NAME_KEYED]
    assert not copies


def test_cli_reads_the_one_registry():
    commands = build_parser()._subparsers._group_actions[0].choices  # noqa: SLF001 (argparse keeps them here)
    assert set(EXPERIMENTS) <= set(commands)
    tune = commands["tune"]._subparsers._group_actions[0].choices  # noqa: SLF001
    assert set(tune) == {n for n, e in EXPERIMENTS.items() if e.tunable}
    for name, experiment in EXPERIMENTS.items():
        assert ("--resume" in commands[name]._option_string_actions) == experiment.resumable  # noqa: SLF001
        assert experiment.config_class().__dataclass_fields__["seed"]  # every config is seeded
