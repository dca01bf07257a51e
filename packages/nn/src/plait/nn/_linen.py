"""Flax linen adapter: ``flax_module`` and ``random_flax_module`` (extra ``flax``).

NumPyro's ``numpyro.contrib.module.flax_module`` / ``random_flax_module``: the module's
``params`` collection is the ``param`` site ``f"{name}$params"``, initialised with
``nn_module.init`` from a key of the enclosing ``seed`` unless substituted; other
collections named in ``mutable`` (``["batch_stats"]``) live in the ``mutable`` site
``f"{name}$state"`` as ``{collection: values}`` and are updated in place by each call.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import random

from plait import mutable as mutable_site
from plait import param, prng_key
from plait.errors import SiteError
from plait.nn._priors import Prior, dotted_path, plan_priors

__all__ = ["flax_module", "random_flax_module"]


def _flax() -> Any:
    try:
        import flax
        import flax.linen
    except ImportError as e:
        raise ImportError(
            "plait.nn.flax_module needs Flax (flax>=0.10), which is not installed: "
            "pip install 'plait-nn[flax]'."
        ) from e
    return flax


def _init_variables(
    flax: Any,
    name: str,
    nn_module: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    input_shape: Sequence[int] | None,
    apply_rng: Sequence[str] | None,
) -> dict[str, Any]:
    if not hasattr(nn_module, "init") or not hasattr(nn_module, "apply"):
        kind = type(nn_module)
        raise SiteError(
            f"{name}$params",
            f"network '{name}' got a {kind.__module__}.{kind.__qualname__}; flax_module takes "
            "a flax.linen.Module (with .init and .apply); for a flax.nnx.Module use "
            "plait.nn.flax_nnx_module.",
        )
    inputs = (jnp.ones(tuple(input_shape)),) if input_shape is not None else args
    key = prng_key()
    if key is None:
        key = random.key(0)
    rngs: dict[str, Any] = {}
    if apply_rng:
        if not isinstance(apply_rng, list | tuple):
            raise TypeError(f"apply_rng must be a list of rng kinds, got {apply_rng!r}.")
        for kind in apply_rng:
            key, subkey = random.split(key)
            rngs[kind] = subkey
    rngs["params"] = key
    variables: dict[str, Any] = flax.core.unfreeze(nn_module.init(rngs, *inputs, **kwargs))
    if "params" not in variables:
        raise ValueError(
            f"network '{name}' has no parameters (its variables are {sorted(variables)}); "
            "flax_module needs a module with a 'params' collection."
        )
    return variables


def _network(
    name: str,
    nn_module: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    input_shape: Sequence[int] | None,
    apply_rng: Sequence[str] | None,
    mutable: Sequence[str] | None,
    register: Callable[[Any], Any],
) -> tuple[Any, Callable[..., Any]]:
    """The parameters of a linen network (substituted, or initialised and registered as
    ``register(params)``) and its apply function ``apply(params, *args, **kwargs)``."""
    flax = _flax()
    params_site, state_site = f"{name}$params", f"{name}$state"
    nn_params = param(params_site)
    nn_state: Any = None
    if mutable:
        nn_state = mutable_site(state_site)
        if nn_state is not None and not isinstance(nn_state, dict):
            raise SiteError(
                state_site,
                f"site '{state_site}' holds {type(nn_state).__name__}; substitute it with a "
                "dict by collection, e.g. {'batch_stats': ...}.",
            )
        if (nn_state is None) != (nn_params is None):
            raise SiteError(
                state_site,
                f"network '{name}': '{params_site}' and '{state_site}' must be substituted "
                "together (or neither).",
            )
    if nn_params is None:
        variables = _init_variables(flax, name, nn_module, args, kwargs, input_shape, apply_rng)
        if mutable:
            nn_state = {k: v for k, v in variables.items() if k != "params"}
            if set(mutable) != set(nn_state):
                raise ValueError(
                    f"network '{name}': mutable={list(mutable)} but its other collections "
                    f"are {sorted(nn_state)}; name them all."
                )
            nn_state = mutable_site(state_site, nn_state)
        # The order jax.tree gives the leaves (sorted keys), as NumPyro keeps it.
        leaves, treedef = jax.tree.flatten(variables["params"])
        nn_params = jax.tree.unflatten(treedef, leaves)
        register(nn_params)

    if mutable:
        state = nn_state
        collections = list(mutable)

        def apply_with_state(params: Any, *call_args: Any, **call_kwargs: Any) -> Any:
            out, new_state = nn_module.apply(
                {"params": params, **state}, *call_args, mutable=collections, **call_kwargs
            )
            state.update(**jax.lax.stop_gradient(flax.core.unfreeze(new_state)))
            return out

        return nn_params, apply_with_state

    def apply_without_state(params: Any, *call_args: Any, **call_kwargs: Any) -> Any:
        return nn_module.apply({"params": params}, *call_args, **call_kwargs)

    return nn_params, apply_without_state


def flax_module(
    name: str,
    nn_module: Any,
    *args: Any,
    input_shape: Sequence[int] | None = None,
    apply_rng: Sequence[str] | None = None,
    mutable: Sequence[str] | None = None,
    **kwargs: Any,
) -> Callable[..., Any]:
    """A Flax linen module inside a model, its parameters the ``param`` site
    ``f"{name}$params"`` (NumPyro's ``flax_module``).

    Unless ``f"{name}$params"`` is substituted (as SVI does), the parameters come from
    ``nn_module.init`` with a key of the enclosing ``seed`` (key 0 without one), applied
    to ``jnp.ones(input_shape)`` or to ``*args, **kwargs``. Collections named in
    ``mutable`` (``["batch_stats"]``) are the ``mutable`` site ``f"{name}$state"``, a dict
    by collection that each call updates in place (without gradient). Needs the extra
    ``flax``.

    Args:
        name: the network's name.
        nn_module: a ``flax.linen.Module``.
        *args: example inputs for ``init`` (instead of ``input_shape``).
        input_shape: the shape of an example input for ``init``.
        apply_rng: extra rng kinds ``init`` needs (``["dropout"]``); at call time pass
            ``rngs={"dropout": plait.prng_key()}``.
        mutable: the mutable collections (``["batch_stats"]``).
        **kwargs: keyword arguments of ``init``.

    Returns:
        ``functools.partial(apply, params)``: call it as the module.

    Raises:
        ImportError: Flax is not installed.
        SiteError: ``nn_module`` is not a linen module, or the state site holds no dict.
        ValueError: the module has no parameters, or ``mutable`` does not name its other
            collections.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import flax.linen as nn
        >>> from plait.handlers import seed, trace
        >>> from plait.nn import flax_module
        >>> def model(x):
        ...     return flax_module("net", nn.Dense(2), input_shape=(1, 3))(x)
        >>> tr = trace(seed(model, rng_seed=0)).get_trace(jnp.ones((4, 3)))
        >>> jax.tree.map(jnp.shape, tr["net$params"].value)
        {'bias': (2,), 'kernel': (3, 2)}
    """
    site = f"{name}$params"
    params, apply = _network(
        name,
        nn_module,
        args,
        kwargs,
        input_shape,
        apply_rng,
        mutable,
        lambda p: param(site, p),
    )
    return functools.partial(apply, params)


def random_flax_module(
    name: str,
    nn_module: Any,
    prior: Prior,
    *args: Any,
    input_shape: Sequence[int] | None = None,
    apply_rng: Sequence[str] | None = None,
    mutable: Sequence[str] | None = None,
    **kwargs: Any,
) -> Callable[..., Any]:
    """:func:`flax_module` with parameters drawn from ``prior`` (NumPyro's
    ``random_flax_module``): leaf ``inner.dense.kernel`` (the dotted path in the params
    dict) becomes the ``sample`` site ``f"{name}/inner.dense.kernel"``, its prior expanded
    to the leaf's shape with every dim an event dim. Drawn leaves show as
    :class:`plait.nn.ParamShape` in ``f"{name}$params"``. Needs the extra ``flax``.

    Args:
        name: the network's name.
        nn_module: a ``flax.linen.Module``.
        prior: one distribution, a dict by leaf path (leaves it does not name stay
            learnable), or a callable ``(path, shape) -> distribution``.
        *args: example inputs for ``init`` (instead of ``input_shape``).
        input_shape: the shape of an example input for ``init``.
        apply_rng: extra rng kinds ``init`` needs (``["dropout"]``).
        mutable: the mutable collections (``["batch_stats"]``).
        **kwargs: keyword arguments of ``init``.

    Returns:
        ``functools.partial(apply, params)`` with the drawn parameters.

    Example:
        >>> import jax.numpy as jnp
        >>> import flax.linen as nn
        >>> import numpyro.distributions as dist
        >>> from plait.handlers import seed, trace
        >>> from plait.nn import random_flax_module
        >>> def model(x):
        ...     net = random_flax_module("net", nn.Dense(1), dist.Normal(0.0, 1.0),
        ...                              input_shape=(1, 3))
        ...     return net(x)
        >>> tr = trace(seed(model, rng_seed=0)).get_trace(jnp.ones((2, 3)))
        >>> [(k, v.value.shape) for k, v in tr.items() if v.type == "sample"]
        [('net/bias', (1,)), ('net/kernel', (3, 1))]
    """
    site = f"{name}$params"

    def register(params: Any) -> None:
        # Show drawn leaves by their shape in the params site (NumPyro's ParamShape).
        plan = plan_priors(name, params, prior, divider="/", path_of=dotted_path)
        param(site, plan.placeholders())

    params, apply = _network(
        name, nn_module, args, kwargs, input_shape, apply_rng, mutable, register
    )
    plan = plan_priors(name, params, prior, divider="/", path_of=dotted_path)
    return functools.partial(apply, plan.draw("/"))
