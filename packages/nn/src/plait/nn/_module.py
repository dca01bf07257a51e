"""``module``: a stax-style ``(init_fn, apply_fn)`` network as one ``param`` site."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias, TypeVar

from jax import Array

from plait import current_stack, param, prng_key
from plait.errors import SiteError, SiteTypeError

__all__ = ["InitFn", "module"]

R = TypeVar("R")

InitFn: TypeAlias = Callable[[Array, tuple[int, ...]], tuple[Any, Any]]
"""A stax ``init_fn``: ``(key, input_shape) -> (output_shape, params)``."""


def stax_init(name: str, init_fn: InitFn, input_shape: Sequence[int] | None) -> Any:
    """Fresh parameters of the network ``name`` from ``init_fn`` and a key of ``seed``."""
    site = f"{name}$params"
    if input_shape is None:
        raise SiteError(
            site,
            f"network '{name}' has no value for its parameters '{site}' and no input_shape "
            f"to initialise them: pass input_shape=... (e.g. (-1, n_features)) or "
            f"substitute '{site}'.",
        )
    key = prng_key() if current_stack() else None
    if key is None:
        raise SiteTypeError(
            site,
            f"network '{name}' needs a random key to initialise its parameters '{site}': "
            "run the model under plait.handlers.seed(model, rng_seed=0), or substitute "
            f"'{site}'.",
        )
    _, params = init_fn(key, tuple(input_shape))
    return params


def module(
    name: str,
    nn: tuple[InitFn, Callable[..., R]],
    input_shape: Sequence[int] | None = None,
    *,
    constraint: Any = None,
) -> Callable[..., R]:
    """``apply_fn`` bound to the parameters of the stax network ``nn``, declared as the
    ``param`` site ``f"{name}$params"`` (one site for the whole parameter pytree).

    The site is asked for a value first: when ``substitute`` gives one (as SVI and
    ``Predictive`` do), those parameters are used. Otherwise they are initialised with
    ``init_fn(prng_key(), input_shape)`` and registered. The behaviour, the trace and the
    random stream are NumPyro's ``numpyro.module``.

    Args:
        name: the network's name; the site is ``f"{name}$params"``.
        nn: a ``(init_fn, apply_fn)`` pair, as ``jax.example_libraries.stax`` builds.
        input_shape: the input shape given to ``init_fn`` (``-1`` for the batch dim);
            needed unless the site is substituted.
        constraint: the support of every parameter leaf, recorded on the site for
            inference (``numpyro.distributions.constraints``; default real).

    Returns:
        ``functools.partial(apply_fn, params)``: call it on inputs.

    Raises:
        SiteError: the parameters must be initialised but ``input_shape`` is missing.
        SiteTypeError: they must be initialised and no ``seed`` gives a key (NumPyro
            fails there with a ``TypeError`` too).

    Example:
        >>> import jax.numpy as jnp
        >>> from jax.example_libraries import stax
        >>> from plait.handlers import seed, trace
        >>> from plait.nn import module
        >>> def model(x):
        ...     net = module("net", stax.serial(stax.Dense(4), stax.Relu, stax.Dense(1)),
        ...                  input_shape=(-1, 3))
        ...     return net(x)
        >>> tr = trace(seed(model, rng_seed=0)).get_trace(jnp.ones((5, 3)))
        >>> [(w.shape, b.shape) for w, b in tr["net$params"].value[::2]]
        [((3, 4), (4,)), ((4, 1), (1,))]
    """
    init_fn, apply_fn = nn
    site = f"{name}$params"
    params = param(site, constraint=constraint)
    if params is None:
        params = stax_init(name, init_fn, input_shape)
        param(site, params, constraint=constraint)
    return functools.partial(apply_fn, params)
