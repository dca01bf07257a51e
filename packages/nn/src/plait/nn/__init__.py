"""plait-nn: neural networks in plait models.

``module`` declares a stax ``(init_fn, apply_fn)`` network as one ``param`` site;
``random_module`` draws its parameters from a prior (a Bayesian neural network). The Flax
linen (``flax_module``), Flax NNX and Equinox adapters (extras ``flax`` and ``equinox``,
imported only when used) do the same for those libraries' modules, keeping batch-norm
statistics in a ``mutable`` site.

Example:
    >>> import jax.numpy as jnp
    >>> from jax.example_libraries import stax
    >>> from plait.handlers import seed
    >>> from plait.nn import module
    >>> def model(x):
    ...     return module("net", stax.Dense(2), input_shape=(-1, 3))(x)
    >>> seed(model, rng_seed=0)(jnp.ones((4, 3))).shape
    (4, 2)
"""

from plait.nn._equinox import eqx_module as eqx_module
from plait.nn._equinox import random_eqx_module as random_eqx_module
from plait.nn._flax import flax_nnx_module as flax_nnx_module
from plait.nn._flax import random_flax_nnx_module as random_flax_nnx_module
from plait.nn._linen import flax_module as flax_module
from plait.nn._linen import random_flax_module as random_flax_module
from plait.nn._module import InitFn as InitFn
from plait.nn._module import module as module
from plait.nn._priors import ParamShape as ParamShape
from plait.nn._priors import Prior as Prior
from plait.nn._random_module import random_module as random_module
from plait.nn._state import ModuleState as ModuleState

__all__ = [
    "InitFn",
    "ModuleState",
    "ParamShape",
    "Prior",
    "eqx_module",
    "flax_module",
    "flax_nnx_module",
    "module",
    "random_eqx_module",
    "random_flax_module",
    "random_flax_nnx_module",
    "random_module",
]
