"""``smooth``: the posterior marginals of the collapsed sites given parameter values."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from plait.gaussian._collapse import collapse
from plait.gaussian._run import SMOOTHED, Marginal
from plait.handlers import substitute

__all__ = ["smooth"]


def smooth(
    model: Callable[..., Any],
    model_args: tuple[Any, ...] = (),
    model_kwargs: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
) -> dict[str, Marginal]:
    """The posterior mean and covariance of every collapsed site, given ``params``.

    The model runs once under :class:`collapse` with ``params`` substituted (the values
    of its other sites: parameters, noise scales), and each collapsed chain is smoothed
    exactly (Rauch-Tung-Striebel, `plait.kernels.kalman_smoother`) given its
    observations. Works under ``jax.jit`` and ``jax.vmap`` (over posterior samples).

    Args:
        model: the model (collapsed or not: it is run under ``collapse`` either way).
        model_args: its positional arguments.
        model_kwargs: its keyword arguments.
        params: values of sites by name (constrained, as ``mcmc.get_samples()`` gives
            them for one draw).

    Returns:
        Per collapsed site, a :class:`Marginal`: ``mean`` with the site's shape (stacked
        over time, ``(T, *shape)``, for a site of a ``scan`` body), and ``covariance``:
        the variances for a ``Normal`` site (the mean's shape), the covariance of each
        event for a ``MultivariateNormal`` one (``mean.shape + (d,)``).

    Example:
        >>> import jax.numpy as jnp
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.control_flow import scan
        >>> from plait.gaussian import smooth
        >>> def walk(y):
        ...     def step(x_prev, y_t):
        ...         x = sample("x", dist.Normal(x_prev, 1.0))
        ...         sample("y", dist.Normal(x, 1.0), obs=y_t)
        ...         return x, None
        ...     scan(step, sample("x_0", dist.Normal(0.0, 1.0)), y)
        >>> post = smooth(walk, (jnp.array([0.5, 1.0, 0.2]),))
        >>> [round(float(m), 4) for m in post["x"].mean]
        [0.4476, 0.619, 0.4095]
        >>> post["x"].covariance.shape, post["x_0"].mean.shape
        ((3,), ())
    """
    kwargs = dict(model_kwargs or {})
    run = substitute(model, data=dict(params)) if params else model
    collected: dict[str, Marginal] = {}
    token = SMOOTHED.set(collected)
    try:
        collapse(run)(*model_args, **kwargs)
    finally:
        SMOOTHED.reset(token)
    return collected
