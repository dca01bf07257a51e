"""Flax NNX adapter: ``flax_nnx_module`` and ``random_flax_nnx_module`` (extra ``flax``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, cast

import jax

from plait import param
from plait.errors import SiteTypeError
from plait.nn._priors import Prior, dotted_path, plan_priors
from plait.nn._state import ModuleState, declare_state

__all__ = ["flax_nnx_module", "random_flax_nnx_module"]

P = ParamSpec("P")
R = TypeVar("R")


def _nnx() -> Any:
    try:
        from flax import nnx
    except ImportError as e:
        raise ImportError(
            "plait.nn's Flax NNX adapter needs Flax (flax>=0.10), which is not installed: "
            "pip install 'plait-nn[flax]'."
        ) from e
    return nnx


class _Split:
    """An NNX module taken apart: graph, parameters, and every other variable."""

    def __init__(self, name: str, nn_module: Any) -> None:
        nnx = _nnx()
        if not isinstance(nn_module, nnx.Module):
            kind = type(nn_module)
            raise SiteTypeError(
                f"{name}$params",
                f"network '{name}' got a {kind.__module__}.{kind.__qualname__}; "
                "flax_nnx_module takes an initialised flax.nnx.Module (build it outside the "
                "model, e.g. nnx.Linear(3, 1, rngs=nnx.Rngs(0))).",
            )
        self.nnx = nnx
        self.graphdef, self.params, self.other = nnx.split(nn_module, nnx.Param, ...)

    def pure_params(self) -> Any:
        return self.nnx.to_pure_dict(self.params)

    def state(self, name: str) -> ModuleState[Any] | None:
        pure = self.nnx.to_pure_dict(self.other)
        return declare_state(name, pure) if pure else None

    def _filled(self, state: Any, pure: Any) -> Any:
        fresh = jax.tree.map(lambda x: x, state)  # a new State; the module's is untouched
        self.nnx.replace_by_pure_dict(fresh, pure)
        return fresh

    def bind(self, params: Any, state: ModuleState[Any] | None) -> Callable[..., Any]:
        """A function calling a fresh copy of the module with ``params`` and ``state``,
        recording the state it leaves behind."""
        nnx = self.nnx

        def apply(*args: Any, **kwargs: Any) -> Any:
            other = self.other if state is None else self._filled(self.other, state.value)
            model = nnx.merge(self.graphdef, self._filled(self.params, params), other, copy=True)
            out = model(*args, **kwargs)
            if state is not None:
                _, _, after = nnx.split(model, nnx.Param, ...)
                state.value = nnx.to_pure_dict(after)
            return out

        return apply


def _declare_params(name: str, eager: Any) -> Any:
    site = f"{name}$params"
    params = param(site)
    return param(site, eager) if params is None else params


def flax_nnx_module(name: str, nn_module: Callable[P, R]) -> Callable[P, R]:
    """A function calling the Flax NNX module ``nn_module`` with its parameters taken from
    the ``param`` site ``f"{name}$params"`` (a nested dict, ``nnx.to_pure_dict`` of its
    ``nnx.Param`` variables).

    The module is built eagerly outside the model; its own parameters are the initial
    value, and ``substitute`` replaces them (as SVI does). Every other variable
    (batch-norm statistics, RNG counters) lives in the ``mutable`` site
    ``f"{name}$state"`` as ``{"state": pure_dict}``; each call records the state the
    module leaves, so the trace shows the updated statistics. The module itself is never
    modified. Needs the extra ``flax``.

    Args:
        name: the network's name.
        nn_module: an initialised ``flax.nnx.Module``.

    Returns:
        A function with the module's call signature.

    Raises:
        ImportError: Flax is not installed.
        SiteTypeError: ``nn_module`` is not a ``flax.nnx.Module``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from flax import nnx
        >>> from plait.handlers import trace
        >>> from plait.nn import flax_nnx_module
        >>> linear = nnx.Linear(3, 1, rngs=nnx.Rngs(0))
        >>> with trace() as tr:
        ...     y = flax_nnx_module("net", linear)(jnp.ones((2, 3)))
        >>> jax.tree.map(jnp.shape, tr["net$params"].value)
        {'bias': (1,), 'kernel': (3, 1)}
    """
    split = _Split(name, nn_module)
    params = _declare_params(name, split.pure_params())
    return cast(Callable[P, R], split.bind(params, split.state(name)))


def random_flax_nnx_module(
    name: str,
    nn_module: Callable[P, R],
    prior: Prior,
    *,
    scope_divider: str = "/",
) -> Callable[P, R]:
    """:func:`flax_nnx_module` with parameters drawn from ``prior``: leaf ``l1.kernel``
    (the dotted path in the pure dict, NumPyro's naming) becomes the ``sample`` site
    ``f"{name}/l1.kernel"``, its prior expanded to the leaf's shape with every dim an
    event dim. Drawn leaves show as :class:`plait.nn.ParamShape` in
    ``f"{name}$params"``. Needs the extra ``flax``.

    Args:
        name: the network's name.
        nn_module: an initialised ``flax.nnx.Module``.
        prior: one distribution, a dict by leaf path (leaves it does not name stay
            learnable), or a callable ``(path, shape) -> distribution``.
        scope_divider: the divider between ``name`` and a leaf's path.

    Returns:
        A function with the module's call signature.

    Example:
        >>> import jax.numpy as jnp
        >>> import numpyro.distributions as dist
        >>> from flax import nnx
        >>> from plait.handlers import seed, trace
        >>> from plait.nn import random_flax_nnx_module
        >>> linear = nnx.Linear(3, 1, rngs=nnx.Rngs(0))
        >>> def model(x):
        ...     return random_flax_nnx_module("net", linear, dist.Normal(0.0, 1.0))(x)
        >>> tr = trace(seed(model, rng_seed=0)).get_trace(jnp.ones((2, 3)))
        >>> [k for k, v in tr.items() if v.type == "sample"]
        ['net/bias', 'net/kernel']
    """
    split = _Split(name, nn_module)
    site = f"{name}$params"
    params = param(site)
    fresh = params is None
    if fresh:
        params = split.pure_params()
    plan = plan_priors(name, params, prior, divider=scope_divider, path_of=dotted_path)
    if fresh:
        param(site, plan.placeholders())
    state = split.state(name)
    return cast(Callable[P, R], split.bind(plan.draw(scope_divider), state))
