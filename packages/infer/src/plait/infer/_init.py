"""Initialisation strategies: where MCMC chains and autoguides start.

A strategy is a function of a site's message that returns the site's initial
(constrained) value, or ``None`` to leave the site to the model. It is used as
``substitute(seed(model, key), substitute_fn=strategy)``, so the message carries a key in
``msg.kwargs["rng_key"]`` and its distribution is already expanded by the plates. Each
``init_to_*`` called without a site returns the strategy with its options bound, as
NumPyro's do: ``init_strategy=init_to_uniform(radius=1.0)``.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

import jax
import jax.numpy as jnp
from jax import random

from plait import Message
from plait.infer._log_density import site_transform

__all__ = [
    "InitStrategy",
    "init_to_feasible",
    "init_to_mean",
    "init_to_median",
    "init_to_sample",
    "init_to_uniform",
    "init_to_value",
]

InitStrategy: TypeAlias = Callable[[Message], Any]
"""A function of a site's message returning its initial value, or ``None``."""


def is_continuous_latent(msg: Message) -> bool:
    """A latent sample site with a continuous support (what inference initialises)."""
    if msg.type != "sample" or msg.is_observed:
        return False
    support = getattr(msg.fn, "support", None)
    return support is not None and not support.is_discrete


def _keeps_value(site: Message, strategy: str) -> bool:
    """Whether a continuous latent already has a value (set by a handler inside), which
    the strategy keeps, warning as NumPyro does."""
    if site.value is None:
        return False
    warnings.warn(
        f"{strategy}() skipping initialization of site '{site.name}' which already stores a value.",
        UserWarning,
        stacklevel=4,
    )
    return True


def _key_and_shape(msg: Message) -> tuple[Any, tuple[int, ...]]:
    key = msg.kwargs.get("rng_key")
    if key is None:
        key = random.key(0)
    sample_shape = tuple(msg.kwargs.get("sample_shape", ()))
    return key, sample_shape


def init_to_uniform(site: Message | None = None, *, radius: float = 2.0) -> Any:
    """Start each continuous latent uniformly in ``(-radius, radius)`` on the unconstrained
    space (NumPyro's default).

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.handlers import seed, substitute
        >>> from plait.infer import init_to_uniform
        >>> import jax.numpy as jnp
        >>> model = lambda: sample("s", dist.Exponential(1.0))
        >>> s = seed(substitute(model, substitute_fn=init_to_uniform(radius=1.0)), 0)()
        >>> bool(jnp.exp(-1.0) < s < jnp.exp(1.0))
        True
    """
    if site is None:
        return functools.partial(init_to_uniform, radius=radius)
    if not is_continuous_latent(site):
        return None
    if _keeps_value(site, "init_to_uniform"):
        return site.value
    key, sample_shape = _key_and_shape(site)
    transform = site_transform(site)
    shape = sample_shape + tuple(transform.inverse_shape(tuple(site.fn.shape())))
    return transform(random.uniform(key, shape, minval=-radius, maxval=radius))


def init_to_feasible(site: Message | None = None) -> Any:
    """Start each continuous latent at zero on the unconstrained space.

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.handlers import substitute
        >>> from plait.infer import init_to_feasible
        >>> model = lambda: sample("s", dist.Exponential(1.0))
        >>> float(substitute(model, substitute_fn=init_to_feasible)())
        1.0
    """
    if site is None:
        return init_to_feasible
    if not is_continuous_latent(site):
        return None
    if _keeps_value(site, "init_to_uniform"):  # NumPyro's: feasible is uniform, radius 0
        return site.value
    _, sample_shape = _key_and_shape(site)
    transform = site_transform(site)
    shape = sample_shape + tuple(transform.inverse_shape(tuple(site.fn.shape())))
    return transform(jnp.zeros(shape))


def init_to_sample(site: Message | None = None) -> Any:
    """Start each continuous latent at a draw from its prior (NumPyro's: the median of
    one draw, taken on the unconstrained space).

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.handlers import seed, substitute
        >>> from plait.infer import init_to_sample
        >>> model = lambda: sample("s", dist.Exponential(1.0))
        >>> bool(seed(substitute(model, substitute_fn=init_to_sample), 0)() > 0)
        True
    """
    if site is None:
        return init_to_sample
    return _median(site, 1, "init_to_median")  # NumPyro's: sample is median of one


def init_to_median(site: Message | None = None, *, num_samples: int = 15) -> Any:
    """Start each continuous latent at the median of ``num_samples`` prior draws, taken on
    the unconstrained space (so a simplex stays a simplex), as NumPyro does.

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.handlers import seed, substitute
        >>> from plait.infer import init_to_median
        >>> model = lambda: sample("m", dist.Normal(3.0, 0.01))
        >>> round(float(seed(substitute(model, substitute_fn=init_to_median), 0)()), 1)
        3.0
        >>> model = lambda: sample("p", dist.Dirichlet(jnp.ones(3)))
        >>> p = seed(substitute(model, substitute_fn=init_to_median), 0)()
        >>> round(float(p.sum()), 5)
        1.0
    """
    if site is None:
        return functools.partial(init_to_median, num_samples=num_samples)
    return _median(site, num_samples, "init_to_median")


def _median(site: Message, num_samples: int, strategy: str) -> Any:
    if not is_continuous_latent(site):
        return None
    if _keeps_value(site, strategy):
        return site.value
    key, sample_shape = _key_and_shape(site)
    try:
        draws = site.fn.sample(key, (num_samples, *sample_shape))
    except NotImplementedError:
        return init_to_uniform(site)
    transform = site_transform(site)
    return transform(jnp.median(transform.inv(draws), axis=0))


def init_to_mean(site: Message | None = None) -> Any:
    """Start each continuous latent at its prior mean (the median where the distribution
    has no mean), as NumPyro does.

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.handlers import substitute
        >>> from plait.infer import init_to_mean
        >>> model = lambda: sample("s", dist.Gamma(2.0, 4.0))
        >>> float(substitute(model, substitute_fn=init_to_mean)())
        0.5
    """
    if site is None:
        return init_to_mean
    if not is_continuous_latent(site):
        return None
    if _keeps_value(site, "init_to_mean"):
        return site.value
    try:
        mean = 1.0 * site.fn.mean
    except (NotImplementedError, ValueError):
        return _median(site, 15, "init_to_mean")
    _, sample_shape = _key_and_shape(site)
    if sample_shape:
        mean = jnp.broadcast_to(mean, sample_shape + jnp.shape(mean))
    if not isinstance(mean, jax.core.Tracer) and bool(jnp.all(jnp.isfinite(mean))):
        return mean
    # No finite mean (Cauchy, StudentT with df <= 1): NumPyro starts there and finds no
    # valid start; start at the median instead.
    return jnp.where(jnp.isfinite(mean), mean, _median(site, 15, "init_to_mean"))


def init_to_value(site: Message | None = None, *, values: Mapping[str, Any] | None = None) -> Any:
    """Start the sites named in ``values`` there (constrained values), the others as
    :func:`init_to_uniform` does.

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.handlers import substitute
        >>> from plait.infer import init_to_value
        >>> model = lambda: sample("s", dist.Exponential(1.0))
        >>> float(substitute(model, substitute_fn=init_to_value(values={"s": 2.5}))())
        2.5
    """
    if site is None:
        return functools.partial(init_to_value, values=dict(values or {}))
    name = site.name
    if (
        site.type == "sample"
        and not site.is_observed
        and values
        and name is not None
        and name in values
    ):
        return values[name]
    return init_to_uniform(site)
