"""The CLI package's shape: every ``fiftyone_ram.cli.*`` module imports on its own (no import cycle, no
``__main__`` trick), ``python -m fiftyone_ram.cli`` works, and starting it imports neither torch nor FiftyOne."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import fiftyone_ram.cli as cli_package

CLI_DIR = Path(cli_package.__file__).parent
MODULES = sorted(f"fiftyone_ram.cli.{m.name}" for m in pkgutil.iter_modules([str(CLI_DIR)]) if m.name != "__main__")
COMMANDS = ["benchmark", "clean", "compare", "evaluate", "finetune", "generate", "models", "parse-captions", "pipeline",
            "tag"]


def _python(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120)


#: The leaves every command module may import: the shared tagger options and the options built from the jobs.
LEAVES = {"fiftyone_ram.cli.options", "fiftyone_ram.cli.settings"}


def test_the_command_modules_are_all_found():
    assert MODULES == [f"fiftyone_ram.cli.{name}" for name in
                       ("compare", "engine", "evaluate", "export", "finetune", "labels", "models", "options",
                        "pipeline", "settings",
                        "tag")]


@pytest.mark.slow
def test_each_module_imports_alone_and_without_the_heavy_libraries():
    """In one interpreter: each module imported after every ``fiftyone_ram`` module is forgotten (so none relies
    on another imported first), and starting the CLI imports neither torch nor FiftyOne (they load inside the
    commands). ``import a.b as m`` must give the module, not a command of that name."""
    heavy = ("torch", "fiftyone", "transformers", "timm")
    script = f"""
import importlib, sys
for module in {["fiftyone_ram.cli", *MODULES]!r}:
    for name in [n for n in sys.modules if n == "fiftyone_ram" or n.startswith("fiftyone_ram.")]:
        del sys.modules[name]
    m = importlib.import_module(module)
    assert m.__name__ == module, m
print(" ".join(m for m in {heavy!r} if m in sys.modules))
"""
    done = _python("-c", script)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def _cli_imports(module: str) -> set[str]:
    """The ``fiftyone_ram.cli`` modules that ``module``'s source imports (at any depth of the file)."""
    path = CLI_DIR / (module.rsplit(".", 1)[-1] + ".py") if module != "fiftyone_ram.cli" else CLI_DIR / "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{module}: relative import"
            found |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return {name for name in found if name in MODULES}


def test_imports_run_one_way_options_commands_package():
    """``options`` and ``settings`` are leaves, command modules import only them of the CLI, the package imports
    the command modules."""
    assert _cli_imports("fiftyone_ram.cli.settings") == set()
    assert _cli_imports("fiftyone_ram.cli.options") <= {"fiftyone_ram.cli.settings"}
    for module in set(MODULES) - LEAVES:
        assert _cli_imports(module) <= LEAVES, module
    commands = set(MODULES) - LEAVES
    assert _cli_imports("fiftyone_ram.cli") - LEAVES == commands  # (and the error type)


def test_python_dash_m_lists_every_command():
    done = _python("-m", "fiftyone_ram.cli", "--help")
    assert done.returncode == 0, done.stderr
    listed = done.stdout.split("Commands:", 1)[1].split()
    assert all(command in listed for command in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    from click.testing import CliRunner

    from fiftyone_ram.cli import main

    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0, result.output


def test_model_names_come_from_the_registry():
    """No released model's name is typed out in the CLI: help texts and choices read the registry."""
    from fiftyone_ram.models.registry import DEFAULT_VARIANT, default_cfgs

    sources = {path.name: path.read_text() for path in CLI_DIR.glob("*.py")}
    typed = [(file, name) for file, text in sources.items() for name in default_cfgs if name in text]
    assert typed == []
    done = _python("-m", "fiftyone_ram.cli", "tag", "--help")
    assert all(name in done.stdout for name in default_cfgs) and f"default: {DEFAULT_VARIANT}" in " ".join(
        done.stdout.split())
