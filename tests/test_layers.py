"""Imports flow one way: hosts -> api -> stages -> models / features / errors, with no circles at all.

Read from the source (every import statement, also those inside functions, and module names given as
strings to ``__import__``), so adding a loop or an upward import fails here, not in review.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "core"
PACKAGE = ROOT / "fixative"

# Lower numbers sit lower; a module may import its own layer or any below it.
BOTTOM, STAGES, API, HOSTS = 0, 1, 2, 3
LAYERS = {
    "fixative.version": BOTTOM,
    "fixative.lazy": BOTTOM,
    "fixative.errors": BOTTOM,
    "fixative.options": BOTTOM,
    "fixative.presets": BOTTOM,
    "fixative.reports": BOTTOM,
    "fixative.features": BOTTOM,
    "fixative.hookspecs": BOTTOM,
    "fixative.hookimpl": BOTTOM,
    "fixative.metadata": BOTTOM,
    "fixative.fixative_client": BOTTOM,
    "fixative.models": BOTTOM,
    "fixative.load": STAGES,
    "fixative.targets": STAGES,
    "fixative.optimise": STAGES,
    "fixative.checks": STAGES,
    "fixative.save": STAGES,
    "fixative.api": API,
    "fixative.plugins": API,
    "fixative.hosts": HOSTS,
    "fixative.client": HOSTS,
    "fixative.__main__": HOSTS,
    "fixative": HOSTS,  # the package's face re-exports the API
}
STAGE_PACKAGES = (
    "fixative.load",
    "fixative.targets",
    "fixative.optimise",
    "fixative.checks",
    "fixative.save",
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def layer_of(name: str) -> int:
    best = max((k for k in LAYERS if name == k or name.startswith(k + ".")), key=len)
    return LAYERS[best]


def resolve(importer: str, is_package: bool, level: int, module: str | None) -> str:
    if level == 0:
        return module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _runtime_nodes(tree: ast.AST):
    """Every node except those under ``if TYPE_CHECKING:`` (annotations only: nothing is imported)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in ast.walk(child))
            continue
        yield node
        yield from _runtime_nodes(node)


def imports_of(name: str, path: Path) -> set[str]:
    """Every fixative module ``name`` imports, anywhere in the file (function-level imports too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            target = resolve(name, is_package, node.level, node.module)
            subs = {f"{target}.{alias.name}" for alias in node.names} & set(MODULES)
            found |= subs or {target}
            if subs != {f"{target}.{alias.name}" for alias in node.names}:
                found.add(target)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "." in node.value:
            found.add(node.value)  # __import__("fixative.hosts.cli.protect") and friends
    return {m for m in found if m in MODULES and m != name}  # (a string naming no module is dropped here)


GRAPH = {name: imports_of(name, path) for name, path in MODULES.items()}


def test_every_module_has_a_layer():
    assert all(layer_of(name) is not None for name in MODULES)


def test_imports_only_go_down():
    upward = [
        f"{a} (layer {layer_of(a)}) imports {b} (layer {layer_of(b)})"
        for a, targets in GRAPH.items()
        for b in targets
        if layer_of(b) > layer_of(a)
    ]
    assert not upward, "\n".join(upward)


def test_stages_never_import_hosts_or_the_plugin_manager():
    bad = [
        f"{a} imports {b}"
        for a, targets in GRAPH.items()
        if layer_of(a) <= STAGES
        for b in targets
        if b.startswith(("fixative.hosts", "fixative.plugins", "fixative.api"))
    ]
    assert not bad, "\n".join(bad)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
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


def test_no_import_circles_between_modules():
    assert not _cycles(GRAPH), _cycles(GRAPH)


def test_no_circles_between_stage_packages():
    def package(name: str) -> str:
        return next((p for p in STAGE_PACKAGES if name == p or name.startswith(p + ".")), name)

    packages: dict[str, set[str]] = {}
    for a, targets in GRAPH.items():
        for b in targets:
            if package(a) != package(b) and package(a) in STAGE_PACKAGES and package(b) in STAGE_PACKAGES:
                packages.setdefault(package(a), set()).add(package(b))
    assert not _cycles(packages), _cycles(packages)


def test_the_standard_library_client_imports_nothing_of_fixative():
    assert GRAPH["fixative.fixative_client"] == set()


def test_the_checker_sees_a_loop_when_there_is_one():
    """The test itself can fail: a made-up loop is found."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert resolve("fixative.checks.robustness", False, 2, "features") == "fixative.features"
    assert resolve("fixative.checks", True, 1, "purify") == "fixative.checks.purify"
