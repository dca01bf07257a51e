"""Inference through ``cond`` and loops of unknown length: NUTS, SVI and Predictive on
models that use them, against closed-form posteriors."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import optax
import pytest

import plait
from plait.control_flow import cond, while_loop
from plait.infer import MCMC, NUTS, SVI, Predictive, Trace_ELBO

DATA = jnp.array([1.2, 0.4, 2.1, 1.7, 0.9, 9.0, 1.3])  # used up to the first one above 5
PRIOR_SD = 2.0


def until_outlier(data: Any) -> Any:
    mu = plait.sample("mu", dist.Normal(0.0, PRIOR_SD))

    def body(i: Any) -> Any:
        plait.sample("y", dist.Normal(mu, 1.0), obs=data[i])
        return i + 1

    return while_loop(lambda i: data[i] <= 5.0, body, 0)


@pytest.mark.slow
def test_nuts_through_a_while_loop_finds_the_conjugate_posterior() -> None:
    mcmc = MCMC(
        NUTS(until_outlier),
        num_warmup=300,
        num_samples=800,
        num_chains=2,
        chain_method="sequential",
        progress_bar=False,
    )
    mcmc.run(jax.random.key(0), DATA)
    used = DATA[:5]
    precision = 1.0 / PRIOR_SD**2 + used.shape[0]
    mean, sd = float(used.sum()) / precision, precision**-0.5
    draws = np.asarray(mcmc.get_samples()["mu"])
    np.testing.assert_allclose(draws.mean(), mean, atol=4 * sd / np.sqrt(400))
    np.testing.assert_allclose(draws.std(), sd, rtol=0.15)


def cluster_model() -> Any:
    """NumPyro's ``cond`` docstring model and guide."""
    cluster = plait.sample("cluster", dist.Normal())
    return cond(
        cluster > 0,
        lambda _: plait.sample("x", dist.Normal(20.0)),
        lambda _: plait.sample("x", dist.Normal(0.0)),
        None,
    )


def cluster_guide() -> Any:
    m1 = plait.param("m1", 10.0)
    s1 = plait.param("s1", 0.1, constraint=dist.constraints.positive)
    m2 = plait.param("m2", 10.0)
    s2 = plait.param("s2", 0.1, constraint=dist.constraints.positive)
    cluster = plait.sample("cluster", dist.Normal())
    return cond(
        cluster > 0,
        lambda _: plait.sample("x", dist.Normal(m1, s1)),
        lambda _: plait.sample("x", dist.Normal(m2, s2)),
        None,
    )


@pytest.mark.slow
def test_svi_through_cond_in_model_and_guide_recovers_both_branches() -> None:
    # NumPyro's test_cond: the guide's branch parameters go to each branch's posterior.
    svi = SVI(cluster_model, cluster_guide, optax.adam(1e-2), Trace_ELBO(num_particles=100))
    params = svi.run(jax.random.key(0), 2500, progress_bar=False).params
    np.testing.assert_allclose(params["m1"], 20.0, atol=0.3)
    np.testing.assert_allclose(params["m2"], 0.0, atol=0.3)
    np.testing.assert_allclose(params["s1"], 1.0, atol=0.3)
    np.testing.assert_allclose(params["s2"], 1.0, atol=0.3)


@pytest.mark.slow
def test_predictive_draws_each_branch_where_its_predicate_holds() -> None:
    draws = Predictive(cluster_model, num_samples=500)(jax.random.key(3))
    cluster, x = np.asarray(draws["cluster"]), np.asarray(draws["x"])
    assert x.shape == (500,)
    np.testing.assert_allclose(x[cluster > 0].mean(), 20.0, atol=0.2)
    np.testing.assert_allclose(x[cluster <= 0].mean(), 0.0, atol=0.2)
