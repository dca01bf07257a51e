"""A typed use of ``scan``: ``mypy --strict`` must accept it (see test_scan_typing.py)."""

from __future__ import annotations

import jax.numpy as jnp
import numpyro.distributions as dist
from jax import Array

import plait
from plait.control_flow import scan, scan_cache_info
from plait.control_flow.plugin_api import ScanResult
from plait.handlers import seed, trace


def gaussian_hmm(y: Array | None = None, T: int = 10) -> tuple[Array, Array]:
    def transition(x_prev: Array, y_curr: Array | None) -> tuple[Array, tuple[Array, Array]]:
        x_curr = plait.sample("x", dist.Normal(x_prev, 1.0))
        y_obs = plait.sample("y", dist.Normal(x_curr, 1.0), obs=y_curr)
        return x_curr, (x_curr, y_obs)

    x0 = plait.sample("x_0", dist.Normal(0.0, 1.0))
    last, (x, y_out) = scan(transition, x0, y, length=T)
    final: Array = last
    assert final.shape == ()
    return x, y_out


def run() -> int:
    x, y = seed(gaussian_hmm, rng_seed=0)(jnp.arange(10.0))
    tr = trace(seed(gaussian_hmm, rng_seed=1)).get_trace(None, 5)
    site: plait.Message = tr["x"]
    hits: int = scan_cache_info().hits
    result: type[ScanResult] = ScanResult
    assert result is not None and site.value is not None
    return int(x.shape[0] + y.shape[0]) + hits


def wrong() -> None:
    def body(c: int, x: Array) -> tuple[int, Array]:
        return c + 1, x

    # the carry's type must match init's: mypy rejects a str init for an int carry
    scan(body, "0", jnp.zeros(3))  # type: ignore[arg-type]
