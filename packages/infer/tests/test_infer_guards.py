"""Guards that keep SVI from being silently wrong: discrete guide sites, resuming runs."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
import optax
import pytest
from numpyro.distributions import constraints

import plait
from plait.infer import SVI, Trace_ELBO


def model() -> None:
    z = plait.sample("z", dist.Bernoulli(0.3))
    plait.sample("y", dist.Normal(z * 1.0, 1.0), obs=1.0)


def discrete_guide() -> None:
    p = plait.param("p", 0.5, constraint=constraints.unit_interval)
    plait.sample("z", dist.Bernoulli(p))


def test_discrete_guide_site_is_refused_rather_than_given_a_wrong_gradient() -> None:
    with pytest.raises(plait.SiteError, match=re.escape("guide site 'z' samples from Bernoulli")):
        Trace_ELBO().loss(jax.random.key(0), {"p": 0.5}, model, discrete_guide)


def normal_model() -> None:
    loc = plait.sample("loc", dist.Normal(0.0, 1.0))
    with plait.plate("data", 2):
        plait.sample("y", dist.Normal(loc, 1.0), obs=jnp.array([0.5, 1.5]))


def normal_guide() -> None:
    loc = plait.param("q_loc", 0.0)
    scale = plait.param("q_scale", 1.0, constraint=constraints.positive)
    plait.sample("loc", dist.Normal(loc, scale))


@pytest.mark.slow
def test_run_resumes_from_a_state_on_a_fresh_svi() -> None:
    first = SVI(normal_model, normal_guide, optax.adam(0.05), Trace_ELBO())
    state = first.run(jax.random.key(0), 50, progress_bar=False).state
    continued = first.run(jax.random.key(1), 100, progress_bar=False, init_state=state)
    fresh = SVI(normal_model, normal_guide, optax.adam(0.05), Trace_ELBO())
    resumed = fresh.run(jax.random.key(1), 100, progress_bar=False, init_state=state)
    for name in ("q_loc", "q_scale"):
        assert jnp.allclose(resumed.params[name], continued.params[name], rtol=1e-6), name
    assert jnp.allclose(resumed.losses, continued.losses, rtol=1e-5)
