"""Misuses that ``mypy --strict`` must reject (checked by tests/test_typing.py)."""

from __future__ import annotations

import jax.numpy as jnp
from jax import Array

import plait
from plait.handlers import seed, trace


def model(x: Array, *, scale: float = 1.0) -> Array:
    return x * scale


seed(model, rng_seed=0)("not an array")  # error: wrong argument type
trace(model).get_trace(jnp.ones(2), scale="big")  # error: wrong keyword type
plait.plate("data", "ten")  # error: size must be an int
plait.handlers.seed(model, rng_seed=0)("not an array")  # error: reached through import plait
site = trace(model).get_trace(jnp.ones(2))["x"]
site["valeu"]  # error: not a NumPyro message key
label: int = site["type"]  # error: the type is a str
