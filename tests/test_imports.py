"""No import cycle anywhere under engine/codestudio/.

Dependencies point one way (model -> store -> engine services -> CLI and
server); a cycle means a lower module reaches up. Imports are read with
``ast`` from every module, at module level and inside functions alike: a
function-level import is still a dependency, only a later one.

One documented choice: an import of a module's own ancestor package
(``codestudio.sync.core`` importing ``codestudio.sync``) is not an edge.
Python has always started initialising the ancestor before the submodule,
and a package ``__init__`` re-exporting its submodules is the usual layout,
not a layering problem.
"""

from __future__ import annotations

import ast
from pathlib import Path

import codestudio

ROOT = Path(codestudio.__file__).parent
# Copied into images and run there; never imported by the engine's modules at run time
# except for their constants (stdlib only, so no cycle can start there).
SKIP_DIRS = {"__pycache__"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        if SKIP_DIRS & set(path.parts):
            continue
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> engine modules it imports (module- and function-level)."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_pkg = path.name == "__init__.py"
        package = name if is_pkg else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.append(sub if sub in modules else base)
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                # Importing a.b.c runs a/__init__ and a/b/__init__ first: those count too.
                while target:
                    if target != name and not name.startswith(target + "."):
                        graph[name].add(target)  # not itself nor an ancestor package (see above)
                    target = target.rpartition(".")[0]
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _path(graph: dict[str, set[str]], component: list[str]) -> str:
    """One concrete cycle inside a component, for the failure message."""
    members = set(component)
    start = component[0]
    trail = [start]
    seen = {start}
    while True:
        nxt = sorted(graph[trail[-1]] & members)
        back = [n for n in nxt if n == start]
        if back and len(trail) > 1:
            return " -> ".join([*trail, start])
        fresh = [n for n in nxt if n not in seen]
        if not fresh:
            return " <-> ".join(component)
        trail.append(fresh[0])
        seen.add(fresh[0])


def test_the_graph_sees_function_level_imports():
    graph = import_graph()
    # cli modules import the engine inside their command functions only.
    assert "codestudio.access" in graph["codestudio.cli.admin"]
    assert "codestudio.plugins" in graph["codestudio.cli.blocks"]


def test_cycle_detection_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert _path(graph, ["a", "b", "c"]) == "a -> b -> c -> a"


def test_no_import_cycle_in_the_engine():
    graph = import_graph()
    found = [_path(graph, c) for c in cycles(graph)]
    assert not found, "import cycles under engine/codestudio/:\n" + "\n".join(found)


PODMAN_HELPERS = {"podman", "podman_command", "podman_env"}
#: The only modules that may run podman: the helpers themselves and the local runtime.
PODMAN_ROOMS = {"codestudio.containers", "codestudio.runtime.local"}


def test_only_the_local_runtime_runs_podman():
    offenders = []
    for name, path in _modules().items():
        if any(name == room or name.startswith(room + ".") for room in PODMAN_ROOMS):  # a room's modules too
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            used = None
            if isinstance(node, ast.ImportFrom) and node.module == "codestudio.containers":
                used = {a.name for a in node.names} & PODMAN_HELPERS
            elif isinstance(node, ast.Attribute) and node.attr in PODMAN_HELPERS and isinstance(node.value, ast.Name) \
                    and node.value.id == "containers":
                used = {node.attr}
            elif isinstance(node, ast.ImportFrom) and node.module == "codestudio.runtime" and any(
                    a.name == "local" for a in node.names):
                used = {"codestudio.runtime.local"}
            if used:
                offenders.append(f"{name}:{node.lineno} uses {', '.join(sorted(used))}")
    assert not offenders, "podman is the local runtime's business:\n" + "\n".join(offenders)
