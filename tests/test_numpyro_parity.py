"""plait against NumPyro itself: seeded draws, trace structure and log densities.

Each model is written once against a namespace of primitives and handlers, and run
with NumPyro's and with plait's.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import numpyro.handlers as nh
import pytest
from numpyro.infer.util import log_density as numpyro_log_density

import plait
import plait.handlers as ph

NUMPYRO = types.SimpleNamespace(
    sample=numpyro.sample,
    param=numpyro.param,
    plate=numpyro.plate,
    plate_stack=numpyro.plate_stack,
    deterministic=numpyro.deterministic,
    factor=numpyro.factor,
    subsample=numpyro.subsample,
    prng_key=numpyro.prng_key,
    h=nh,
)
PLAIT = types.SimpleNamespace(
    sample=plait.sample,
    param=plait.param,
    plate=plait.plate,
    plate_stack=plait.plate_stack,
    deterministic=plait.deterministic,
    factor=plait.factor,
    subsample=plait.subsample,
    prng_key=plait.prng_key,
    h=ph,
)


def plait_log_density(model: Callable[..., Any], params: dict[str, Any]) -> jax.Array:
    tr = ph.trace(ph.substitute(model, data=params)).get_trace()
    total = jnp.zeros(())
    for site in tr.values():
        if site.type == "sample":
            lp = site.fn.log_prob(site.value)
            total = total + jnp.sum(lp if site.scale is None else site.scale * lp)
    return total


def nested_plates(P: Any) -> None:
    loc = P.sample("loc", dist.Normal(0.0, 1.0))
    with P.plate("outer", 3):
        a = P.sample("a", dist.Normal(loc, 1.0))
        with P.plate("inner", 4):
            P.sample("b", dist.Normal(a, 1.0))
        P.sample("c", dist.Normal(0.0, 1.0), sample_shape=(2, 1))
    with P.plate("explicit", 2, dim=-3):
        P.sample("d", dist.Normal(0.0, 1.0))
    P.sample("e", dist.Normal(0.0, 1.0), sample_shape=(5,))
    P.deterministic("sum", loc + 1.0)


def stacked_plates(P: Any) -> None:
    with P.plate_stack("grid", [2, 3]):
        P.sample("g", dist.Gamma(2.0, 1.0))
    with P.plate("data", 10, subsample_size=4) as idx:
        P.sample("z", dist.Normal(0.0, 1.0))
        P.deterministic("idx", idx)
        P.sample("y", dist.Normal(0.0, 1.0), obs=P.subsample(jnp.arange(10.0), event_dim=0))
    P.sample("k", dist.Categorical(probs=jnp.ones(3) / 3))
    P.sample("mv", dist.MultivariateNormal(jnp.zeros(2), jnp.eye(2)))


def explicit_key_and_prng(P: Any) -> None:
    P.sample("a", dist.Normal(0.0, 1.0))
    P.sample("fixed", dist.Normal(0.0, 1.0), rng_key=jax.random.key(42))
    key = P.prng_key()
    P.deterministic("from_key", jax.random.normal(key))
    P.sample("b", dist.Normal(0.0, 1.0), obs=0.3)
    P.sample("c", dist.Exponential(1.0))


MODELS = [nested_plates, stacked_plates, explicit_key_and_prng]


def _run(P: Any, model: Callable[[Any], None], seed: int) -> Any:
    return P.h.trace(P.h.seed(lambda: model(P), rng_seed=seed)).get_trace()


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
@pytest.mark.parametrize("seed", [0, 7])
def test_seeded_trace_equals_numpyro(model: Callable[[Any], None], seed: int) -> None:
    ours = _run(PLAIT, model, seed)
    theirs = _run(NUMPYRO, model, seed)
    assert list(ours) == list(theirs)
    for name, site in ours.items():
        ref = theirs[name]
        assert site.type == ref["type"], name
        np.testing.assert_array_equal(
            np.asarray(site.value), np.asarray(ref["value"]), err_msg=name
        )
        frames = [(f.name, f.dim, f.size) for f in site.cond_indep_stack]
        assert frames == [(f.name, f.dim, f.size) for f in ref["cond_indep_stack"]], name
        if site.type == "sample":
            assert site.fn.batch_shape == ref["fn"].batch_shape, name
            assert site.fn.event_shape == ref["fn"].event_shape, name
            assert site.is_observed == ref["is_observed"], name
            assert site.scale == ref["scale"], name


def _key_order_model(P: Any) -> tuple[Any, Any]:
    return P.sample("a", dist.Normal(0.0, 1.0)), P.sample("b", dist.Normal(0.0, 1.0))


@pytest.mark.parametrize(
    "compose",
    [
        lambda P, m: P.h.seed(P.h.substitute(m, data={"a": 0.0}), rng_seed=1),
        lambda P, m: P.h.substitute(P.h.seed(m, rng_seed=1), data={"a": 0.0}),
        lambda P, m: P.h.seed(P.h.block(m, hide=["a"]), rng_seed=1),
        lambda P, m: P.h.block(P.h.seed(m, rng_seed=1), hide=["a"]),
        lambda P, m: P.h.seed(P.h.condition(m, data={"b": 2.0}), rng_seed=3),
        lambda P, m: P.h.seed(P.h.uncondition(P.h.condition(m, data={"b": 2.0})), rng_seed=3),
        lambda P, m: P.h.seed(P.h.do(m, data={"a": 5.0}), rng_seed=2),
        lambda P, m: P.h.seed(P.h.scope(m, prefix="s"), rng_seed=2),
        lambda P, m: P.h.seed(P.h.seed(m, rng_seed=8), rng_seed=2),
    ],
    ids=[
        "seed-substitute",
        "substitute-seed",
        "seed-block",
        "block-seed",
        "seed-condition",
        "seed-uncondition",
        "seed-do",
        "seed-scope",
        "nested-seed",
    ],
)
def test_handler_composition_draws_equal_numpyro(compose: Callable[[Any, Any], Any]) -> None:
    ours = compose(PLAIT, lambda: _key_order_model(PLAIT))()
    theirs = compose(NUMPYRO, lambda: _key_order_model(NUMPYRO))()
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))


def test_seed_wrapper_is_stateless_but_context_advances() -> None:
    model = ph.seed(lambda: plait.sample("x", dist.Normal(0.0, 1.0)), rng_seed=0)
    assert model() == model()
    with ph.seed(rng_seed=0):
        first = plait.sample("x", dist.Normal(0.0, 1.0))
        second = plait.sample("y", dist.Normal(0.0, 1.0))
    assert first != second


def test_seeded_model_is_jit_safe() -> None:
    def model(x: jax.Array) -> jax.Array:
        return plait.sample("y", dist.Normal(x, 1.0))

    seeded = ph.seed(model, rng_seed=0)
    jitted = jax.jit(seeded)
    np.testing.assert_allclose(jitted(1.0), seeded(1.0), rtol=1e-6)
    np.testing.assert_allclose(jitted(1.0), jitted(1.0))


def masked_scaled_model(P: Any, data: jax.Array, keep: jax.Array) -> None:
    mu = P.sample("mu", dist.Normal(0.0, 2.0))
    sigma = P.sample("sigma", dist.LogNormal(0.0, 1.0))
    with P.h.scale(scale=0.5), P.plate("data", data.shape[0]), P.h.mask(mask=keep):
        P.sample("y", dist.Normal(mu, sigma), obs=data)
    P.factor("penalty", -0.25 * mu**2)
    with P.h.mask(mask=False):
        P.factor("impossible", -jnp.inf)


def subsampled_model(P: Any, data: jax.Array) -> None:
    mu = P.sample("mu", dist.Normal(0.0, 2.0))
    with P.plate("data", data.shape[0], subsample_size=3):
        batch = P.subsample(data, event_dim=0)
        P.sample("y", dist.Normal(mu, 1.0), obs=batch)


def test_log_density_with_mask_scale_and_factor_equals_numpyro_and_closed_form() -> None:
    data = jnp.array([0.5, -1.0, 2.0, 0.1])
    keep = jnp.array([True, False, True, True])
    params = {"mu": jnp.array(0.3), "sigma": jnp.array(1.7)}
    ours = plait_log_density(lambda: masked_scaled_model(PLAIT, data, keep), params)
    theirs, _ = numpyro_log_density(
        lambda: masked_scaled_model(NUMPYRO, data, keep), (), {}, params
    )
    closed = (
        dist.Normal(0.0, 2.0).log_prob(0.3)
        + dist.LogNormal(0.0, 1.0).log_prob(1.7)
        + 0.5 * jnp.sum(jnp.where(keep, dist.Normal(0.3, 1.7).log_prob(data), 0.0))
        - 0.25 * 0.3**2
    )
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)
    np.testing.assert_allclose(ours, closed, rtol=1e-6)


def test_subsampled_log_density_scales_by_size_over_subsample_size() -> None:
    data = jnp.arange(10.0)
    params = {"mu": jnp.array(0.2)}
    model = ph.seed(lambda: subsampled_model(PLAIT, data), rng_seed=4)
    tr = ph.trace(ph.substitute(model, data=params)).get_trace()
    idx = tr["data"].value
    assert sorted(set(np.asarray(idx).tolist())) == sorted(np.asarray(idx).tolist())
    expected = dist.Normal(0.0, 2.0).log_prob(0.2) + (10 / 3) * jnp.sum(
        dist.Normal(0.2, 1.0).log_prob(data[idx])
    )
    np.testing.assert_allclose(plait_log_density(model, params), expected, rtol=1e-6)
    numpyro_model = nh.seed(lambda: subsampled_model(NUMPYRO, data), rng_seed=4)
    theirs, _ = numpyro_log_density(numpyro_model, (), {}, params)
    np.testing.assert_allclose(plait_log_density(model, params), theirs, rtol=1e-6)


def test_subsampled_param_with_event_dim_is_sliced_but_traced_in_full() -> None:
    def model() -> jax.Array:
        with plait.plate("data", 6, subsample_size=2) as idx:
            w = plait.param("w", jnp.arange(6.0 * 3).reshape(6, 3), event_dim=1)
            plait.deterministic("idx", idx)
        return w

    tr = ph.trace(ph.seed(model, rng_seed=0)).get_trace()
    out = ph.seed(model, rng_seed=0)()
    assert tr["w"].value.shape == (6, 3)
    np.testing.assert_array_equal(out, jnp.arange(18.0).reshape(6, 3)[tr["idx"].value])
