"""The compile cache of un-jitted ``scan`` calls: hits when the model is unchanged, and
never a stale value when anything the body reads has changed."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

from plait import sample
from plait.control_flow import _loop as loop_module
from plait.control_flow import scan, scan_cache_info, set_scan_cache
from plait.handlers import replay, seed, substitute, trace

GLOBAL_SHIFT = jnp.zeros(3)


def walk(y: Any, noise: Any) -> Any:
    def step(x: Any, y_t: Any) -> Any:
        x = sample("x", dist.Normal(x + GLOBAL_SHIFT, noise))
        sample("y", dist.Normal(x, 1.0), obs=y_t)
        return x, x

    return scan(step, jnp.zeros(3), y)


Y = jnp.arange(12.0).reshape(4, 3)


def uncached(fn: Any) -> Any:
    previous = set_scan_cache(False)
    try:
        return fn()
    finally:
        set_scan_cache(previous)


def draws(noise: Any = 1.0, key: int = 0, model: Any = walk) -> Any:
    return trace(seed(model, rng_seed=key)).get_trace(Y, noise)["x"].value


def test_second_call_reuses_the_compiled_loop() -> None:
    first = draws(key=0)
    second = draws(key=1)
    info = scan_cache_info()
    assert (info.misses, info.hits, info.size) == (1, 1, 1)
    np.testing.assert_array_equal(first, uncached(lambda: draws(key=0)))
    np.testing.assert_array_equal(second, uncached(lambda: draws(key=1)))


def test_changed_closure_array_is_not_stale() -> None:
    draws(noise=jnp.asarray(1.0))
    small = draws(noise=jnp.asarray(1e-3))
    assert scan_cache_info().hits == 1
    np.testing.assert_array_equal(small, uncached(lambda: draws(noise=jnp.asarray(1e-3))))


def test_changed_static_scalar_is_not_stale() -> None:
    draws(noise=1.0)
    other = draws(noise=2.0)
    info = scan_cache_info()
    assert info.misses + info.hits == 2 and info.uncacheable == 0
    np.testing.assert_array_equal(other, uncached(lambda: draws(noise=2.0)))


def test_changed_literal_recompiles() -> None:
    def model(shift: float) -> Any:
        def step(x: Any, _: Any) -> Any:
            return sample("x", dist.Normal(x + shift, 1.0)), None  # shift: a jaxpr literal

        return scan(step, jnp.zeros(3), None, length=4)

    first = trace(seed(model, rng_seed=0)).get_trace(0.0)["x"].value
    moved = trace(seed(model, rng_seed=0)).get_trace(25.0)["x"].value
    assert scan_cache_info().misses == 2
    np.testing.assert_allclose(moved, first + 25.0 * jnp.arange(1, 5)[:, None], rtol=1e-5)


def test_changed_global_array_is_not_stale() -> None:
    global GLOBAL_SHIFT
    before = draws()
    try:
        GLOBAL_SHIFT = jnp.zeros(3) + 100.0
        after = draws()
        assert scan_cache_info().hits == 1
        np.testing.assert_array_equal(after, uncached(draws))
        assert not np.allclose(before, after)
    finally:
        GLOBAL_SHIFT = jnp.zeros(3)


def test_changed_substitute_data_is_not_stale() -> None:
    def run(x: Any) -> Any:
        return trace(substitute(walk, data={"x": x})).get_trace(Y, 1.0)["x"].fn.loc

    run(jnp.zeros((4, 3)))
    loc = run(jnp.ones((4, 3)))
    assert scan_cache_info().hits == 1
    np.testing.assert_array_equal(loc[1:], np.ones((3, 3)))


def test_changed_replayed_trace_is_not_stale() -> None:
    def run(key: int) -> Any:
        guide_trace = trace(seed(walk, rng_seed=key)).get_trace(Y, 1.0)
        return guide_trace, trace(replay(walk, trace=guide_trace)).get_trace(Y, 1.0)

    run(0)
    guide_trace, model_trace = run(1)
    np.testing.assert_array_equal(model_trace["x"].value, guide_trace["x"].value)


def test_changed_object_attribute_is_not_stale() -> None:
    class Config:
        def __init__(self, shift: Any) -> None:
            self.shift = shift

    class Slotted:
        __slots__ = ("shift",)

        def __init__(self, shift: Any) -> None:
            self.shift = shift

    config = Config(jnp.zeros(()))
    slotted = Slotted(jnp.zeros(()))

    def model(y: Any, noise: Any) -> Any:
        def step(x: Any, y_t: Any) -> Any:
            x = sample("x", dist.Normal(x + config.shift + slotted.shift, noise))
            return x, x

        return scan(step, jnp.zeros(3), y)

    draws(model=model)
    config.shift = jnp.asarray(50.0)
    slotted.shift = jnp.asarray(50.0)
    shifted = draws(model=model)
    np.testing.assert_array_equal(shifted, uncached(lambda: draws(model=model)))
    assert float(shifted.min()) > 70.0


def test_body_needing_concrete_values_is_cached_and_fresh() -> None:
    def model(y: Any, noise: Any) -> Any:
        scale = float(noise)  # needs a concrete closure value

        def step(x: Any, y_t: Any) -> Any:
            return sample("x", dist.Normal(x, float(noise) * scale)), None

        return scan(step, jnp.zeros(3), y)

    a = draws(jnp.asarray(0.5), model=model)
    b = draws(jnp.asarray(0.5), model=model)
    np.testing.assert_array_equal(a, b)
    info = scan_cache_info()
    assert (info.hits, info.misses, info.uncacheable) == (1, 1, 0)
    wide = draws(jnp.asarray(3.0), model=model)
    np.testing.assert_array_equal(wide, uncached(lambda: draws(jnp.asarray(3.0), model=model)))
    assert not np.allclose(a, wide)


def test_calls_under_jit_bypass_the_cache() -> None:
    def run(key: Any) -> Any:
        return trace(seed(walk, rng_seed=key)).get_trace(Y, 1.0)["x"].value

    key = jax.random.key(3)
    np.testing.assert_array_equal(jax.jit(run)(key), uncached(lambda: run(key)))
    assert scan_cache_info().hits == 0 and scan_cache_info().misses == 0


def test_new_shapes_compile_a_new_loop() -> None:
    trace(seed(walk, rng_seed=0)).get_trace(Y, 1.0)
    tr = trace(seed(walk, rng_seed=0)).get_trace(jnp.zeros((6, 3)), 1.0)
    assert tr["x"].value.shape == (6, 3) and scan_cache_info().misses == 2


@pytest.mark.parametrize("fed_back", [False, True])
def test_vectorised_and_sequential_loops_agree(
    fed_back: bool, monkeypatch: pytest.MonkeyPatch, log_joint: Any
) -> None:
    if fed_back:  # force the sequential loop
        monkeypatch.setattr(loop_module, "_carry_is_fed_back", lambda closed, n: True)
    x = jnp.sin(jnp.arange(12.0)).reshape(4, 3)
    tr = trace(substitute(walk, data={"x": x})).get_trace(Y, 0.7)
    prev = jnp.concatenate([jnp.zeros((1, 3)), x[:-1]])
    expected = dist.Normal(prev, 0.7).log_prob(x).sum() + dist.Normal(x, 1.0).log_prob(Y).sum()
    np.testing.assert_allclose(log_joint(tr), expected, rtol=1e-6)


class Walker:
    def __init__(self, drift: Any) -> None:
        self.drift = drift

    def step(self, x: Any, _: Any, scale: Any = 1.0) -> Any:
        x = sample("x", dist.Normal(x + self.drift, scale))
        return x, x


def test_partials_bound_methods_and_defaults_are_not_stale() -> None:
    def run(drift: Any, scale: Any, use_partial: bool) -> Any:
        walker = Walker(drift)
        body = functools.partial(walker.step, scale=scale) if use_partial else walker.step

        def model(y: Any, noise: Any) -> Any:
            return scan(body, jnp.zeros(3), y)

        return trace(seed(model, rng_seed=0)).get_trace(Y, 1.0)["x"].value

    for use_partial in (False, True):
        run(jnp.asarray(0.0), jnp.asarray(1.0), use_partial)
        moved = run(jnp.asarray(30.0), jnp.asarray(0.01), use_partial)
        assert scan_cache_info().hits >= 1
        expected = uncached(lambda u=use_partial: run(jnp.asarray(30.0), jnp.asarray(0.01), u))
        np.testing.assert_array_equal(moved, expected)
        assert float(moved.min()) > 25.0


def test_large_numpy_constants_are_arguments_not_keys() -> None:
    big = np.zeros((4, 70_000), np.float32)

    def model(y: Any, noise: Any) -> Any:
        def step(x: Any, y_t: Any) -> Any:
            x = sample("x", dist.Normal(x + big[0, :3], 1.0))  # a closed-over NumPy array
            return x, None

        return scan(step, jnp.zeros(3), y)

    draws(model=model)
    big[:, :3] = 40.0
    shifted = draws(model=model)
    assert scan_cache_info().hits == 1
    assert float(shifted.min()) > 30.0
