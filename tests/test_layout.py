"""The package rules of docs/architecture.md, checked on the source (every import, lazy ones too):
no import circles, and each package imports only what its row of the table allows."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("app", "worker", "planner", "datacheck")
HEAVY = ("torch", "transformers", "peft", "bitsandbytes", "trl", "accelerate")


def _modules() -> dict[str, Path]:
    mods = {}
    for base in PACKAGES:
        for path in (ROOT / base).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            mods[name.removesuffix(".__init__")] = path
    return mods


def _imports(name: str, path: Path) -> set[str]:
    """Every module name an import statement of this file names (absolute, resolved)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


MODULES = _modules()
IMPORTS = {name: _imports(name, path) for name, path in MODULES.items()}


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _circles() -> list[list[str]]:
    """Strongly connected groups of the module graph (a package's __init__ is not an edge)."""
    graph = {m: set() for m in MODULES}
    for module, names in IMPORTS.items():
        for target in filter(None, map(_resolve, names)):
            if target != module and MODULES[target].name != "__init__.py":
                graph[module].add(target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while (w := stack.pop()) != v:
                group.append(w)
            if group:
                circles.append(sorted([v, *group]))

    for v in graph:
        if v not in index:
            visit(v)
    return circles


def _offenders(prefix: str, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{module} imports {name}"
        for module, names in IMPORTS.items() if module == prefix or module.startswith(prefix + ".")
        for name in names if name.split(".")[0] in forbidden or any(name.startswith(f + ".") for f in forbidden)
    )


def test_no_import_circles():
    assert _circles() == []


def test_torch_free_packages_import_neither_the_studio_nor_torch():
    for package in ("planner", "datacheck"):
        assert _offenders(package, ("app", "worker", *HEAVY)) == []


# The `studio` command starts every process (web, workers, inference) and converts the built-in
# model: it, and the doctor it runs, import the worker side lazily, in their own process.
COMMAND_EDGE = ("app.cli", "app.doctor")


def test_the_web_never_imports_the_engine_or_torch():
    found = [line for line in _offenders("app", ("worker.training", "worker.inference", *HEAVY))
             if line.split()[0] not in COMMAND_EDGE]
    assert found == []


def test_the_engine_imports_nothing_from_the_web_or_the_tasks():
    assert _offenders("worker.training", ("app", "worker.tasks", "worker.runtime", "datacheck")) == []


def test_the_rules_see_every_package():
    assert {name.split(".")[0] for name in MODULES} == set(PACKAGES)
    assert len(MODULES) > 100
