"""The layering of SPEC "Layout": lower layers never import upper ones, at any depth.

Every module of graflow_async is read with `ast`; every import counts (module level,
inside functions, under TYPE_CHECKING). A module may import its own layer and the
layers below it, never one above.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "graflow_async"

#: lowest first; each name is a top-level module or a subpackage of graflow_async
LAYERS: list[set[str]] = [
    {"exceptions", "result", "clock", "options", "logs", "loading", "events", "files"},  # leaves
    {"actors"},  # the actor kernel: no workflow knowledge
    {"define"},  # what users write
    {"plan"},  # the pure run plan
    {"wire"},  # messages and their encoding
    {"transports"},
    {"checkpoints", "feedback", "records"},  # stores
    {"execute"},  # the task side
    {"handlers"},  # handlers that run a task elsewhere (docker, another process)
    {"run"},  # the driver
    {"web", "cli"},  # the top
]
EXEMPT = {"__init__", "__main__"}  # the package's face: re-exports everything public
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def part_of(module: str) -> str:
    """The top-level part a dotted module (relative to graflow_async) belongs to."""
    return module.split(".", 1)[0]


def modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found.append((name or "__init__", path))
    return found


def imported(path: Path) -> set[str]:
    """Every graflow_async module `path` imports (relative to graflow_async), at any depth."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            if name == "graflow_async" and isinstance(node, ast.ImportFrom):
                out.update(alias.name for alias in node.names)
            elif name.startswith("graflow_async."):
                out.add(name.removeprefix("graflow_async."))
    return out


def back_edges() -> list[str]:
    edges = []
    for name, path in modules():
        if name in EXEMPT:
            continue
        own = RANK[part_of(name)]
        for target in sorted(imported(path)):
            if RANK[part_of(target)] > own:
                edges.append(f"{name} imports {target}")
    return edges


def test_every_part_has_a_layer() -> None:
    parts = {part_of(name) for name, _ in modules()} - EXEMPT
    assert parts <= set(RANK), f"parts without a layer: {sorted(parts - set(RANK))}"
    assert len({p for p in parts if (PACKAGE / f"{p}.py").exists()}) <= 8, "at most 8 modules at the top"


def test_no_lower_layer_imports_an_upper_one() -> None:
    assert back_edges() == []


def test_relative_imports_are_not_used() -> None:
    """Absolute imports only, so that this test sees every edge."""
    relative = [
        name
        for name, path in modules()
        if any(isinstance(n, ast.ImportFrom) and n.level for n in ast.walk(ast.parse(path.read_text())))
    ]
    assert relative == []


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("plan.core", "run.actor"),
        ("define.tasks", "handlers.docker"),
        ("wire.envelope", "execute.tracing"),
        ("transports.redis.transport", "feedback.redis"),
        ("checkpoints.locations", "cli"),
    ],
)
def test_the_check_sees_a_back_edge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, target: str) -> None:
    """What today's layering would have failed on, shown to fail here."""
    original = imported
    extra = {source: target}

    def with_edge(path: Path) -> set[str]:
        name = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        found = original(path)
        return found | {extra[name]} if name in extra else found

    monkeypatch.setitem(globals(), "imported", with_edge)
    assert f"{source} imports {target}" in back_edges()


def test_every_runtime_dependency_is_imported_by_the_package() -> None:
    """A dependency in pyproject.toml's ``dependencies`` earns its place: some module of
    graflow_async imports it (extras are optional and checked where they are used)."""
    import re
    import tomllib

    project = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["project"]
    wanted = {re.split(r"[<>=!~;\[ ]", dep, maxsplit=1)[0].replace("-", "_").lower() for dep in project["dependencies"]}
    used = set()
    for _, path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                used.update(alias.name.split(".")[0].lower() for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                used.add(node.module.split(".")[0].lower())
    assert wanted - used == set()


def test_the_readme_draws_the_tree_as_it_is() -> None:
    """README's "Design" tree names every folder and top-level module, and nothing else."""
    readme = (PACKAGE.parent / "README.md").read_text()
    design = readme[readme.index("## Design\n") :]
    start = design.index("```\n") + 4
    drawn = set()
    for line in design[start : design.index("\n```", start)].splitlines()[1:]:
        if line.startswith("   "):
            continue  # a description carried over
        for word in line.split():  # the names lead the line, the description follows
            if not word.endswith(("/", ".py")):
                break
            drawn.add(word.rstrip("/"))
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    leaves = {p.name for p in PACKAGE.glob("*.py")} - {"__main__.py"}
    assert drawn == folders | leaves
