"""The shape of the code: no import cycles among ``sice`` modules, nothing test-only in ``src/``,
and no module in ``src/sice`` that only the tests use.

Imports are read from the source with :mod:`ast`, nothing is imported: module-level imports and
those inside functions alike (a deferred import is still a dependency of the design), relative
ones resolved against the importing module's package.
"""
from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
import tomllib
from collections import deque
from pathlib import Path

from support.helpers import REPO

SRC = REPO / "src"
TESTS = REPO / "tests"

# Cycles allowed to exist: none (the last one, enhancement <-> export, went with issue 18).
KNOWN_CYCLES: list[set[str]] = []


# --- reading the imports ----------------------------------------------------------------------
def module_name(path: Path, root: Path = SRC) -> str:
    """``src/sice/models/caffe.py`` -> ``sice.models.caffe``; a package's ``__init__.py`` -> its name."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_files(root: Path = SRC) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of the ``sice`` package under ``root``."""
    return {module_name(path, root): path for path in sorted((root / "sice").rglob("*.py"))}


@functools.cache
def imported_names(name: str, path: Path) -> list[tuple[str, int]]:
    """``(absolute dotted name, line)`` of every import in the file, anywhere in it; ``from X
    import a`` gives ``X.a`` (``a`` may be a submodule or a name defined in ``X``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            found += [(f"{target}.{alias.name}", node.lineno) for alias in node.names]
    return found


def import_graph(files: dict[str, Path]) -> dict[str, dict[str, int]]:
    """Module -> {sice module it imports: line of the first such import}.

    An imported name counts as the longest known module it starts with: ``from .io import
    read_image`` is an import of ``sice.io``, ``from . import caffe`` (in ``sice.models``) of
    ``sice.models.caffe``."""
    graph: dict[str, dict[str, int]] = {}
    for name, path in files.items():
        edges: dict[str, int] = {}
        for imported, line in imported_names(name, path):
            target = imported
            while target and target not in files:
                target = target.rpartition(".")[0]
            if target and target != name:
                edges.setdefault(target, line)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module, each as one closed path
    ``[a, b, ..., a]`` through it (Tarjan's algorithm; iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, {})))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(component)
    return [_closed_path(graph, component) for component in components]


def _closed_path(graph: dict[str, dict[str, int]], component: set[str]) -> list[str]:
    """A shortest path from the component's first module back to itself, inside the component."""
    start = min(component)
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in sorted(graph[node]):
            if child not in component:
                continue
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [start, *reversed(path[:-1]), start]
            if child not in came_from:
                came_from[child] = node
                queue.append(child)
    raise AssertionError(f"no cycle through {start} in {sorted(component)}")


def _describe(graph: dict[str, dict[str, int]], path: list[str]) -> str:
    steps = [path[0]] + [f"{b} (line {graph[a][b]} of {a})" for a, b in zip(path, path[1:])]
    return " -> ".join(steps)


# --- no cycles ----------------------------------------------------------------------------------
def test_the_cycle_finder_finds_cycles_and_only_cycles():
    graph = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3, "d": 4}, "d": {}, "e": {"a": 5},
             "f": {"g": 6}, "g": {"f": 7}}
    found = cycles(graph)
    assert sorted(map(set, found), key=min) == [{"a", "b", "c"}, {"f", "g"}]
    assert ["a", "b", "c", "a"] in found
    assert _describe(graph, ["f", "g", "f"]) == "f -> g (line 6 of f) -> f (line 7 of g)"


def test_imports_are_read_from_functions_and_relative_imports():
    graph = import_graph(module_files())
    # sice/models/caffe.py: `from ..errors import ...`, `from .checkpoint import ...`, and
    # `from .sice2018 import ...` inside port_state_dict
    assert {"sice.errors", "sice.models.checkpoint", "sice.models.sice2018"} <= set(graph["sice.models.caffe"])
    # `from . import create_model`: the package itself
    assert "sice.models" in graph["sice.models.caffe"]


def test_no_import_cycles_among_sice_modules():
    graph = import_graph(module_files())
    found = cycles(graph)
    assert [set(path) for path in found] == KNOWN_CYCLES, (
        "import cycles among sice modules:\n  " + "\n  ".join(_describe(graph, p) for p in found)
        + f"\nknown (tests/test_architecture.py, KNOWN_CYCLES): {KNOWN_CYCLES or 'none'}; "
          "break a new cycle, or delete a known one that is gone")


# --- the layers of docs/ARCHITECTURE.md -----------------------------------------------------------
#: The floor: what every stage may import (it imports only within itself).
FLOOR = {"errors", "version", "files", "imageops", "tensorops", "io", "childproc", "decomposition", "weights",
         "webserver", "samples"}
#: Package -> the other packages it may import besides the floor; the diagram of ARCHITECTURE.md.
LAYERS = {
    "cli": {"*"},
    "__main__": {"cli"},
    "serving": {"enhancement"},
    "sice": {"enhancement"},  # sice/__init__.py: the functional API
    "training": {"dataset", "evaluation", "models"},
    "evaluation": {"dataset", "enhancement", "parallel"},
    "enhancement": {"models", "parallel"},
    "dataset": {"stack", "fusion", "screening", "parallel"},
    "stack": set(), "fusion": set(), "models": set(), "screening": set(), "parallel": set(),
}


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "sice"


def test_packages_import_only_what_the_architecture_diagram_draws():
    graph = import_graph(module_files())
    wrong = []
    for module, imported in graph.items():
        here = _package(module)
        for other, line in imported.items():
            there = _package(other)
            if there == here:
                continue
            allowed = (FLOOR if here in FLOOR else LAYERS.get(here, set()) | FLOOR)
            if "*" not in LAYERS.get(here, set()) and there not in allowed:
                wrong.append(f"{module} (line {line}) imports {other}")
    packages = {_package(m) for m in graph}
    assert packages <= FLOOR | set(LAYERS), f"packages missing from LAYERS: {sorted(packages - FLOOR - set(LAYERS))}"
    assert not wrong, ("imports that docs/ARCHITECTURE.md does not draw (change the design or the diagram "
                       "and LAYERS together):\n  " + "\n  ".join(wrong))


# --- nothing test-only in the product -----------------------------------------------------------
def _requirement_name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[(]", requirement.strip(), maxsplit=1)[0]


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_extras(requirement: str) -> set[str]:
    """The extras a requirement asks for: ``dask[distributed]>=2024`` -> {"distributed"}."""
    match = re.search(r"\[([^\]]*)\]", requirement.split(";")[0])
    return {e.strip() for e in match.group(1).split(",")} if match else set()


def installed_by_sice(extras: tuple[str, ...] = ()) -> set[str]:
    """Normalised names of the distributions ``pip install sice[EXTRAS]`` installs: the
    dependencies in pyproject.toml (and those of the named extras) and, as installed here, theirs
    (with the extras each requirement names)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for e in extras for r in project["optional-dependencies"][e]]
    todo = [(_normalised(_requirement_name(r)), _requirement_extras(r)) for r in requirements]
    seen: set[str] = set()
    while todo:
        dist, wanted = todo.pop()
        if dist in seen:
            continue
        seen.add(dist)
        try:
            requires = importlib.metadata.requires(dist) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for r in requires:
            extra = re.search(r"extra\s*==\s*[\"']([^\"']+)", r)
            if extra is None or extra.group(1) in wanted:
                todo.append((_normalised(_requirement_name(r)), _requirement_extras(r)))
    return seen


def test_src_imports_nothing_test_only():
    test_side = {"tests", "pytest", "_pytest", "hypothesis"} | {p.stem for p in TESTS.glob("*.py")} | {
        p.name for p in TESTS.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    # the product's optional extras (cluster: Dask) count; the test extra does not
    product_extras = tuple(e for e in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
                           .get("optional-dependencies", {}) if e != "test")
    allowed = installed_by_sice(product_extras)
    distributions = importlib.metadata.packages_distributions()
    problems = []
    for path in sorted(SRC.rglob("*.py")):
        for imported, line in imported_names(module_name(path), path):
            top = imported.split(".")[0]
            where = f"{path.relative_to(REPO)}:{line}: {imported}"
            if top in test_side:
                problems.append(f"{where} (test-side)")
            elif top == "sice" or top in sys.stdlib_module_names:
                continue
            elif not {_normalised(d) for d in distributions.get(top, [top])} & allowed:
                problems.append(f"{where} (from {', '.join(distributions.get(top, [top]))}, "
                                "not installed by the dependencies of sice)")
    assert not problems, "src/ imports what only the tests have:\n  " + "\n  ".join(problems)


def test_every_sice_module_is_used_by_the_product():
    """Every module is reached from ``import sice``, ``python -m sice`` or the ``sice`` command,
    through imports (parents of an imported module included) or a module name in the code (the
    CLI's lazy command table): a module that only the tests use belongs in tests/support."""
    files = module_files()
    graph = import_graph(files)
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    roots = ["sice", "sice.__main__", *(target.split(":")[0] for target in scripts.values())]
    named = {}
    for name, path in files.items():
        named[name] = {node.value.split(":")[0] for node in ast.walk(ast.parse(path.read_text()))
                       if isinstance(node, ast.Constant) and isinstance(node.value, str)
                       and node.value.split(":")[0] in files}
    reached: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in reached:
            continue
        reached.add(name)
        parents = [name.rsplit(".", k)[0] for k in range(1, name.count(".") + 1)]
        todo += [*graph[name], *named[name], *parents]
    unreached = sorted(set(files) - reached)
    assert not unreached, f"modules that nothing reached from {', '.join(roots)} uses (only tests?): {unreached}"


def test_test_modules_share_helpers_through_support_not_each_other():
    """Shared test code lives in tests/support (helpers.py and the others); a test module that
    imports another one (or conftest) runs that module's import-time code and couples the two."""
    test_modules = {p.stem for p in TESTS.glob("*.py")}
    problems = [f"{path.name}:{line}: {imported}" for path in sorted(TESTS.glob("*.py"))
                for imported, line in imported_names(path.stem, path) if imported.split(".")[0] in test_modules]
    assert not problems, "test modules import each other (use tests/support/helpers.py):\n  " + "\n  ".join(problems)
