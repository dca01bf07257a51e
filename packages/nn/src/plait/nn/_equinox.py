"""Equinox adapter: ``eqx_module`` and ``random_eqx_module`` (extra ``equinox``)."""

from __future__ import annotations

from typing import Any, TypeVar, overload

from plait import current_stack, param
from plait.nn._priors import Prior, keystr_path, plan_priors
from plait.nn._state import ModuleState, declare_state

__all__ = ["eqx_module", "random_eqx_module"]

M = TypeVar("M")
S = TypeVar("S")


def _eqx() -> Any:
    try:
        import equinox
    except ImportError as e:
        raise ImportError(
            "plait.nn's Equinox adapter needs Equinox (equinox>=0.11), which is not "
            "installed: pip install 'plait-nn[equinox]'."
        ) from e
    return equinox


def _declare_params(name: str, eager: Any) -> Any:
    # An Equinox module (and so its array part) is callable, which ``param`` would take
    # for an init function: hand it over inside one (a key is drawn, as in NumPyro).
    if not current_stack():
        return eager
    return param(f"{name}$params", lambda _key: eager)


@overload
def eqx_module(name: str, nn_module: M, state: None = None) -> M: ...
@overload
def eqx_module(name: str, nn_module: M, state: S) -> tuple[M, ModuleState[S]]: ...
def eqx_module(name: str, nn_module: M, state: Any = None) -> Any:
    """The Equinox module ``nn_module`` with its arrays taken from the ``param`` site
    ``f"{name}$params"`` (the module's inexact-array part, ``eqx.partition(nn_module,
    eqx.is_inexact_array)[0]``, as NumPyro's ``eqx_module`` keeps it).

    With ``state`` (from ``eqx.nn.make_with_state``), the state lives in the ``mutable``
    site ``f"{name}$state"`` and comes back as a :class:`plait.nn.ModuleState`: pass
    ``.value`` to the module and assign the state it returns to ``.value``, so the trace
    records the new batch-norm statistics. Needs the extra ``equinox``.

    Args:
        name: the network's name.
        nn_module: an initialised ``equinox.Module``.
        state: the module's ``eqx.nn.State``, if it has one.

    Returns:
        The module with the site's parameters; with ``state``, ``(module, ModuleState)``.

    Raises:
        ImportError: Equinox is not installed.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import equinox as eqx
        >>> from plait.handlers import seed, substitute
        >>> from plait.nn import eqx_module
        >>> linear = eqx.nn.Linear(3, 1, key=jax.random.key(0))
        >>> zeros = jax.tree.map(jnp.zeros_like, eqx.filter(linear, eqx.is_inexact_array))
        >>> def model(x):
        ...     return eqx_module("net", linear)(x)
        >>> seed(substitute(model, data={"net$params": zeros}), rng_seed=0)(jnp.ones(3))
        Array([0.], dtype=float32)
    """
    eqx = _eqx()
    params, static = eqx.partition(nn_module, eqx.is_inexact_array)
    model = eqx.combine(_declare_params(name, params), static)
    if state is None:
        return model
    return model, declare_state(name, state)


@overload
def random_eqx_module(
    name: str, nn_module: M, prior: Prior, state: None = None, *, scope_divider: str = "/"
) -> M: ...
@overload
def random_eqx_module(
    name: str, nn_module: M, prior: Prior, state: S, *, scope_divider: str = "/"
) -> tuple[M, ModuleState[S]]: ...
def random_eqx_module(
    name: str, nn_module: M, prior: Prior, state: Any = None, *, scope_divider: str = "/"
) -> Any:
    """:func:`eqx_module` with parameters drawn from ``prior``: the leaf at
    ``layers[0].weight`` (its ``jax.tree_util.keystr`` path without the leading dot,
    NumPyro's naming) becomes the ``sample`` site ``f"{name}/layers[0].weight"``, its
    prior expanded to the leaf's shape with every dim an event dim. Drawn leaves show as
    :class:`plait.nn.ParamShape` in ``f"{name}$params"``. Needs the extra ``equinox``.

    Args:
        name: the network's name.
        nn_module: an initialised ``equinox.Module``.
        prior: one distribution, a dict by leaf path (leaves it does not name stay
            learnable), or a callable ``(path, shape) -> distribution``.
        state: the module's ``eqx.nn.State``, if it has one (see :func:`eqx_module`).
        scope_divider: the divider between ``name`` and a leaf's path.

    Returns:
        The module with drawn parameters; with ``state``, ``(module, ModuleState)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import equinox as eqx
        >>> import numpyro.distributions as dist
        >>> from plait.handlers import seed, trace
        >>> from plait.nn import random_eqx_module
        >>> mlp = eqx.nn.MLP(2, 1, 4, 1, key=jax.random.key(0))
        >>> def model(x):
        ...     return random_eqx_module("net", mlp, dist.Normal(0.0, 1.0))(x)
        >>> tr = trace(seed(model, rng_seed=0)).get_trace(jnp.ones(2))
        >>> [k for k, v in tr.items() if v.type == "sample"]
        ['net/layers[0].weight', 'net/layers[0].bias', 'net/layers[1].weight', 'net/layers[1].bias']
    """
    eqx = _eqx()
    eager, static = eqx.partition(nn_module, eqx.is_inexact_array)
    plan = plan_priors(name, eager, prior, divider=scope_divider, path_of=keystr_path)
    placeholders = plan.placeholders()
    params = _declare_params(name, placeholders)
    if params is not placeholders:
        plan = plan_priors(name, params, prior, divider=scope_divider, path_of=keystr_path)
    model = eqx.combine(plan.draw(scope_divider), static)
    if state is None:
        return model
    return model, declare_state(name, state)
