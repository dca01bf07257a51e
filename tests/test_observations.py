"""Observations wider than their site broadcast as in NumPyro (iid data without a plate).

NumPyro checks nothing when ``sample`` observes a value; its log density sums
``log_prob(obs)``, which broadcasts to the observation's shape, and fails only when the
shapes do not broadcast at all. plait accepts the same observations and gives the same
log density; shapes that do not broadcast stay an error, raised at the site.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import numpyro.handlers
import pytest
from numpyro.infer.util import log_density as numpyro_log_density

import plait
import plait.handlers
from plait.infer import log_density

Y = jnp.linspace(-1.0, 1.0, 7)
GRID = jnp.arange(50.0).reshape(5, 10) / 10


def iid_without_plate(lib: Any, h: Any, y: Any) -> None:
    mu = lib.sample("mu", dist.Normal(0.0, 1.0))
    lib.sample("obs", dist.Normal(mu, 1.0), obs=y)


def wider_than_plate(lib: Any, h: Any, y: Any) -> None:
    mu = lib.sample("mu", dist.Normal(0.0, 1.0))
    with lib.plate("N", 10):
        lib.sample("obs", dist.Normal(mu, 1.0), obs=y)


def scaled_and_masked(lib: Any, h: Any, y: Any) -> None:
    mu = lib.sample("mu", dist.Normal(0.0, 1.0))
    with lib.plate("N", 10), h.scale(scale=0.5), h.mask(mask=jnp.arange(10) % 3 > 0):
        lib.sample("obs", dist.Normal(mu, 1.0), obs=y)


def subsampled(lib: Any, h: Any, y: Any) -> None:
    mu = lib.sample("mu", dist.Normal(0.0, 1.0))
    with lib.plate("N", 40, subsample_size=10):
        lib.sample("obs", dist.Normal(mu, 1.0), obs=y)


def event_dims(lib: Any, h: Any, y: Any) -> None:
    mu = lib.sample("mu", dist.Normal(0.0, 1.0))
    lib.sample("obs", dist.MultivariateNormal(jnp.full(2, mu), jnp.eye(2)), obs=y)


MODELS: dict[str, tuple[Callable[..., None], Any]] = {
    "iid data of shape (7,) without a plate": (iid_without_plate, Y),
    "obs (5, 10) inside plate('N', 10)": (wider_than_plate, GRID),
    "under scale and mask": (scaled_and_masked, GRID),
    "inside a subsampled plate": (subsampled, GRID),
    "event dims: obs (5, 2) of an MVN(2)": (event_dims, GRID[:, :2]),
}


@pytest.mark.parametrize("name", list(MODELS), ids=list(MODELS))
def test_log_density_of_a_wider_observation_equals_numpyros(name: str) -> None:
    fn, y = MODELS[name]

    def theirs(y: Any) -> None:
        fn(numpyro, numpyro.handlers, y)

    def ours(y: Any) -> None:
        fn(plait, plait.handlers, y)

    # The subsampled plate draws its indices from the seed; both libraries draw alike.
    seeded_theirs = numpyro.handlers.seed(theirs, 0)
    seeded_ours = plait.handlers.seed(ours, 0)
    expected, their_trace = numpyro_log_density(seeded_theirs, (y,), {}, {"mu": 0.3})
    value, trace = log_density(seeded_ours, (y,), {}, {"mu": 0.3})
    np.testing.assert_allclose(value, expected, rtol=1e-6)
    assert trace["obs"].value.shape == their_trace["obs"]["value"].shape == y.shape
    grad = jax.grad(lambda mu: log_density(seeded_ours, (y,), {}, {"mu": mu})[0])(0.3)
    their_grad = jax.grad(lambda mu: numpyro_log_density(seeded_theirs, (y,), {}, {"mu": mu})[0])
    np.testing.assert_allclose(grad, their_grad(0.3), rtol=1e-5)


def test_log_density_of_iid_data_is_the_sum_over_the_data() -> None:
    value, _ = log_density(lambda: iid_without_plate(plait, None, Y), (), {}, {"mu": 0.3})
    y = np.asarray(Y, dtype=np.float64)
    closed_form = -0.5 * 0.3**2 - 0.5 * np.log(2 * np.pi)
    closed_form += np.sum(-0.5 * (y - 0.3) ** 2 - 0.5 * np.log(2 * np.pi))
    np.testing.assert_allclose(value, closed_form, rtol=1e-6)


def test_observation_that_does_not_broadcast_is_an_error_in_both() -> None:
    def model(lib: Any) -> None:
        lib.sample("obs", dist.Normal(jnp.zeros(2), 1.0), obs=jnp.zeros(3))

    with pytest.raises(ValueError, match=re.escape("Model and guide shapes disagree")):
        numpyro_log_density(lambda: model(numpyro), (), {}, {})
    with pytest.raises(plait.SiteError, match=re.escape("site 'obs' observes a value of shape")):
        log_density(lambda: model(plait), (), {}, {})


def _enumerated_model(y: Any) -> None:
    z = plait.sample("z", dist.Bernoulli(0.3), infer={"enumerate": "parallel"})
    with plait.plate("N", 10):
        plait.sample("obs", dist.Normal(2.0 * z, 1.0), obs=y)


def test_enumerated_log_density_sums_the_extra_dims_of_a_wider_observation() -> None:
    pytest.importorskip("plait.enum")
    from plait.enum import enum

    # z on dim -3, left of the data's two dims: every site broadcasts.
    value, _ = log_density(enum(_enumerated_model, first_available_dim=-3), (GRID,), {}, {})
    y = np.asarray(GRID, dtype=np.float64)
    per_z = [
        np.log(p) + np.sum(-0.5 * (y - 2.0 * z) ** 2 - 0.5 * np.log(2 * np.pi))
        for z, p in ((0, 0.7), (1, 0.3))
    ]
    np.testing.assert_allclose(value, np.logaddexp(*per_z), rtol=1e-6)
