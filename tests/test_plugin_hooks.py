"""The consumer hooks end to end: plait-infer asks, installed or registered plugins answer.

``Predictive(..., infer_discrete=True)`` asks ``plait_infer_discrete`` (answered by
plait-enum, or by any plugin registered with :func:`plait.register`), never importing a
plugin by name; ``log_density`` asks ``plait_log_density``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

import plait
from plait.handlers import seed, trace
from plait.infer import Predictive, log_density

pytest.importorskip("plait.enum")

Y = jnp.array([0.2, 7.8, 8.1, -0.3])
PRIOR = 0.4


def mixture(y: Any) -> None:
    with plait.plate("data", y.shape[0]):
        z = plait.sample("z", dist.Bernoulli(PRIOR), infer={"enumerate": "parallel"})
        plait.sample("y", dist.Normal(8.0 * z, 1.0), obs=y)


def test_plait_enum_answers_infer_discrete_with_the_map_by_brute_force() -> None:
    y = jnp.array([3.9, 4.3, 1.0, 6.5])  # points near the midpoint: the prior decides
    found = plait.hooks.infer_discrete(mixture, (y,), {}, temperature=0)
    assert found is not None
    scores = {
        z: float(
            np.sum(np.log(np.where(np.array(z) == 1, PRIOR, 1 - PRIOR)))
            + np.sum(dist.Normal(8.0 * jnp.array(z), 1.0).log_prob(y))
        )
        for z in itertools.product([0, 1], repeat=4)
    }
    best = max(scores, key=lambda z: scores[z])
    np.testing.assert_array_equal(found["z"].value, best)
    assert found["y"].is_observed


def test_plait_enum_answers_infer_discrete_as_its_public_function() -> None:
    key = jax.random.key(3)
    with seed(rng_seed=0):
        found = plait.hooks.infer_discrete(mixture, (Y,), {}, temperature=1, rng_key=key)
    expected = trace(seed(plait.enum.infer_discrete(mixture, rng_key=key), 0)).get_trace(Y)
    assert found is not None
    np.testing.assert_array_equal(found["z"].value, expected["z"].value)


class _AllOnes:
    """A plugin that answers infer_discrete before plait-enum, with every z set to 1."""

    @plait.hookimpl(tryfirst=True)
    def plait_infer_discrete(
        self, model: Any, model_args: Any, model_kwargs: Any, temperature: int, rng_key: Any
    ) -> plait.Trace:
        fixed = plait.handlers.substitute(model, data={"z": jnp.ones(4, int)})
        return trace(fixed).get_trace(*model_args, **model_kwargs)


@pytest.fixture
def all_ones() -> Iterator[None]:
    plait.register(_AllOnes(), name="all-ones")
    try:
        yield
    finally:
        plait.unregister("all-ones")


def test_predictive_draws_discrete_sites_through_the_hook() -> None:
    draws = Predictive(mixture, num_samples=3, infer_discrete=True, return_sites=["z"])(
        jax.random.key(0), Y
    )
    assert draws["z"].shape == (3, 4)
    # Clusters 8 standard deviations apart: the posterior of z is a point mass.
    np.testing.assert_array_equal(draws["z"], jnp.tile(jnp.array([0, 1, 1, 0]), (3, 1)))


@pytest.mark.usefixtures("all_ones")
def test_predictive_takes_the_answer_of_a_registered_plugin() -> None:
    draws = Predictive(mixture, num_samples=2, infer_discrete=True, return_sites=["z"])(
        jax.random.key(0), Y
    )
    np.testing.assert_array_equal(draws["z"], jnp.ones((2, 4), int))


class _Constant:
    @plait.hookimpl(tryfirst=True)
    def plait_log_density(self, model: Any, model_args: Any, model_kwargs: Any, params: Any) -> Any:
        return jnp.asarray(-1.5), {}


def test_log_density_takes_the_answer_of_a_registered_plugin() -> None:
    plait.register(_Constant(), name="constant")
    try:
        value, _ = log_density(mixture, (Y,), {}, {})
    finally:
        plait.unregister("constant")
    assert float(value) == -1.5
    value, _ = log_density(mixture, (Y,), {}, {})
    expected = jnp.sum(
        jnp.logaddexp(
            jnp.log(1 - PRIOR) + dist.Normal(0.0, 1.0).log_prob(Y),
            jnp.log(PRIOR) + dist.Normal(8.0, 1.0).log_prob(Y),
        )
    )
    np.testing.assert_allclose(value, expected, rtol=1e-6)
