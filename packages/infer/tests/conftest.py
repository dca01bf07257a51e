"""Fixtures of plait-infer's tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import jax.monitoring
import pytest

_COMPILES: list[list[str]] = []


def _on_event(name: str, duration: float, **_: object) -> None:
    if name == "/jax/core/compile/backend_compile_duration":
        for record in _COMPILES:
            record.append(name)


jax.monitoring.register_event_duration_secs_listener(_on_event)


@contextmanager
def _counting() -> Iterator[list[str]]:
    record: list[str] = []
    _COMPILES.append(record)
    try:
        yield record
    finally:
        _COMPILES.remove(record)


@pytest.fixture
def count_compiles() -> Callable[[], object]:
    """``with count_compiles() as compiles: ...``; ``len(compiles)`` XLA compilations ran."""
    return _counting
