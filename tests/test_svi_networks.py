"""SVI fits plait.nn networks, whose param sites hold pytrees (plait-nn with plait-infer)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
import optax
import pytest
from jax.example_libraries import stax

import plait

pytestmark = pytest.mark.slow  # SVI runs (deselect with -m "not slow")

nn = pytest.importorskip("plait.nn")
infer = pytest.importorskip("plait.infer")

X = jnp.linspace(-1.0, 1.0, 64)[:, None]
Y = 2.0 * X[:, 0] + 0.1


def regression(x: jax.Array, y: jax.Array | None = None) -> None:
    net = nn.module(
        "net", stax.serial(stax.Dense(8), stax.Relu, stax.Dense(1)), input_shape=(-1, 1)
    )
    with plait.plate("data", x.shape[0]):
        plait.sample("y", dist.Normal(net(x)[:, 0], 0.1), obs=y)


def bayesian(x: jax.Array, y: jax.Array | None = None) -> None:
    net = nn.random_module(
        "bnn",
        stax.serial(stax.Dense(4), stax.Relu, stax.Dense(1)),
        dist.Normal(0.0, 1.0),
        input_shape=(-1, 1),
    )
    with plait.plate("data", x.shape[0]):
        plait.sample("y", dist.Normal(net(x)[:, 0], 0.1), obs=y)


def test_svi_fits_a_stax_network_to_a_line() -> None:
    def guide(x: jax.Array, y: Any = None) -> None:
        pass

    svi = infer.SVI(regression, guide, optax.adam(1e-2), infer.Trace_ELBO())
    result = svi.run(jax.random.key(0), 400, X, Y, progress_bar=False)
    params = result.params["net$params"]
    _, apply_fn = stax.serial(stax.Dense(8), stax.Relu, stax.Dense(1))
    error = jnp.mean((apply_fn(params, X)[:, 0] - Y) ** 2)
    assert float(error) < 0.01, float(error)


def test_svi_with_autonormal_trains_a_bayesian_network() -> None:
    svi = infer.SVI(bayesian, infer.AutoNormal(bayesian), optax.adam(1e-2), infer.Trace_ELBO())
    result = svi.run(jax.random.key(0), 300, X, Y, progress_bar=False)
    assert jnp.all(jnp.isfinite(result.losses))
    assert float(result.losses[-20:].mean()) < 0.05 * float(result.losses[:20].mean())
