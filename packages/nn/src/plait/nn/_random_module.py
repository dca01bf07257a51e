"""``random_module``: a stax network whose parameters are drawn from a prior (a BNN)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TypeVar

from plait import param
from plait.nn._module import InitFn, stax_init
from plait.nn._priors import Prior, dotted_path, plan_priors

__all__ = ["random_module"]

R = TypeVar("R")


def random_module(
    name: str,
    nn: tuple[InitFn, Callable[..., R]],
    prior: Prior,
    input_shape: Sequence[int] | None = None,
    *,
    scope_divider: str = "/",
) -> Callable[..., R]:
    """``apply_fn`` bound to parameters drawn from ``prior``: a Bayesian neural network.

    The parameter pytree is found as :func:`plait.nn.module` finds it (the ``param`` site
    ``f"{name}$params"``, substituted or initialised). Then each leaf with a prior becomes
    the ``sample`` site ``f"{name}/{path}"`` under ``plait.handlers.scope(prefix=name)``,
    where ``path`` joins the leaf's keys with dots (stax's ``[(W, b), (), (W, b)]`` gives
    ``0.0``, ``0.1``, ``2.0``, ``2.1``: NumPyro's Flax naming). Its distribution is the
    prior expanded to the leaf's shape with every dim an event dim. In the
    ``f"{name}$params"`` site a drawn leaf is replaced by a :class:`plait.nn.ParamShape`,
    so an optimiser fits only the leaves without a prior.

    Args:
        name: the network's name.
        nn: a ``(init_fn, apply_fn)`` pair, as ``jax.example_libraries.stax`` builds.
        prior: one distribution for every leaf; a dict from leaf path to distribution
            (leaves it does not name stay learnable parameters); or a callable
            ``(path, shape) -> distribution``.
        input_shape: the input shape given to ``init_fn``; needed unless
            ``f"{name}$params"`` is substituted.
        scope_divider: the divider between ``name`` and a leaf's path.

    Returns:
        ``functools.partial(apply_fn, params)`` with the drawn parameters.

    Raises:
        SiteError: as :func:`plait.nn.module`; or a dict prior names no leaf.

    Example:
        >>> import jax.numpy as jnp
        >>> import numpyro.distributions as dist
        >>> from jax.example_libraries import stax
        >>> from plait.handlers import seed, trace
        >>> from plait.nn import random_module
        >>> def model(x):
        ...     net = random_module("bnn", stax.serial(stax.Dense(2), stax.Tanh,
        ...                         stax.Dense(1)), dist.Normal(0.0, 1.0), input_shape=(-1, 3))
        ...     return net(x)
        >>> tr = trace(seed(model, rng_seed=0)).get_trace(jnp.ones((5, 3)))
        >>> [(k, v.type, v.value.shape) for k, v in tr.items() if v.type == "sample"]
        [('bnn/0.0', 'sample', (3, 2)), ('bnn/0.1', 'sample', (2,)),
         ('bnn/2.0', 'sample', (2, 1)), ('bnn/2.1', 'sample', (1,))]
    """
    init_fn, apply_fn = nn
    site = f"{name}$params"
    params = param(site)
    fresh = params is None
    if fresh:
        params = stax_init(name, init_fn, input_shape)
    plan = plan_priors(name, params, prior, divider=scope_divider, path_of=dotted_path)
    if fresh:
        param(site, plan.placeholders())
    return functools.partial(apply_fn, plan.draw(scope_divider))
