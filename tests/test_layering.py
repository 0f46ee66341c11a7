"""The package's layering, checked statically from the source (no imports executed).

- The configuration layer (``recipe/``, ``registry``, ``errors``, ``results``) imports no
  component, not even inside a function: components are reached through the registries.
- The module-level imports between the package's own modules form no cycle.
- ``import embedforensics`` loads none of the heavy libraries.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "embedforensics"
CONFIG_LAYER = ("embedforensics.recipe", "embedforensics.registry", "embedforensics.errors",
                "embedforensics.results")


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(name: str, path: Path, *, module_level_only: bool) -> set[str]:
    """The package modules ``name`` imports (TYPE_CHECKING blocks excluded)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))

    def walk(nodes: list[ast.stmt]) -> set[str]:
        found: set[str] = set()
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                found.add(base)
                found |= {f"{base}.{a.name}" for a in node.names}
            elif not module_level_only:
                found |= walk([c for c in ast.iter_child_nodes(node)
                               if isinstance(c, ast.stmt)])
            if module_level_only and isinstance(node, ast.If):
                found |= walk(node.body + node.orelse)
            if module_level_only and isinstance(node, ast.Try):
                found |= walk(node.body)
        return found

    return {m for m in walk(tree.body) if m.startswith("embedforensics")}


def test_the_configuration_layer_imports_no_component() -> None:
    modules = _modules()
    offenders = {}
    for name, path in modules.items():
        if not name.startswith(CONFIG_LAYER):
            continue
        bad = sorted(m for m in _imports(name, path, module_level_only=False)
                     if m in modules and not m.startswith(CONFIG_LAYER))
        if bad:
            offenders[name] = bad
    assert not offenders, offenders


def test_no_import_cycles_between_modules() -> None:
    modules = _modules()
    graph = {name: {m for m in _imports(name, path, module_level_only=True)
                    if m in modules and m != name} for name, path in modules.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert not cycles, cycles


def test_import_embedforensics_stays_light() -> None:
    code = ("import sys, embedforensics, embedforensics.registry, embedforensics.recipe; "
            "print(sorted(m for m in ('torch', 'transformers', 'sklearn', 'datasets') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
