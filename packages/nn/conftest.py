"""Skip the docstring examples of an adapter whose library is not installed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_SOURCES = Path(__file__).parent / "src" / "plait" / "nn"
_EXTRAS = {_SOURCES / "_flax.py": "flax", _SOURCES / "_equinox.py": "equinox"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Called with every collected item of the session; only our adapters' doctests match.
    for item in items:
        library = _EXTRAS.get(item.path)
        if library is not None and importlib.util.find_spec(library) is None:
            item.add_marker(pytest.mark.skip(reason=f"{library} is not installed"))
