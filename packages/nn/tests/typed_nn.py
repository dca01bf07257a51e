"""A typed user script for plait-nn: ``mypy --strict`` must accept it.

It declares a hand-written, fully typed stax-style layer, so the result type of the bound
network (``Array``) flows through :func:`plait.nn.module` and :func:`plait.nn.random_module`.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from jax import Array

import plait
from plait.handlers import seed, substitute, trace
from plait.nn import ModuleState, ParamShape, module, random_module

Params = tuple[Array, Array]


def dense_init(key: Array, input_shape: Sequence[int]) -> tuple[tuple[int, ...], Params]:
    w = jax.random.normal(key, (input_shape[-1], 2)) * 0.1
    return (*input_shape[:-1], 2), (w, jnp.zeros(2))


def dense_apply(params: Params, x: Array) -> Array:
    w, b = params
    return x @ w + b


def regression(x: Array, y: Array | None = None) -> Array:
    net = module("net", (dense_init, dense_apply), input_shape=(-1, x.shape[-1]))
    mean: Array = net(x)[..., 0]
    with plait.plate("data", x.shape[0]):
        return plait.sample("y", dist.Normal(mean, 1.0), obs=y)


def bayesian(x: Array) -> Array:
    net = random_module("bnn", (dense_init, dense_apply), dist.Normal(0.0, 1.0), (-1, 3))
    return net(x)


def run() -> float:
    x = jnp.ones((4, 3))
    tr = trace(seed(regression, rng_seed=0)).get_trace(x)
    params = tr["net$params"].value
    fitted = substitute(regression, data={"net$params": params})
    out: Array = seed(fitted, rng_seed=1)(x)
    bnn_out: Array = seed(bayesian, rng_seed=2)(x)
    shape: ParamShape = ParamShape((3, 2))
    states: list[ModuleState[Array]] = []
    return float(out.sum() + bnn_out.sum()) + len(shape.shape) + len(states)
