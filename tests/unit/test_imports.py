"""The import graph of the shipped packages: no cycles, and imports only flow one way.

Every ``import`` statement counts, at module level or inside a function: a deferred import is still
a dependency, and a cycle hidden in a function is one refactoring away from an import-time failure.
The rules encode the layering of ``docs/architecture.md``: ``applier`` is pure and imports none of
the others; ``server`` imports neither ``gateway_rest`` nor ``stack``; ``gateway_rest`` does not import
``stack``; ``stack`` (the processes and the stack runner, which starts the REST shim in the same
process as the JobService) may import them all, and nothing imports it.
"""

from __future__ import annotations

import ast
from collections.abc import Collection
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("stack", "server", "gateway_rest", "applier")

FORBIDDEN: dict[str, tuple[str, ...]] = {
    "applier": ("server", "gateway_rest", "stack"),
    "server": ("gateway_rest", "stack"),
    "gateway_rest": ("stack",),
}
"""Package -> packages it must never import (a package absent here, ``stack``, may import any)."""


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported(node: ast.AST, module: str, is_package: bool, modules: Collection[str]) -> list[str]:
    """The modules of ``modules`` that one import statement loads."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name in modules]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:
        base = module.split(".")
        keep = len(base) - node.level + (1 if is_package else 0)
        prefix = ".".join(base[:keep])
        target = f"{prefix}.{node.module}" if node.module else prefix
    else:
        target = node.module or ""
    # ``from pkg import mod`` naming a submodule depends on that submodule (the package itself is
    # initialised before any of its submodules in any case); ``from pkg import name`` on ``pkg``.
    found = []
    for alias in node.names:
        sub = f"{target}.{alias.name}"
        found.append(sub if sub in modules else target)
    return [m for m in found if m in modules]


def import_graph(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, set[str]]:
    """Module -> the modules of ``packages`` it imports."""
    files = {module_name(p, root): p for pkg in packages for p in (root / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        targets: set[str] = set()
        for node in ast.walk(tree):
            targets.update(_imported(node, name, path.name == "__init__.py", files.keys()))
        targets.discard(name)
        graph[name] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)) is not None:
            return found
    return None


def upward_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    bad: list[tuple[str, str]] = []
    for module, targets in graph.items():
        for banned in FORBIDDEN.get(module.split(".")[0], ()):
            bad.extend((module, t) for t in sorted(targets) if t.split(".")[0] == banned)
    return bad


def test_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_imports_flow_one_way() -> None:
    assert upward_imports(import_graph()) == []


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_a_cycle_through_a_deferred_import_is_found(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "server/__init__.py": "",
            "server/a.py": "from server.b import thing\n",
            "server/b.py": "def thing():\n    from server import a\n",
        },
    )
    assert find_cycle(import_graph(tmp_path, ("server",))) == ["server.a", "server.b", "server.a"]


def test_a_relative_import_cycle_is_found(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "applier/__init__.py": "",
            "applier/x.py": "from . import y\n",
            "applier/ops/__init__.py": "",
            "applier/y.py": "from .ops import z\n",
            "applier/ops/z.py": "from ..x import w\n",
        },
    )
    cycle = find_cycle(import_graph(tmp_path, ("applier",)))
    assert cycle == ["applier.ops.z", "applier.x", "applier.y", "applier.ops.z"]


def test_a_submodule_importing_its_sibling_through_the_package_is_no_cycle(tmp_path: Path) -> None:
    files = {
        "gateway_rest/__init__.py": "",
        "gateway_rest/codec/__init__.py": "from gateway_rest.codec.decode import decode\n",
        "gateway_rest/codec/shapes.py": "",
        "gateway_rest/codec/decode.py": "from gateway_rest.codec import shapes\n",
    }
    _write(tmp_path, files)
    assert find_cycle(import_graph(tmp_path, ("gateway_rest",))) is None
    # Two siblings that import each other are a cycle, whichever way they are spelled.
    _write(tmp_path, {"gateway_rest/codec/shapes.py": "from gateway_rest.codec import decode\n"})
    assert find_cycle(import_graph(tmp_path, ("gateway_rest",))) is not None


@pytest.mark.parametrize(
    ("module", "source", "allowed"),
    [
        ("applier/ops/x.py", "from server.errors import S3Error\n", False),
        ("applier/x.py", "import gateway_rest.app\n", False),
        ("server/service/x.py", "def f():\n    from gateway_rest import app\n", False),
        ("server/runtime.py", "from gateway_rest import app\n", False),
        ("server/x.py", "import stack.serve\n", False),
        ("gateway_rest/x.py", "def f():\n    from stack import serve\n", False),
        ("stack/runtime.py", "from gateway_rest import app\nfrom server import errors\n", True),
    ],
)
def test_an_upward_import_is_found(tmp_path: Path, module: str, source: str, allowed: bool) -> None:
    _write(
        tmp_path,
        {
            "server/__init__.py": "",
            "server/errors.py": "",
            "server/service/__init__.py": "",
            "applier/__init__.py": "",
            "applier/ops/__init__.py": "",
            "gateway_rest/__init__.py": "",
            "gateway_rest/app.py": "",
            "stack/__init__.py": "",
            "stack/serve.py": "",
            module: source,
        },
    )
    found = upward_imports(import_graph(tmp_path))
    assert (found == []) is allowed
