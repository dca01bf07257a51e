"""Helpers for the scan tests: a log joint, and ``scan`` unrolled into a Python loop.

The unrolled loop is the reference every scan model is checked against: the same body,
run step by step under ``scope(prefix=f"{tag}{t}")``, so step ``t``'s site ``x`` is named
``f"{tag}{t}/x"``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import pytest

from plait import Trace
from plait.control_flow import scan_cache_clear
from plait.handlers import scope


def _log_joint(tr: Trace) -> jax.Array:
    """Sum over sample sites of ``scale * fn.log_prob(value)``."""
    total = jnp.zeros(())
    for site in tr.values():
        if site.type == "sample":
            lp = site.fn.log_prob(site.value)
            if site.scale is not None:
                lp = site.scale * lp
            total = total + jnp.sum(lp)
    return total


def _unrolled_scan(tag: str) -> Callable[..., Any]:
    """A drop-in ``scan`` that runs a Python loop, step ``t`` under scope ``f"{tag}{t}"``."""

    def scan(f: Any, init: Any, xs: Any, length: int | None = None, reverse: bool = False) -> Any:
        leaves = jax.tree_util.tree_leaves(xs)
        T = int(leaves[0].shape[0]) if leaves else length
        assert T is not None
        carry, ys = init, [None] * T
        for t in reversed(range(T)) if reverse else range(T):
            x = jax.tree_util.tree_map(lambda a, t=t: a[t], xs)
            with scope(prefix=f"{tag}{t}"):
                carry, ys[t] = f(carry, x)
        return carry, jax.tree_util.tree_map(lambda *a: jnp.stack(a), *ys)

    return scan


def _per_step(data: Mapping[str, Any], tag: str, length: int) -> dict[str, Any]:
    """``{"x": X}`` stacked over time -> ``{"{tag}0/x": X[0], ...}`` for the unrolled loop."""
    return {f"{tag}{t}/{name}": value[t] for name, value in data.items() for t in range(length)}


@pytest.fixture(autouse=True)
def _fresh_scan_cache() -> None:
    scan_cache_clear()


@pytest.fixture
def log_joint() -> Callable[[Trace], jax.Array]:
    return _log_joint


@pytest.fixture
def unrolled() -> Callable[[str], Callable[..., Any]]:
    return _unrolled_scan


@pytest.fixture
def per_step() -> Callable[[Mapping[str, Any], str, int], dict[str, Any]]:
    return _per_step
