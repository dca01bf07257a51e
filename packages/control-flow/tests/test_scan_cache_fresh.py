"""The compile cache never serves a stale result: every way a Python value can reach a
scan body, changed between two un-jitted calls, is seen by the second call (the issue's
list: globals, closures, class and instance attributes, properties, dict and list entries,
in-place mutated NumPy arrays, jax arrays held on classes, ``functools.partial``).

Each case runs a seeded scan, changes the value, runs again, and compares with the same
call with the cache off (the reference) and with the first result (it must have moved).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

from plait import sample
from plait.control_flow import scan, scan_cache_info, set_scan_cache
from plait.handlers import seed, trace

SHIFT = 0.0
SHIFT_ARRAY = jnp.zeros(3)


def _draws(shift_of: Callable[[], Any]) -> Any:
    def model() -> Any:
        def step(x: Any, _: Any) -> Any:
            return sample("x", dist.Normal(x + shift_of(), 0.1)), None

        return scan(step, jnp.zeros(3), None, length=4)

    return trace(seed(model, rng_seed=0)).get_trace()["x"].value


def _uncached(fn: Callable[[], Any]) -> Any:
    previous = set_scan_cache(False)
    try:
        return fn()
    finally:
        set_scan_cache(previous)


def _check_fresh(read: Callable[[], Any], change: Callable[[], None]) -> None:
    before = _draws(read)
    change()
    after = _draws(read)
    np.testing.assert_array_equal(after, _uncached(lambda: _draws(read)))
    assert float(jnp.min(after - before)) > 20.0  # every step moved by the new shift
    assert scan_cache_info().uncacheable == 0


class Config:
    loc = 0.0
    loc_array = jnp.zeros(3)


class Holder:
    def __init__(self) -> None:
        self.value = 0.0
        self._hidden = jnp.zeros(3)

    @property
    def shift(self) -> Any:
        return self._hidden


def test_global_scalar() -> None:
    global SHIFT

    def change() -> None:
        global SHIFT
        SHIFT = 30.0

    try:
        _check_fresh(lambda: SHIFT, change)
    finally:
        SHIFT = 0.0


def test_global_array() -> None:
    global SHIFT_ARRAY

    def change() -> None:
        global SHIFT_ARRAY
        SHIFT_ARRAY = jnp.full(3, 30.0)

    try:
        _check_fresh(lambda: SHIFT_ARRAY, change)
    finally:
        SHIFT_ARRAY = jnp.zeros(3)


def test_closure_cell() -> None:
    shift = 0.0

    def change() -> None:
        nonlocal shift
        shift = 30.0

    _check_fresh(lambda: shift, change)


@pytest.mark.parametrize("attribute", ["loc", "loc_array"])
def test_class_attribute(attribute: str) -> None:
    original = getattr(Config, attribute)
    try:
        _check_fresh(
            lambda: getattr(Config, attribute),
            lambda: setattr(Config, attribute, original + 30.0),
        )
    finally:
        setattr(Config, attribute, original)


def test_instance_attribute() -> None:
    holder = Holder()
    _check_fresh(lambda: holder.value, lambda: setattr(holder, "value", 30.0))


def test_property() -> None:
    holder = Holder()
    _check_fresh(lambda: holder.shift, lambda: setattr(holder, "_hidden", jnp.full(3, 30.0)))


def test_dict_entry() -> None:
    table = {"shift": 0.0}
    _check_fresh(lambda: table["shift"], lambda: table.update(shift=30.0))


def test_list_entry() -> None:
    entries = [jnp.zeros(3)]
    _check_fresh(lambda: entries[0], lambda: entries.__setitem__(0, jnp.full(3, 30.0)))


@pytest.mark.parametrize("size", [3, 200_000])
def test_numpy_array_mutated_in_place(size: int) -> None:
    array = np.zeros(size, np.float32)

    def change() -> None:
        array[:] = 30.0

    _check_fresh(lambda: array[:3], change)


def test_functools_partial() -> None:
    def shifted(shift: float) -> float:
        return shift

    read: list[Any] = [functools.partial(shifted, 0.0)]
    _check_fresh(lambda: read[0](), lambda: read.__setitem__(0, functools.partial(shifted, 30.0)))


def test_unchanged_model_hits() -> None:
    holder = Holder()
    _draws(lambda: holder.shift)
    _draws(lambda: holder.shift)
    info = scan_cache_info()
    assert (info.hits, info.misses) == (1, 1)
