"""float32 accuracy of ``log_density(collapse(model))`` at T = 10^5, against float64.

The kernel-level test (``packages/core/tests/test_kernels_kalman.py``) checks
``kalman_filter`` alone, sequential only. Here the whole collapse is checked, for both
strategies: the chain read off the traced step, the marginal factor and the
remaining sites' densities, value and gradient with respect to the noise scales. The
reference is a hand-written covariance-form scalar Kalman filter, run in float64
(``jax.enable_x64``), plus the scales' half-normal log densities.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

import plait
from plait.control_flow import scan
from plait.gaussian import collapse
from plait.infer import log_density

STEPS = 100_000
PHI = 0.95


def simulate() -> np.ndarray:
    """The observations of the model at s = 0.3, o = 0.5."""
    rng = np.random.default_rng(0)
    shocks = 0.3 * rng.normal(size=STEPS)
    x, path = rng.normal(), np.empty(STEPS)
    for t in range(STEPS):
        x = PHI * x + shocks[t]
        path[t] = x
    return path + 0.5 * rng.normal(size=STEPS)


def model(strategy: str) -> Any:
    def ar1(y: Any) -> None:
        s = plait.sample("s", dist.HalfNormal(1.0))
        o = plait.sample("o", dist.HalfNormal(1.0))

        def step(x_prev: Any, y_t: Any) -> Any:
            x = plait.sample("x", dist.Normal(PHI * x_prev, s), infer={"contraction": strategy})
            plait.sample("y", dist.Normal(x, o), obs=y_t)
            return x, None

        scan(step, plait.sample("x_0", dist.Normal(0.0, 1.0)), y)

    return ar1


def reference(y: jax.Array, s: jax.Array, o: jax.Array) -> jax.Array:
    """The covariance-form scalar filter's ``log p(y)`` plus ``log HalfNormal(s, o)``."""

    def step(carry: Any, y_t: jax.Array) -> Any:
        m, p = carry
        m, p = PHI * m, PHI**2 * p + s**2
        v = p + o**2
        gain = p / v
        log_lik = -0.5 * (jnp.log(2 * jnp.pi * v) + (y_t - m) ** 2 / v)
        return (m + gain * (y_t - m), (1 - gain) * p), log_lik

    _, log_liks = jax.lax.scan(step, (jnp.zeros_like(s), jnp.ones_like(s)), y)
    half = 0.5 * jnp.log(2 / jnp.pi)
    return jnp.sum(log_liks) + 2 * half - 0.5 * (s**2 + o**2)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["sequential", "associative"])
def test_float32_collapsed_density_at_one_hundred_thousand_steps(strategy: str) -> None:
    """Value within 1e-5 and gradient within 1e-4 (relative) of the float64 filter.

    Slow: the associative form's value+grad compiles for about 30 s at this length.
    """
    y = simulate()
    scales = {"s": 0.3, "o": 0.5}
    with jax.enable_x64(True):
        ref, ref_grad = jax.jit(jax.value_and_grad(reference, argnums=(1, 2)))(
            jnp.asarray(y), *(jnp.asarray(v, jnp.float64) for v in scales.values())
        )
    ref, ref_grad = float(ref), np.asarray(ref_grad, np.float64)
    collapsed = model(strategy)
    y32 = jnp.asarray(y, jnp.float32)

    def value(params: dict[str, jax.Array]) -> jax.Array:
        return log_density(collapse(collapsed), (y32,), {}, params)[0]

    params = {k: jnp.asarray(v, jnp.float32) for k, v in scales.items()}
    total, grad = jax.jit(jax.value_and_grad(value))(params)
    assert total.dtype == jnp.float32
    assert abs(float(total) - ref) / abs(ref) < 1e-5
    got = np.array([float(grad[k]) for k in scales], np.float64)
    for g, r in zip(got, ref_grad, strict=True):
        assert abs(g - r) / abs(r) < 1e-4
