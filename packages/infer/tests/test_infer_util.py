"""initialize_model, init strategies and the constrained <-> unconstrained maps."""

from __future__ import annotations

import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer.util import constrain_fn as np_constrain_fn
from numpyro.infer.util import potential_energy as np_potential_energy

import plait
from plait.errors import SiteError
from plait.infer import (
    constrain_fn,
    init_to_feasible,
    init_to_median,
    init_to_uniform,
    init_to_value,
    initialize_model,
    unconstrain_fn,
)
from plait.infer._args import merge_args, split_args

Y = jnp.array([0.5, 1.5, 1.0, 2.0])


def model(y: Any) -> None:
    mu = plait.sample("mu", dist.Normal(0.0, 5.0))
    sigma = plait.sample("sigma", dist.LogNormal(0.0, 1.0))
    probs = plait.sample("probs", dist.Dirichlet(jnp.ones(3)))
    plait.deterministic("shifted", mu + probs[0])
    with plait.plate("data", y.shape[0]):
        plait.sample("y", dist.Normal(mu, sigma), obs=y)


def np_model(y: Any) -> None:
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    sigma = numpyro.sample("sigma", dist.LogNormal(0.0, 1.0))
    probs = numpyro.sample("probs", dist.Dirichlet(jnp.ones(3)))
    numpyro.deterministic("shifted", mu + probs[0])
    with numpyro.plate("data", y.shape[0]):
        numpyro.sample("y", dist.Normal(mu, sigma), obs=y)


def test_initialize_model_potential_equals_numpyro_at_the_start() -> None:
    info = initialize_model(jax.random.key(0), model, model_args=(Y,))
    z = info.param_info.z
    assert set(z) == {"mu", "sigma", "probs"} and z["probs"].shape == (2,)
    expected = np_potential_energy(np_model, (Y,), {}, z)
    np.testing.assert_allclose(info.param_info.potential_energy, expected, rtol=1e-6)
    np.testing.assert_allclose(info.potential_fn(z), expected, rtol=1e-6)
    grad = jax.jit(jax.grad(lambda z: np_potential_energy(np_model, (Y,), {}, z)))(z)
    for k in z:
        np.testing.assert_allclose(info.param_info.z_grad[k], grad[k], rtol=1e-5, atol=1e-6)


def test_init_to_uniform_starts_within_the_radius_on_the_unconstrained_space() -> None:
    keys = jax.random.split(jax.random.key(1), 8)
    info = initialize_model(keys, model, model_args=(Y,), init_strategy=init_to_uniform(radius=0.5))
    for value in info.param_info.z.values():
        assert value.shape[0] == 8
        assert bool(jnp.all(jnp.abs(value) <= 0.5))


def test_init_to_value_starts_at_the_given_constrained_values() -> None:
    values = {"mu": 1.25, "sigma": 2.0, "probs": jnp.array([0.2, 0.3, 0.5])}
    info = initialize_model(
        jax.random.key(2), model, model_args=(Y,), init_strategy=init_to_value(values=values)
    )
    constrained = info.postprocess_fn(info.param_info.z)
    for k, v in values.items():
        np.testing.assert_allclose(constrained[k], v, rtol=1e-6)
    np.testing.assert_allclose(constrained["shifted"], 1.45, rtol=1e-6)


def test_init_to_median_starts_at_the_prior_median() -> None:
    def narrow() -> None:
        plait.sample("s", dist.LogNormal(1.0, 1e-3))

    info = initialize_model(jax.random.key(3), narrow, init_strategy=init_to_median(num_samples=31))
    np.testing.assert_allclose(info.param_info.z["s"], 1.0, atol=5e-3)


def test_init_to_feasible_starts_at_unconstrained_zero() -> None:
    info = initialize_model(
        jax.random.key(0), model, model_args=(Y,), init_strategy=init_to_feasible
    )
    for value in info.param_info.z.values():
        np.testing.assert_allclose(value, 0.0, atol=1e-6)


@pytest.mark.filterwarnings("ignore:Out-of-support values:UserWarning")
def test_no_finite_initial_potential_after_the_retries_names_the_site() -> None:
    def bad(y: Any) -> None:
        rate = plait.sample("rate", dist.HalfNormal(1.0))
        plait.sample("y", dist.Gamma(rate, 1.0), obs=y)

    with pytest.raises(
        SiteError, match=re.escape("could not find a valid initial point in 100 tries")
    ) as info:
        initialize_model(jax.random.key(0), bad, model_args=(-1.0,))
    assert info.value.site == "y" and "site 'y'" in str(info.value)


def test_discrete_latent_without_enumeration_support_is_a_clear_error() -> None:
    def counts() -> None:
        plait.sample("k", dist.Poisson(3.0))

    with pytest.raises(SiteError, match=re.escape("site 'k' is a discrete latent (Poisson)")):
        initialize_model(jax.random.key(0), counts)


def test_unmarked_discrete_latent_is_enumerated_with_numpyros_future_warning() -> None:
    def coin() -> None:
        c = plait.sample("c", dist.Bernoulli(0.3))
        plait.sample("x", dist.Normal(c, 1.0), obs=0.5)

    with pytest.warns(FutureWarning, match=re.escape("enumerate the discrete latent site c")):
        info = initialize_model(jax.random.key(0), coin)
    # the potential sums the coin out: -log(0.7 N(0.5; 0, 1) + 0.3 N(0.5; 1, 1))
    expected = -jnp.log(
        0.7 * jnp.exp(dist.Normal(0.0, 1.0).log_prob(0.5))
        + 0.3 * jnp.exp(dist.Normal(1.0, 1.0).log_prob(0.5))
    )
    np.testing.assert_allclose(info.potential_fn({}), expected, rtol=1e-6)


def test_latent_delta_site_is_a_clear_error() -> None:
    def delta() -> None:
        plait.sample("d", dist.Delta(1.0))

    with pytest.raises(SiteError, match=re.escape("plait.deterministic('d', value)")):
        initialize_model(jax.random.key(0), delta)


def test_constrain_fn_equals_numpyro_and_unconstrain_fn_inverts_it() -> None:
    z = {"mu": jnp.array(0.3), "sigma": jnp.array(-0.2), "probs": jnp.array([0.4, -1.0])}
    ours = constrain_fn(model, (Y,), {}, z, return_deterministic=True)
    theirs = np_constrain_fn(np_model, (Y,), {}, z, return_deterministic=True)
    assert set(ours) == set(theirs) == {"mu", "sigma", "probs", "shifted"}
    for k in theirs:
        np.testing.assert_allclose(ours[k], theirs[k], rtol=1e-6)
    back = unconstrain_fn(model, (Y,), {}, {k: ours[k] for k in z})
    for k in z:
        np.testing.assert_allclose(back[k], z[k], rtol=1e-5, atol=1e-6)


def test_constrain_fn_maps_param_constraints() -> None:
    def with_param() -> None:
        plait.param("scale", 1.0, constraint=dist.constraints.positive)

    out = constrain_fn(with_param, (), {}, {"scale": jnp.log(3.0)})
    np.testing.assert_allclose(out["scale"], 3.0, rtol=1e-6)


def test_constrain_fn_vectorises_over_batch_dims() -> None:
    z = {"mu": jnp.zeros((2, 3)), "sigma": jnp.zeros((2, 3)), "probs": jnp.zeros((2, 3, 2))}
    out = constrain_fn(model, (Y,), {}, z, batch_ndims=2)
    assert out["probs"].shape == (2, 3, 3)
    np.testing.assert_allclose(out["sigma"], 1.0)


def test_split_args_keeps_python_values_static_and_arrays_traced() -> None:
    args = (jnp.ones(3), 4, "mode", np.zeros(2))
    kwargs = {"flag": True, "scale": 0.5, "nested": {"n": 7, "x": jnp.arange(2.0)}}
    dynamic, static = split_args(args, kwargs)
    assert len(dynamic) == 4  # two arrays, one numpy array, one float
    hash(static)
    new_args, new_kwargs = merge_args(dynamic, static)
    assert new_args[1:3] == (4, "mode") and new_kwargs["flag"] is True
    assert new_kwargs["nested"]["n"] == 7
    assert split_args(args, kwargs)[1] == static
    assert split_args((jnp.ones(3), 5, "mode", np.zeros(2)), kwargs)[1] != static


def fixed_supports(lib: Any, y: Any) -> None:
    mu = lib.sample("mu", dist.Normal(0.0, 5.0))
    sigma = lib.sample("sigma", dist.HalfNormal(1.0))
    probs = lib.sample("probs", dist.Dirichlet(jnp.ones(3)))
    with lib.plate("groups", 2):
        lib.sample("share", dist.Beta(2.0, 2.0))
    with lib.plate("data", y.shape[0]):
        lib.sample("y", dist.Normal(mu + probs[0], sigma), obs=y)


def bound_by_a_latent(lib: Any, y: Any) -> None:
    top = lib.sample("top", dist.Exponential(1.0))
    low = lib.sample("low", dist.Uniform(0.0, top))  # its support depends on `top`
    with lib.plate("data", y.shape[0]):
        lib.sample("y", dist.Normal(low, 1.0), obs=y)


@pytest.mark.parametrize("make", [fixed_supports, bound_by_a_latent])
def test_the_samplers_postprocess_equals_numpyros_constrain_fn(make: Any) -> None:
    """Fixed supports are constrained by their transforms alone (no replay of the
    model), a support bounded by a latent by replaying the model: both as NumPyro's."""
    from functools import partial

    from plait.infer import NUTS

    kernel = NUTS(partial(make, plait))
    kernel.prepare(jax.random.key(0), (Y,), {})
    shapes = kernel._require_prepared().spec.shapes
    keys = jax.random.split(jax.random.key(1), len(shapes))
    z = {name: jax.random.normal(k, shapes[name]) for k, name in zip(keys, shapes, strict=True)}
    ours = jax.jit(kernel.postprocess_fn((Y,), {}))(z)
    theirs = np_constrain_fn(partial(make, numpyro), (Y,), {}, z)
    assert set(ours) == set(theirs)
    for k in theirs:
        np.testing.assert_allclose(ours[k], theirs[k], rtol=1e-6)
