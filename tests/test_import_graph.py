"""The package's import graph, read from the source (ast, every import statement, also inside functions):
no cycle between modules, no import of a higher layer from a lower one, and a light ``losses`` package."""

import ast
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Set

PACKAGE = Path(__file__).resolve().parents[1] / "stica_slowfast"

# Layers, lowest first: a module may import its own layer's and lower layers' modules only. The
# registries are filled lazily (registry.py names the modules that register; it imports them by name).
LAYERS = [
    {"utils"},
    {"config", "registry", "layers", "losses"},
    {"checkpoint", "data"},
    {"models", "synthetic"},
    {"interop"},
    {"engine"},
]
# Same-layer edges that are forbidden too.
FORBIDDEN = {("layers", "config"), ("layers", "registry"), ("losses", "config"), ("losses", "registry"),
             ("synthetic", "models")}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, modules: Set[str]) -> Set[str]:
    """The package modules ``path`` imports (relative imports resolved): ``from pkg import name`` is
    the module ``pkg.name`` when there is one, else ``pkg`` itself (a symbol of its ``__init__``)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {m for m in found if m in modules and m != name}


def _graph() -> Dict[str, Set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: _imports(path, set(modules)) for name, path in modules.items()}


def _layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return ""  # the package's __init__: above everything
    return parts[1] if len(parts) > 2 or (PACKAGE / parts[1]).is_dir() else parts[1].removesuffix(".py")


def _rank(layer: str) -> int:
    for i, layers in enumerate(LAYERS):
        if layer in layers:
            return i
    return len(LAYERS)  # the package's __init__ and any top-level module not listed


def test_every_subpackage_has_a_layer():
    tops = {p.name if p.is_dir() else p.stem for p in PACKAGE.iterdir()
            if (p.is_dir() and (p / "__init__.py").exists()) or (p.suffix == ".py" and p.stem != "__init__")}
    assert tops <= set().union(*LAYERS), tops - set().union(*LAYERS)


def test_no_upward_or_forbidden_import():
    bad = []
    for module, targets in _graph().items():
        for target in targets:
            a, b = _layer(module), _layer(target)
            if a == b or not a:
                continue
            if _rank(b) > _rank(a) or (a, b) in FORBIDDEN:
                bad.append(f"{module} -> {target}")
    assert not bad, "\n".join(sorted(bad))


def _cycle(graph: Dict[str, Set[str]]) -> List[str]:
    state: Dict[str, int] = {}
    stack: List[str] = []

    def visit(node: str) -> List[str]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


def test_no_cycle_between_modules():
    # A module importing a symbol of its own package's __init__ is a cycle (the __init__ imports it);
    # importing a sibling module by "from . import mod" is not, and is read as an edge to mod.
    assert _cycle(_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]


def test_losses_import_neither_pyav_nor_the_data_pipeline():
    # As installed without PySlowFast (with it, importing the package registers everything into it).
    code = ("import sys; sys.modules['slowfast'] = None; import stica_slowfast.losses; "
            "bad = [m for m in sys.modules if m == 'av' or m.startswith(('stica_slowfast.data', 'stica_slowfast.models'))]; "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
