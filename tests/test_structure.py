"""The package's shape: every module imports on its own, imports go one way, every import is declared."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "fiftyone_ram"
FIRST_PARTY = {"fiftyone_ram", "operators", "zoo"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, module: str) -> list[tuple[str, list[str]]]:
    """(imported module, names taken from it) for every import statement, function-level ones included,
    except those under ``if TYPE_CHECKING:`` (never executed). Relative imports are made absolute."""
    found: list[tuple[str, list[str]]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package (a package's __init__ is its own package)
                package = module.split(".")
                if MODULES[module].name != "__init__.py":
                    package.pop()
                package = package[:len(package) - node.level + 1]
                base = ".".join(package + ([base] if base else []))
            found.append((base, [alias.name for alias in node.names]))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _graph() -> dict[str, set[str]]:
    """Edges between fiftyone_ram modules: ``from a import b`` points at ``a.b`` when that is a module,
    else at ``a``. Imports through ``importlib.import_module`` (the lazy package exports) are not seen."""
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        edges = graph.setdefault(name, set())
        for target, names in _imports(ast.parse(path.read_text(encoding="utf-8")), name):
            if target.split(".")[0] != "fiftyone_ram":
                continue
            submodules = [f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES]
            if submodules:
                edges.update(submodules)
            if len(submodules) < len(names) or not names:
                if target in MODULES:
                    edges.add(target)
        edges.discard(name)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
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

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph)))
    for v in sorted(graph):
        if v not in index:
            connect(v)
    return out


@pytest.mark.slow
def test_every_module_imports_on_its_own():
    """Each module, imported after every ``fiftyone_ram`` module is forgotten, imports on its own: no module
    depends on another having been imported first (the symptom of an import cycle: a partially initialised
    module). One interpreter: the third-party libraries load once, and each source is compiled once (as a
    ``.pyc`` would be: this machine's PYTHONDONTWRITEBYTECODE writes none), then run afresh for every module."""
    importable = [m for m in MODULES if not m.endswith(".__main__")]  # entry points run a program when imported
    script = f"""
import importlib, importlib.machinery, sys
compiled = {{}}
to_code = importlib.machinery.SourceFileLoader.source_to_code

def source_to_code(self, data, path, *args, **kwargs):
    key = (path, bytes(data))
    if key not in compiled:
        compiled[key] = to_code(self, data, path, *args, **kwargs)
    return compiled[key]

importlib.machinery.SourceFileLoader.source_to_code = source_to_code
others = set(sys.modules)  # modules that are not ours: kept
failed = []
for module in {importable!r}:
    for name in sys.modules.keys() - others:
        if name == "fiftyone_ram" or name.startswith("fiftyone_ram."):
            del sys.modules[name]
        else:
            others.add(name)
    try:
        importlib.import_module(module)
    except Exception as exc:
        failed.append(f"{{module}}: {{type(exc).__name__}}: {{exc}}")
print("\\n".join(failed))
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    failed = done.stdout.strip()
    assert not failed, "modules that do not import on their own:\n  " + failed.replace("\n", "\n  ")


def test_no_import_cycle_among_the_package_modules():
    cycles = _cycles(_graph())
    assert not cycles, "import cycles (function-level imports count, TYPE_CHECKING ones do not):\n  " + \
        "\n  ".join(" <-> ".join(c) for c in cycles)


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> set[str]:
    """The dependencies and the optional extras the shipped code imports (``ray``; not ``test``)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    specs = [*project["dependencies"], *project.get("optional-dependencies", {}).get("ray", [])]
    return {_canonical(re.split(r"[\s<>=!~;\[]", spec, maxsplit=1)[0]) for spec in specs}


def _third_party_imports() -> dict[str, set[str]]:
    """Top-level name -> files, over the shipped code (fiftyone_ram/, operators/, zoo/)."""
    out: dict[str, set[str]] = {}
    files = [p for folder in FIRST_PARTY for p in (ROOT / folder).rglob("*.py")]
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):  # TYPE_CHECKING imports too: they must be installable for type checkers
            if isinstance(node, ast.Import):
                tops = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                tops = [node.module.split(".")[0]]
            else:
                continue
            for top in tops:
                if top not in sys.stdlib_module_names and top not in FIRST_PARTY and top != "__future__":
                    out.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return out


def test_every_third_party_import_is_declared_and_every_dependency_used():
    distributions = importlib.metadata.packages_distributions()
    declared = _declared()
    imports = _third_party_imports()
    undeclared = []
    for top, files in sorted(imports.items()):
        providers = {_canonical(d) for d in distributions.get(top, [])}
        if not providers & declared:  # e.g. fiftyone.brain is FiftyOne's namespace: declared as fiftyone
            undeclared.append(f"{top} (distribution {', '.join(sorted(providers)) or '?'}) in {sorted(files)[0]}")
    assert not undeclared, "imported but not declared in pyproject.toml:\n  " + "\n  ".join(undeclared)
    used = {_canonical(d) for top in imports for d in distributions.get(top, [])}
    assert not declared - used, f"declared in pyproject.toml but never imported: {sorted(declared - used)}"


def test_layers_import_downwards_only():
    """``models/`` is pure torch (it knows no Tagger, FiftyOne or CLI); vocabularies are built from facts."""
    graph = _graph()
    models = {m for m in MODULES if m == "fiftyone_ram.models" or m.startswith("fiftyone_ram.models.")}
    for module in sorted(models):
        # facts, the error base and the lazy-export helper: no imports of theirs
        leaves = {"fiftyone_ram.upstream", "fiftyone_ram.errors", "fiftyone_ram.hub_models", "fiftyone_ram.lazy"}
        outside = {t for t in graph[module] if t not in models and t not in leaves}
        assert not outside, f"{module} imports {sorted(outside)}"
        tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
        tops = {target.split(".")[0] for target, _ in _imports(tree, module)}
        assert not tops & {"fiftyone", "click"}, f"{module} imports {sorted(tops & {'fiftyone', 'click'})}"
    for module in sorted(m for m in MODULES if m.split(".")[:2] == ["fiftyone_ram", "vocabulary"]):
        assert "fiftyone_ram.tagger" not in graph[module], f"{module} imports the Tagger"
