"""The architecture's rules, checked on the sources.

* No module of a plait package imports a private module or private name of *another* plait
  package (``plait._plugins``, ``plait.control_flow._step``, ``from plait import _x``):
  packages talk through public names and hooks only.
* plait-enum's modules import in a straight line: the graph of their imports of each other
  has no cycle, and each imports first, alone, in a fresh interpreter.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ROOT / "packages"


def _owner(module: str) -> str:
    """The plait package that owns an importable module name (``"core"`` for ``plait``)."""
    parts = module.split(".")
    if parts[0] != "plait" or len(parts) == 1:
        return "core"
    sub = parts[1]
    plugin_dirs = {
        p.name for p in PACKAGES.glob("*/src/plait/*") if p.is_dir() and not p.name.startswith("_")
    }
    return sub if sub in plugin_dirs and sub != "kernels" else "core"


def _module_name(path: Path) -> str:
    src = next(parent for parent in path.parents if parent.name == "src")
    relative = path.relative_to(src).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> list[Path]:
    return sorted(p for p in PACKAGES.glob("*/src/plait/**/*.py"))


def _imports(path: Path) -> list[tuple[int, str, str | None]]:
    """``(line, module, name)`` for every import in a file (``name`` for ``from`` imports)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = _module_name(path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    found: list[tuple[int, str, str | None]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name, None) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            found.extend((node.lineno, module, alias.name) for alias in node.names)
    return found


def _private(module: str, name: str | None) -> bool:
    parts = module.split(".")
    if any(part.startswith("_") and not part.startswith("__") for part in parts):
        return True
    return name is not None and name.startswith("_") and not name.startswith("__")


def test_no_package_imports_another_packages_private_names() -> None:
    offences = []
    for path in _sources():
        own = _owner(_module_name(path))
        for line, module, name in _imports(path):
            if not module.startswith("plait"):
                continue
            target = f"{module}.{name}" if name else module
            owner = _owner(target if name and not module.endswith(name) else module)
            if owner == own or not _private(module, name):
                continue
            offences.append(f"{path.relative_to(ROOT)}:{line}: {target} (owned by {owner})")
    assert not offences, "imports of another package's private names:\n" + "\n".join(offences)


ENUM = PACKAGES / "enum" / "src" / "plait" / "enum"


def _enum_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(ENUM.glob("_*.py")):
        name = f"plait.enum.{path.stem}"
        deps = set()
        for _, module, imported in _imports(path):
            target = module if module.startswith("plait.enum._") else f"{module}.{imported}"
            if target.startswith("plait.enum._") and target.count(".") == 2:
                deps.add(target)
        graph[name] = deps - {name}
    return graph


def test_enum_modules_import_each_other_without_a_cycle() -> None:
    graph = _enum_graph()
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> None:
        if node in done:
            return
        assert node not in path, "import cycle: " + " -> ".join([*path, node])
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            visit(dep)
        path.pop()
        done.add(node)

    for node in graph:
        visit(node)


@pytest.mark.slow  # a fresh interpreter
def test_each_enum_module_imports_first_in_a_fresh_interpreter() -> None:
    # In one fresh interpreter, each module in turn is imported with every plait.enum
    # module unloaded and plait.enum's __init__ (which imports every module) replaced by
    # an empty package, so the module is truly the first of plait-enum to load, pulling in
    # only what it imports; a cycle would stop it on a partially initialised module.
    # (Other packages stay loaded between modules: only plait-enum's order is tested.)
    modules = sorted(_enum_graph())
    code = (
        "import importlib, sys, traceback, types\n"
        "import plait\n"
        f"for module in {modules!r}:\n"
        "    for name in [n for n in sys.modules if n.split('.')[:2] == ['plait', 'enum']]:\n"
        "        del sys.modules[name]\n"
        "    package = types.ModuleType('plait.enum')\n"
        f"    package.__path__ = [{str(ENUM)!r}]\n"
        "    sys.modules['plait.enum'] = package\n"
        "    try:\n"
        "        importlib.import_module(module)\n"
        "    except Exception as error:\n"
        "        print('FAILED', module, repr(error))\n"
        "    else:\n"
        "        print('ok', module)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    failed = [line for line in lines if line.startswith("FAILED")]
    assert not failed, f"modules that do not import first, alone: {failed}"
    assert sorted(line.split()[1] for line in lines if line.startswith("ok")) == modules
