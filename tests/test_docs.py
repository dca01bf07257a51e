"""Every ```python block of every documentation page runs, so the docs cannot rot.

The blocks of one page run in order in one fresh namespace (a later block may use what
an earlier one defined), from the repository root. A ``--8<-- "path"`` line (a
pymdownx.snippets include, as the built site shows it) runs the file it names.

A page names the packages it needs in an HTML comment, ``<!-- requires: plait.enum
plait.infer -->``, at its top (for the whole page) or before a later section (for the
blocks from there on, e.g. an optional extra such as ``arviz``). When one of them is not
installed, the page is skipped from that block on (the blocks before it have run);
nothing else is skipped.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import textwrap
import types
from pathlib import Path
from typing import NamedTuple

import pytest

pytestmark = pytest.mark.slow  # the executed docs (deselect with -m "not slow")

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))

_FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
_SNIPPET = re.compile(r"""^[ \t]*--8<--[ \t]+["'](?P<path>[^"']+)["'][ \t]*$""", re.MULTILINE)
_REQUIRES = re.compile(r"<!--\s*requires:\s*(?P<modules>[^>]*?)\s*-->")


class Block(NamedTuple):
    """One ``python`` block of a page."""

    line: int  # the line of the page its first line is on
    source: str
    requires: tuple[str, ...]  # modules named by the requires comments above it


def python_blocks(text: str) -> list[Block]:
    """The ``python`` fenced blocks of a markdown page, with snippets included."""
    comments = [(m.start(), tuple(m["modules"].split())) for m in _REQUIRES.finditer(text)]
    blocks = []
    for match in _FENCE.finditer(text):
        info = match["info"].strip().split()
        if not info or info[0] not in ("python", "py"):
            continue
        line = text.count("\n", 0, match.start("body")) + 1
        body = _SNIPPET.sub(lambda m: (ROOT / m["path"]).read_text(encoding="utf-8"), match["body"])
        requires = tuple(name for at, names in comments if at < match.start() for name in names)
        blocks.append(Block(line, textwrap.dedent(body), requires))
    return blocks


def _missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except ModuleNotFoundError:  # a parent package is missing
        return True


def test_pages_are_found_and_have_code() -> None:
    names = {page.relative_to(DOCS).as_posix() for page in PAGES}
    assert {"index.md", "primitives-and-handlers.md", "porting.md", "plugins.md"} <= names
    assert sum(bool(python_blocks(page.read_text(encoding="utf-8"))) for page in PAGES) >= 8


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(DOCS).as_posix() for p in PAGES])
def test_page_code_runs(page: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = python_blocks(page.read_text(encoding="utf-8"))
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "path", list(sys.path))
    # A real module, so that dataclasses and pickling can find the page's namespace.
    module = types.ModuleType(f"docs_{page.stem.replace('-', '_')}")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    for block in blocks:
        missing = [name for name in block.requires if _missing(name)]
        if missing:
            pytest.skip(
                f"{page.name} from line {block.line} documents {', '.join(missing)}, "
                "which is not installed"
            )
        # Pad with blank lines so that tracebacks point at the line in the page.
        code = compile("\n" * (block.line - 1) + block.source, str(page), "exec")
        exec(code, module.__dict__)
