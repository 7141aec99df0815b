"""The package's modules import each other without cycles.

Read from the source: each module's imports of its siblings, at module level
and inside functions (a function-level import is how a cycle hides).  The
graph must be acyclic, and every module must import alone in a fresh
interpreter.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import pyramid_dbrouter

PACKAGE = Path(pyramid_dbrouter.__file__).parent
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")


def sibling_imports(module):
    """``{(sibling, lineno, at_module_level)}`` of *module*'s imports."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    top = {id(node) for node in tree.body}
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names = [node.module] if node.module else [a.name for a in node.names]
            for name in names:
                found.add((name.split(".")[0], node.lineno, id(node) in top))
    return found


def test_no_module_imports_a_sibling_inside_a_function():
    hidden = [
        f"{module}.py:{line} imports {sibling}"
        for module in MODULES
        for sibling, line, at_top in sibling_imports(module)
        if not at_top
    ]
    assert hidden == []


def test_the_import_graph_has_no_cycle():
    graph = {
        m: {s for s, _l, _t in sibling_imports(m) if s in MODULES} for m in MODULES
    }
    visiting, done, cycles = set(), set(), []

    def visit(module, path):
        if module in visiting:
            cycles.append(path[path.index(module) :] + [module])
            return
        if module in done:
            return
        visiting.add(module)
        for sibling in sorted(graph[module]):
            visit(sibling, [*path, module])
        visiting.discard(module)
        done.add(module)

    for module in MODULES:
        visit(module, [])
    assert cycles == []


@pytest.mark.parametrize("module", MODULES)
def test_each_module_imports_alone(module):
    result = subprocess.run(
        [sys.executable, "-c", f"import pyramid_dbrouter.{module}"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
