"""A typed user script: ``mypy --strict`` must accept it and see the real signatures."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from jax import Array

import plait
from plait.handlers import condition, seed, substitute, trace


def regression(x: Array, y: Array | None = None) -> Array:
    w = plait.sample("w", dist.Normal(0.0, 1.0))
    sigma = plait.param("sigma", jnp.ones(()))
    with plait.plate("data", x.shape[0]):
        return plait.sample("y", dist.Normal(w * x, sigma), obs=y)


def run() -> float:
    seeded = seed(regression, rng_seed=0)
    out: Array = seeded(jnp.arange(3.0))
    conditioned = condition(regression, data={"w": 1.0})
    tr = trace(seed(conditioned, rng_seed=jax.random.key(1))).get_trace(jnp.arange(3.0))
    site: plait.Message = tr["y"]
    assert site.value is not None
    sub = substitute(regression, data={"w": 2.0})
    with seed(rng_seed=3):
        sub(jnp.ones(2))
    return float(out.sum())


def lazy_subpackages_and_numpyro_keys() -> bool:
    # ``import plait`` alone reaches the installed subpackages, typed.
    seeded = plait.handlers.seed(regression, rng_seed=0)
    out: Array = seeded(jnp.arange(3.0))
    tr = plait.handlers.trace(seeded).get_trace(jnp.arange(3.0))
    # A trace reads as NumPyro's, with a type per key.
    site = tr["y"]
    kind: str = site["type"]
    name: str | None = site["name"]
    observed: bool = site["is_observed"]
    frames: list[plait.PlateFrame] = site["cond_indep_stack"]
    enumerate_option = site.get("infer").get("enumerate")
    value: Array = site["value"]
    return kind == "sample" and name == "y" and not observed and bool(frames) and (
        enumerate_option is None and value.shape == out.shape
    )


def collapsed_keeps_the_signature() -> Array:
    from plait.gaussian import collapse

    collapsed = collapse(regression)
    out: Array = seed(collapsed, rng_seed=0)(jnp.arange(3.0))
    return out
