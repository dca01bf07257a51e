"""The log probability of a recorded site and of a whole trace (Pyro's
``Trace.log_prob_sum``): the one place plait computes a site's log density."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from jax import Array

from plait._message import Message, Trace
from plait.errors import SiteError, format_shapes

__all__ = ["log_prob_sum", "site_log_prob"]


def site_log_prob(site: Message, *, scaled: bool = True) -> Array:
    """``log_prob(value)`` of a recorded ``sample`` site (with its intermediates), times
    its ``scale`` unless ``scaled=False``; masks act through the distribution.

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import Message, site_log_prob
        >>> site = Message(type="sample", name="x", fn=dist.Normal(0.0, 1.0), value=0.0,
        ...                scale=2.0)
        >>> round(float(site_log_prob(site)), 4), round(float(site_log_prob(site, scaled=False)), 4)
        (-1.8379, -0.9189)
    """
    fn = site.fn
    if site.intermediates:
        lp = fn.log_prob(site.value, site.intermediates)
    else:
        lp = fn.log_prob(site.value)
    scale = site.scale
    if scaled and scale is not None and not (isinstance(scale, int | float) and scale == 1):
        lp = scale * lp
    return jnp.asarray(lp)


def log_prob_sum(trace: Trace) -> Array:
    """The sum over the ``sample`` sites of ``trace`` of their scaled log probabilities
    (starting from ``0.0``): the log joint density of a run.

    Raises:
        SiteError: a site's ``log_prob`` fails; the message shows the trace's shapes.

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import log_prob_sum, sample
        >>> from plait.handlers import trace
        >>> tr = trace(lambda: sample("x", dist.Normal(0.0, 1.0), obs=0.0)).get_trace()
        >>> round(float(log_prob_sum(tr)), 4)
        -0.9189
    """
    total: Any = 0.0
    for name, site in trace.items():
        if site.type != "sample":
            continue
        try:
            lp = site_log_prob(site)
        except (ValueError, TypeError, IndexError) as error:
            if isinstance(error, SiteError):
                raise
            raise SiteError(
                name,
                f"the log density of site '{name}' failed: {type(error).__name__}: {error}\n"
                f"The model's sites:\n{format_shapes(trace)}",
            ) from error
        total = total + jnp.sum(lp)
    return jnp.asarray(total)
