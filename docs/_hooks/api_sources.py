"""mkdocs hook: gather every package's ``src/plait`` into one tree for mkdocstrings.

plait is one import package split over several distributions: ``plait-core`` owns
``plait/__init__.py`` (which extends ``__path__``), and each plugin ships only
``plait/<name>/``. Python merges them at import time; griffe's static loader reads one
directory per package and would find only core's. So, before the build, this hook
copies ``packages/core/src/plait`` and every ``packages/*/src/plait/<name>`` into
``build/docs-api/plait``, the one path the ``mkdocstrings`` handler is given
(``mkdocs.yml``), and asks ``mkdocs serve`` to watch the package sources.

The copies differ from the sources in two cosmetic respects: a Google-style ``Example:``
heading becomes ``Examples:``, the spelling griffe parses as a section of code examples
(it renders a singular ``Example:`` as a plain admonition, so ``>>>`` lines and their
output would be read as markdown); and Sphinx roles such as ``:func:`name``` become plain
code spans ```name``` (markdown has no roles).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.plugins import event_priority

API_SOURCES = Path("build") / "docs-api"
_EXAMPLE_HEADING = re.compile(r"^(\s*)Example:[ \t]*$", re.MULTILINE)
_SPHINX_ROLE = re.compile(r":(?:func|class|meth|mod|data|attr|exc|obj):`~?([^`]+)`")


def gather(root: Path) -> Path:
    """Copy the ``plait`` sources of every package under ``root/packages`` into one tree.

    Returns: the directory holding the merged ``plait`` package.
    """
    target = root / API_SOURCES
    if target.exists():
        shutil.rmtree(target)
    merged = target / "plait"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(root / "packages" / "core" / "src" / "plait", merged, ignore=ignore)
    for package in sorted((root / "packages").glob("*/src/plait")):
        if package.parent.parent.name == "core":
            continue
        for sub in sorted(package.iterdir()):
            if sub.is_dir() and sub.name != "__pycache__":
                shutil.copytree(sub, merged / sub.name, ignore=ignore)
    for module in merged.rglob("*.py"):
        text = module.read_text(encoding="utf-8")
        fixed = _SPHINX_ROLE.sub(r"`\1`", _EXAMPLE_HEADING.sub(r"\1Examples:", text))
        if fixed != text:
            module.write_text(fixed, encoding="utf-8")
    return target


@event_priority(100)  # before mkdocstrings collects anything
def on_config(config: MkDocsConfig, **_: Any) -> MkDocsConfig:
    root = Path(config.config_file_path).resolve().parent
    gather(root)
    for package in sorted((root / "packages").glob("*/src")):
        config.watch.append(str(package))
    return config
