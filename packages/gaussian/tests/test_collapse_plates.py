"""Independent chains in plates (inside the body, around the scan) and collapse beside
plait-enum, against dense float64 references (a sum of per-series dense marginals; the
forward algorithm for the discrete chain)."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

import plait
from plait.control_flow import scan
from plait.enum import config_enumerate, enum
from plait.errors import SiteError
from plait.gaussian import collapse
from plait.infer import log_density

RNG = np.random.default_rng(3)
T, N = 5, 3
Y = RNG.normal(size=(T, N))
LOC0 = np.array([0.0, 1.0, -0.5])
PHI = np.array([0.9, 0.5, -0.7])


def per_series(dense_chain: Any, s: float, o: float, y: np.ndarray = Y) -> float:
    one = np.ones((T, 1, 1))
    zero = np.zeros((T, 1))
    return sum(
        dense_chain(
            [LOC0[i]], [[1.0]], PHI[i] * one, zero, s**2 * one, one, zero, o**2 * one,
            y[:, i : i + 1],
        ).log_marginal
        for i in range(N)
    )  # fmt: skip


def test_plate_inside_the_body(dense_chain: Any) -> None:
    def model(y: Any) -> None:
        with plait.plate("series", N):
            x0 = plait.sample("x_0", dist.Normal(jnp.asarray(LOC0), 1.0))

        def step(x_prev: Any, y_t: Any) -> Any:
            with plait.plate("series", N):
                x = plait.sample("x", dist.Normal(jnp.asarray(PHI) * x_prev, 0.6))
                plait.sample("y", dist.Normal(x, 0.4), obs=y_t)
            return x, None

        scan(step, x0, y)

    value, _ = log_density(collapse(model), (jnp.asarray(Y),), {}, {})
    np.testing.assert_allclose(float(value), per_series(dense_chain, 0.6, 0.4), rtol=1e-5)


def test_many_series_in_an_outer_plate(dense_chain: Any) -> None:
    def model(y: Any) -> None:
        s = plait.sample("s", dist.HalfNormal(1.0))
        with plait.plate("series", N):
            x0 = plait.sample("x_0", dist.Normal(jnp.asarray(LOC0), 1.0))

            def step(x_prev: Any, y_t: Any) -> Any:
                x = plait.sample("x", dist.Normal(jnp.asarray(PHI) * x_prev, s))
                plait.sample("y", dist.Normal(x, 0.4), obs=y_t)
                return x, None

            scan(step, x0, y)

    value, _ = log_density(collapse(model), (jnp.asarray(Y),), {}, {"s": 0.6})
    prior = float(dist.HalfNormal(1.0).log_prob(0.6))
    np.testing.assert_allclose(float(value), per_series(dense_chain, 0.6, 0.4) + prior, rtol=1e-5)


def test_subsampled_series_are_scaled(dense_chain: Any) -> None:
    def model(y: Any) -> None:
        with plait.plate("series", 6, subsample_size=N):
            x0 = plait.sample("x_0", dist.Normal(jnp.asarray(LOC0), 1.0))

            def step(x_prev: Any, y_t: Any) -> Any:
                x = plait.sample("x", dist.Normal(jnp.asarray(PHI) * x_prev, 0.6))
                plait.sample("y", dist.Normal(x, 0.4), obs=y_t)
                return x, None

            scan(step, x0, y)

    with plait.handlers.seed(rng_seed=0):
        value, _ = log_density(collapse(model), (jnp.asarray(Y),), {}, {})
    np.testing.assert_allclose(float(value), 2.0 * per_series(dense_chain, 0.6, 0.4), rtol=1e-5)


TRANS = np.array([[0.8, 0.2], [0.3, 0.7]])
MU = np.array([-1.0, 2.0])
W = np.array([-0.8, 1.9, 2.3, -1.2, 0.1])


def forward(w: np.ndarray) -> float:
    """log p(w) of the discrete chain z_0 = 0, z_t ~ TRANS[z_{t-1}], w_t ~ N(MU[z_t], 1)."""
    alpha = np.eye(2)[0]
    total = 0.0
    for w_t in w:
        alpha = (alpha @ TRANS) * np.exp(-0.5 * (w_t - MU) ** 2) / np.sqrt(2 * np.pi)
        total += np.log(alpha.sum())
        alpha /= alpha.sum()
    return total


def test_beside_an_enumerated_chain(dense_chain: Any) -> None:
    def model(y: Any, w: Any, switching: bool = False) -> None:
        def step(carry: Any, inputs: Any) -> Any:
            x_prev, z_prev = carry
            y_t, w_t = inputs
            z = plait.sample("z", dist.Categorical(jnp.asarray(TRANS)[z_prev]))
            plait.sample("w", dist.Normal(jnp.asarray(MU)[z], 1.0), obs=w_t)
            phi = jnp.asarray([0.9, -0.5])[z] if switching else 0.9
            x = plait.sample("x", dist.Normal(phi * x_prev, 0.6))
            plait.sample("y", dist.Normal(x, 0.4), obs=y_t)
            return (x, z), None

        x0 = plait.sample("x_0", dist.Normal(0.0, 1.0))
        scan(step, (x0, jnp.asarray(0)), (y, w))

    y = Y[:, 0]
    run = enum(config_enumerate(collapse(model)))
    value, _ = log_density(run, (jnp.asarray(y), jnp.asarray(W)), {}, {})
    one = np.ones((T, 1, 1))
    zero = np.zeros((T, 1))
    gaussian = dense_chain(
        [0.0], [[1.0]], 0.9 * one, zero, 0.36 * one, one, zero, 0.16 * one, y[:, None]
    ).log_marginal
    np.testing.assert_allclose(float(value), gaussian + forward(W), rtol=1e-5)
    with pytest.raises(SiteError, match="switching linear system"):
        log_density(run, (jnp.asarray(y), jnp.asarray(W)), {"switching": True}, {})
