"""Maps between a model's constrained site values and the unconstrained space."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
from jax import Array
from numpyro.distributions import constraints
from numpyro.distributions.transforms import Transform

from plait.handlers import substitute, trace
from plait.infer._init import is_continuous_latent
from plait.infer._log_density import site_transform, unconstrained

__all__ = ["constrain_fn", "get_transforms", "transform_fn", "unconstrain_fn"]


def transform_fn(
    transforms: Mapping[str, Transform], params: Mapping[str, Any], invert: bool = False
) -> dict[str, Any]:
    """``params`` with ``transforms[name]`` (or its inverse) applied where one is given.

    Example:
        >>> import jax.numpy as jnp
        >>> from numpyro.distributions.transforms import ExpTransform
        >>> transform_fn({"s": ExpTransform()}, {"s": jnp.log(2.0), "m": 1.0})
        {'s': Array(2., dtype=float32, weak_type=True), 'm': 1.0}
    """
    if invert:
        return {k: transforms[k].inv(v) if k in transforms else v for k, v in params.items()}
    return {k: transforms[k](v) if k in transforms else v for k, v in params.items()}


def get_transforms(
    model: Callable[..., Any],
    model_args: tuple[Any, ...],
    model_kwargs: Mapping[str, Any] | None,
    params: Mapping[str, Any],
) -> dict[str, Transform]:
    """``biject_to`` of the support of each continuous latent, and of each param's
    constraint, traced with ``params`` substituted (they only fix the trace).

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.infer import get_transforms
        >>> model = lambda: sample("s", dist.Exponential(1.0))
        >>> type(get_transforms(model, (), {}, {"s": 1.0})["s"]).__name__
        'ExpTransform'
    """
    tr = trace(substitute(model, data=params)).get_trace(*model_args, **(model_kwargs or {}))
    transforms: dict[str, Transform] = {}
    for name, site in tr.items():
        if is_continuous_latent(site):
            transforms[name] = site_transform(site)
        elif site.type == "param":
            constraint = site.kwargs.get("constraint") or constraints.real
            transforms[name] = site_transform(site, constraint)
    return transforms


def unconstrain_fn(
    model: Callable[..., Any],
    model_args: tuple[Any, ...],
    model_kwargs: Mapping[str, Any] | None,
    params: Mapping[str, Any],
) -> dict[str, Any]:
    """The unconstrained values of the constrained site values ``params``.

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.infer import unconstrain_fn
        >>> model = lambda: sample("s", dist.Exponential(1.0))
        >>> float(unconstrain_fn(model, (), {}, {"s": 1.0})["s"])
        0.0
    """
    return transform_fn(get_transforms(model, model_args, model_kwargs, params), params, True)


def constrain_fn(
    model: Callable[..., Any],
    model_args: tuple[Any, ...],
    model_kwargs: Mapping[str, Any] | None,
    params: Mapping[str, Any],
    return_deterministic: bool = False,
    batch_ndims: int = 0,
) -> dict[str, Array]:
    """The constrained values of unconstrained ``params`` (latent samples through
    ``biject_to(support)``, params through ``biject_to(constraint)``).

    Args:
        model: the model.
        model_args: its positional arguments.
        model_kwargs: its keyword arguments.
        params: unconstrained values by site name.
        return_deterministic: also return the deterministic sites.
        batch_ndims: leading batch dims of every value in ``params`` (vmapped over).

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import deterministic, sample
        >>> from plait.infer import constrain_fn
        >>> def model():
        ...     s = sample("s", dist.Exponential(1.0))
        ...     deterministic("twice", 2 * s)
        >>> out = constrain_fn(model, (), {}, {"s": 0.0}, return_deterministic=True)
        >>> float(out["s"]), float(out["twice"])
        (1.0, 2.0)
    """
    kwargs = dict(model_kwargs or {})

    def single(position: Mapping[str, Any]) -> dict[str, Array]:
        replayed = unconstrained(model, params=position, log_det=False, constrain_params=True)
        tr = trace(replayed).get_trace(*model_args, **kwargs)
        return {
            name: site.value
            for name, site in tr.items()
            if name in position or (return_deterministic and site.type == "deterministic")
        }

    fn = single
    for _ in range(batch_ndims):
        fn = jax.vmap(fn)
    return fn(params)
