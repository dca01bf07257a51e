"""Laws the handlers keep, on plain models and on ``scan`` models alike.

* Handlers acting on independent things commute: the trace (names, values, log density)
  does not depend on their order.
* Composing a handler with itself composes its effect (``scale``) or changes nothing more
  (``block``, ``seed`` inside ``seed``).
* ``jax.jit(seed(model))`` gives the un-jitted draws and leaks no tracer; ``vmap`` over
  seeds gives the per-seed draws.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

import plait
from plait import log_prob_sum, plate, sample
from plait.control_flow import scan
from plait.handlers import block, condition, mask, scale, scope, seed, substitute, trace

Y = jnp.array([0.3, -1.2, 0.8, 2.0, -0.4])


def plain(y: Any = Y) -> Any:
    mu = sample("mu", dist.Normal(0.0, 1.0))
    z = sample("z", dist.Normal(mu, 2.0))
    with plate("data", y.shape[0]):
        return sample("y", dist.Normal(mu + z, 1.0), obs=y)


def scanned(y: Any = Y) -> Any:
    def step(x: Any, y_t: Any) -> Any:
        x = sample("x", dist.Normal(0.5 * x, 1.0))
        sample("y", dist.Normal(x, 0.5), obs=y_t)
        return x, x

    mu = sample("mu", dist.Normal(0.0, 1.0))
    z = sample("z", dist.Normal(mu, 2.0))
    return scan(step, z, y)


MODELS = {"plain": plain, "scan": scanned}
Wrap = Callable[[Callable[..., Any]], Callable[..., Any]]

PAIRS: dict[str, tuple[Wrap, Wrap]] = {
    "scale/mask": (
        lambda m: scale(m, scale=3.0),
        lambda m: mask(m, mask=jnp.array([True, False, True, True, False])),
    ),
    "condition/substitute": (
        lambda m: condition(m, data={"mu": 0.7}),
        lambda m: substitute(m, data={"z": -0.3}),
    ),
    "scale/substitute": (
        lambda m: scale(m, scale=0.5),
        lambda m: substitute(m, data={"mu": 1.5}),
    ),
    "block/condition": (
        lambda m: block(m, hide=["z"]),
        lambda m: condition(m, data={"mu": 0.2}),
    ),
}


def _run(model: Callable[..., Any]) -> tuple[list[str], dict[str, Any], float]:
    tr = trace(seed(model, rng_seed=3)).get_trace()
    values = {n: np.asarray(s.value) for n, s in tr.items() if s.type == "sample"}
    return list(tr), values, float(log_prob_sum(tr))


@pytest.mark.parametrize("pair", sorted(PAIRS))
@pytest.mark.parametrize("name", sorted(MODELS))
def test_independent_handlers_commute(name: str, pair: str) -> None:
    first, second = PAIRS[pair]
    model = MODELS[name]
    names_ab, values_ab, lp_ab = _run(first(second(model)))
    names_ba, values_ba, lp_ba = _run(second(first(model)))
    assert sorted(names_ab) == sorted(names_ba)
    for site in values_ab:
        np.testing.assert_array_equal(values_ab[site], values_ba[site])
    np.testing.assert_allclose(lp_ab, lp_ba, rtol=1e-6)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_scale_composes_and_block_is_idempotent(name: str) -> None:
    model = MODELS[name]
    _, _, base = _run(model)
    _, _, twice = _run(scale(scale(model, scale=2.0), scale=3.0))
    np.testing.assert_allclose(twice, 6.0 * base, rtol=1e-6)
    hidden = trace(block(block(seed(model, rng_seed=0), hide=["mu"]), hide=["mu"])).get_trace()
    assert "mu" not in hidden and "z" in hidden


@pytest.mark.parametrize("name", sorted(MODELS))
def test_scope_renames_inside_loops_as_on_the_unrolled_model(name: str) -> None:
    tr = trace(seed(scope(MODELS[name], prefix="a"), rng_seed=0)).get_trace()
    assert all(n.startswith("a/") for n, s in tr.items() if s.type == "sample")
    with_data = condition(scope(MODELS[name], prefix="a"), data={"a/z": 0.25})
    assert float(trace(seed(with_data, rng_seed=0)).get_trace()["a/z"].value) == 0.25


def _draws(model: Callable[..., Any], key: jax.Array) -> dict[str, jax.Array]:
    tr = trace(seed(model, rng_seed=key)).get_trace()
    return {n: s.value for n, s in tr.items() if s.type == "sample"}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_jit_of_a_seeded_model_equals_the_eager_run_and_leaks_no_tracer(name: str) -> None:
    model = MODELS[name]
    key = jax.random.key(11)
    eager = _draws(model, key)
    with jax.checking_leaks():
        jitted = jax.jit(lambda k: _draws(model, k))
        first = jitted(key)
        again = jitted(jax.random.key(12))
    for site, value in eager.items():
        np.testing.assert_allclose(first[site], value, rtol=1e-6)
    assert not np.allclose(again["mu"], first["mu"])
    # the handlers hold no state from the jitted call: running again eagerly is the same
    for site, value in _draws(model, key).items():
        np.testing.assert_array_equal(value, eager[site])


@pytest.mark.parametrize("name", sorted(MODELS))
def test_vmap_over_seeds_equals_the_runs_one_by_one(name: str) -> None:
    model = MODELS[name]
    keys = jax.random.split(jax.random.key(5), 4)
    batched = jax.vmap(lambda k: _draws(model, k))(keys)
    for i in range(4):
        for site, value in _draws(model, keys[i]).items():
            np.testing.assert_allclose(batched[site][i], value, rtol=1e-6)


def test_plate_and_scope_commute_with_a_scan_inside() -> None:
    def model() -> Any:
        with plate("series", 3):
            return scanned(jnp.zeros((5, 3)))

    a = trace(seed(scope(model, prefix="s"), rng_seed=0)).get_trace()
    frames = {f.name for f in a["s/x"].cond_indep_stack}
    assert frames == {"s/series"} and a["s/x"].value.shape == (5, 3)
    assert plait.log_prob_sum(a).shape == ()
