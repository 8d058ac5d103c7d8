"""The shape of the package: the SDK stands alone, `runyard/` has no import cycles, and no module
grows past 500 lines.

- The SDK (`import runyard`, `runyard.client`) must never load server code: a user who installs
  the client does not pay for SQLAlchemy or FastAPI, and a server refactor cannot break it.
- Import cycles are found statically: every module under runyard/ is parsed with `ast`, and the
  module-level imports between runyard modules form a graph (imports inside functions and under
  `if TYPE_CHECKING:` do not count; the implicit import of a module's parent packages is not an
  edge). Any strongly connected component is reported with one concrete cycle.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "runyard"
SERVER_SIDE = ("runyard.server", "runyard.store", "runyard.worker", "runyard.bus", "sqlalchemy", "fastapi")
MAX_LINES = 500


# (a) The SDK never imports server code


def _loaded_server_modules(imports: list[str]) -> list[str]:
    code = (
        "import importlib, json, sys\n"
        f"for name in {imports!r}:\n"
        "    importlib.import_module(name)\n"
        f"bad = sorted(m for m in sys.modules if any(m == s or m.startswith(s + '.') for s in {SERVER_SIDE!r}))\n"
        "print(json.dumps(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_sdk_never_imports_server_code():
    loaded = _loaded_server_modules(["runyard", "runyard.client"])
    assert loaded == [], f"importing runyard and runyard.client loaded server-side modules: {loaded}"


def _sdk_modules() -> list[str]:
    """runyard/__init__, runyard/domain.py, every private top-level module (runyard/_*.py) and
    everything under the SDK packages (runyard/client/, runyard/_resources/)."""
    names = ["runyard", "runyard.domain"]
    names += [f"runyard.{p.stem}" for p in sorted(PACKAGE.glob("_*.py")) if not p.stem.startswith("__")]
    for package in ("client", "_resources"):
        for path in sorted((PACKAGE / package).rglob("*.py")) if (PACKAGE / package).is_dir() else []:
            names.append(_module_name(path))
    return names


def test_no_sdk_module_imports_server_code():
    modules = _sdk_modules()
    loaded = _loaded_server_modules(modules)
    assert loaded == [], f"importing the SDK modules {modules} loaded server-side modules: {loaded}"


# (b) No import cycles inside runyard/


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _all_modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _module_level_imports(statements: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Imports that run when the module is imported: not in functions, not under TYPE_CHECKING."""
    for node in statements:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _module_level_imports(node.body)
            yield from _module_level_imports(node.orelse)
        elif isinstance(node, (ast.Try, getattr(ast, "TryStar", ast.Try))):
            yield from _module_level_imports(node.body)
            for handler in node.handlers:
                yield from _module_level_imports(handler.body)
            yield from _module_level_imports(node.orelse)
            yield from _module_level_imports(node.finalbody)
        elif isinstance(node, (ast.With, ast.AsyncWith, ast.ClassDef)):
            yield from _module_level_imports(node.body)
        elif isinstance(node, (ast.For, ast.AsyncFor, ast.While)):
            yield from _module_level_imports(node.body)
            yield from _module_level_imports(node.orelse)
        elif isinstance(node, ast.Match):
            for case in node.cases:
                yield from _module_level_imports(case.body)


def _imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The runyard modules `name` imports at module level (resolved, relative imports included)."""
    is_package = path.name == "__init__.py"
    package = name.split(".") if is_package else name.split(".")[:-1]
    targets: set[str] = set()

    def longest_module(dotted: str) -> str | None:
        parts = dotted.split(".")
        while parts:
            candidate = ".".join(parts)
            if candidate in modules:
                return candidate
            parts.pop()
        return None

    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in _module_level_imports(tree.body):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "runyard" or alias.name.startswith("runyard."):
                    target = longest_module(alias.name)
                    if target:
                        targets.add(target)
            continue
        if node.level:
            up = node.level - 1
            base_parts = package[: len(package) - up] if up else package
            base = ".".join([*base_parts, *([node.module] if node.module else [])])
        else:
            base = node.module or ""
        if not (base == "runyard" or base.startswith("runyard.")):
            continue
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            if alias.name != "*" and submodule in modules:
                targets.add(submodule)  # `from pkg import sub` imports the module pkg.sub
            else:
                target = longest_module(base)
                if target:
                    targets.add(target)
    targets.discard(name)
    return targets


def import_graph() -> dict[str, set[str]]:
    modules = _all_modules()
    return {name: _imports_of(name, path, modules) for name, path in modules.items()}


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in graph:
                    continue
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def _one_cycle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """A shortest cycle through the component's first module, as a path start → … → start."""
    members = set(component)
    start = component[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for child in sorted(graph[node] & members):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if child not in previous:
                    previous[child] = node
                    nxt.append(child)
        frontier = nxt
    return component


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    return [_one_cycle(graph, c) for c in _strongly_connected(graph) if len(c) > 1]


def test_cycle_finder_finds_a_known_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": set()}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"x": {"y"}, "y": set()}) == []


def test_import_resolution_on_this_package():
    graph = import_graph()
    assert "runyard" in graph and "runyard.server.app" in graph
    # runyard/server/app.py imports `from ..store.db import Store` and `from .routes import agents, …`
    assert "runyard.store.db" in graph["runyard.server.app"]
    assert "runyard.server.routes.agents" in graph["runyard.server.app"]


def test_no_import_cycles_in_runyard():
    graph = import_graph()
    cycles = find_cycles(graph)
    assert not cycles, "import cycles among runyard modules:\n" + "\n".join(" -> ".join(c) for c in cycles)


# (c) Module size


def test_no_module_over_500_lines():
    sizes = {str(p.relative_to(REPO)): len(p.read_text(encoding="utf-8").splitlines()) for p in PACKAGE.rglob("*.py")}
    too_long = {path: n for path, n in sorted(sizes.items()) if n > MAX_LINES}
    assert not too_long, f"modules over {MAX_LINES} lines: {too_long}"
