"""Predictive: shapes, return sites, guides, batch dims, and its errors."""

from __future__ import annotations

import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

import plait
from plait.errors import PlaitError
from plait.infer import Predictive


def model(x: Any, y: Any = None) -> None:
    w = plait.sample("w", dist.Normal(0.0, 1.0))
    sigma = plait.sample("sigma", dist.HalfNormal(1.0))
    mean = plait.deterministic("mean", w * x)
    with plait.plate("data", x.shape[0]):
        plait.sample("y", dist.Normal(mean, sigma), obs=y)


X = jnp.arange(4.0)


def test_prior_predictive_draws_every_site_with_a_leading_sample_dim() -> None:
    draws = Predictive(model, num_samples=7)(jax.random.key(0), X)
    assert set(draws) == {"w", "sigma", "mean", "y"}
    assert draws["w"].shape == (7,) and draws["y"].shape == (7, 4)
    np.testing.assert_allclose(draws["mean"], draws["w"][:, None] * X, rtol=1e-6)
    assert len(np.unique(np.asarray(draws["w"]))) == 7


def test_posterior_predictive_substitutes_samples_and_recomputes_deterministics() -> None:
    samples = {
        "w": jnp.array([1.0, 2.0, 3.0]),
        "sigma": jnp.full(3, 1e-4),
        "mean": jnp.zeros((3, 4)),
    }
    draws = Predictive(model, samples)(jax.random.key(1), X)
    assert set(draws) == {"mean", "y"}
    np.testing.assert_allclose(draws["mean"], jnp.array([1.0, 2.0, 3.0])[:, None] * X, rtol=1e-6)
    np.testing.assert_allclose(draws["y"], draws["mean"], atol=1e-3)


def test_return_sites_selects_sites_and_empty_string_returns_all() -> None:
    samples = {"w": jnp.ones(2), "sigma": jnp.ones(2)}
    only = Predictive(model, samples, return_sites=["w", "y"])(jax.random.key(2), X)
    assert set(only) == {"w", "y"}
    np.testing.assert_array_equal(only["w"], 1.0)
    everything = Predictive(model, samples, return_sites="")(jax.random.key(2), X)
    assert set(everything) == {"w", "sigma", "mean", "y"}


def test_batch_ndims_two_keeps_chain_and_draw_dims() -> None:
    samples = {"w": jnp.zeros((2, 5)), "sigma": jnp.ones((2, 5))}
    draws = Predictive(model, samples, batch_ndims=2)(jax.random.key(3), X)
    assert draws["y"].shape == (2, 5, 4)


def test_guide_draws_latents_then_model_draws_the_rest() -> None:
    def guide(x: Any, y: Any = None) -> None:
        loc = plait.param("loc", 0.0)
        plait.sample("w", dist.Normal(loc, 1e-4))
        plait.sample("sigma", dist.Delta(1e-4))

    draws = Predictive(model, guide=guide, params={"loc": 5.0}, num_samples=3)(jax.random.key(4), X)
    assert set(draws) == {"mean", "y"}
    np.testing.assert_allclose(draws["mean"], 5.0 * jnp.broadcast_to(X, (3, 4)), rtol=1e-3)


def test_observed_sites_keep_their_observations() -> None:
    y = jnp.array([0.0, 1.0, 2.0, 3.0])
    draws = Predictive(model, num_samples=2)(jax.random.key(5), X, y)
    np.testing.assert_array_equal(draws["y"], jnp.broadcast_to(y, (2, 4)))


def test_missing_num_samples_and_unknown_return_site_are_clear_errors() -> None:
    with pytest.raises(PlaitError, match="needs num_samples"):
        Predictive(model)
    with pytest.raises(PlaitError, match=re.escape("return_sites names ['nope']")):
        Predictive(model, num_samples=1, return_sites=["nope"])(jax.random.key(0), X)


def test_infer_discrete_without_plait_enum_is_a_clear_error() -> None:
    # No plugin answers the plait_infer_discrete hook once plait-enum is gone.
    removed = plait.unregister("enum") if plait.plugin_manager().has_plugin("enum") else None
    try:
        with pytest.raises(PlaitError, match=re.escape("pip install plait-enum")):
            Predictive(model, num_samples=1, infer_discrete=True)(jax.random.key(0), X)
    finally:
        if removed is not None:
            plait.register(removed, name="enum")


def test_infer_discrete_draws_enumerated_sites_from_their_posterior() -> None:
    pytest.importorskip("plait.enum")
    y = jnp.array([-3.1, 2.9, 3.2, -2.8])

    def mixture(y: Any) -> None:
        loc = plait.sample("loc", dist.Normal(0.0, 5.0))
        with plait.plate("data", y.shape[0]):
            z = plait.sample("z", dist.Bernoulli(0.5), infer={"enumerate": "parallel"})
            plait.sample("y", dist.Normal(jnp.where(z == 1, loc, -loc), 0.3), obs=y)

    samples = {"loc": jnp.array([3.0, -3.0, 3.0])}
    draws = Predictive(mixture, samples, infer_discrete=True, return_sites=["z"])(
        jax.random.key(0), y
    )
    # Clusters 20 standard deviations apart: the posterior of z is a point mass.
    expected = jnp.array([[0, 1, 1, 0], [1, 0, 0, 1], [0, 1, 1, 0]])
    np.testing.assert_array_equal(draws["z"], expected)
