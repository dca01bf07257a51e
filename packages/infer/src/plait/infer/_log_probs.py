"""Per-site log densities: ``compute_log_probs``, ``log_likelihood`` and the importance
traces of a guide and the model replayed against it (what the ELBOs sum)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array, lax

from plait import Message, Messenger, Trace
from plait.errors import SiteError
from plait.handlers import replay, substitute, trace
from plait.infer._elbo_checks import guide_covers
from plait.infer._log_density import site_log_prob

__all__ = [
    "batch_map",
    "compute_log_probs",
    "importance_traces",
    "log_likelihood",
    "trace_log_probs",
]


def _check_shape(name: str, site: Message) -> None:
    value_shape = tuple(jnp.shape(site.value))
    fn = site.fn
    model_shape = tuple(fn.batch_shape) + tuple(fn.event_shape)
    try:
        lax.broadcast_shapes(value_shape, model_shape)
    except ValueError:
        raise SiteError(
            name,
            f"Model and guide shapes disagree at site: '{name}': {model_shape} vs "
            f"{value_shape}. The value the guide gave '{name}' does not broadcast with the "
            "model's distribution there.",
        ) from None


def trace_log_probs(tr: Trace, sum_log_prob: bool = True) -> dict[str, Array]:
    """``scale * log_prob(value)`` of every sample site of ``tr`` (summed, or not)."""
    out: dict[str, Array] = {}
    for name, site in tr.items():
        if site.type != "sample":
            continue
        if not site.intermediates:
            _check_shape(name, site)
        lp = site_log_prob(tr, name, site)
        out[name] = jnp.sum(lp) if sum_log_prob else lp
    return out


def compute_log_probs(
    model: Callable[..., Any],
    model_args: tuple[Any, ...],
    model_kwargs: Mapping[str, Any],
    params: Mapping[str, Any],
    sum_log_prob: bool = True,
) -> tuple[dict[str, Array], Trace]:
    """The log density of each sample site of ``model`` with ``params`` substituted.

    Args:
        model: the model.
        model_args: its positional arguments.
        model_kwargs: its keyword arguments.
        params: values by site name.
        sum_log_prob: sum each site's log density over its batch dims.

    Returns:
        ``(log_probs, trace)``: ``scale * log_prob(value)`` by site name, and the trace.

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import plate, sample
        >>> from plait.infer import compute_log_probs
        >>> def model():
        ...     mu = sample("mu", dist.Normal(0.0, 1.0))
        ...     with plate("data", 2):
        ...         sample("y", dist.Normal(mu, 1.0), obs=jax.numpy.zeros(2))
        >>> lp, _ = compute_log_probs(model, (), {}, {"mu": 0.0}, sum_log_prob=False)
        >>> lp["y"].shape, round(float(lp["mu"]), 4)
        ((2,), -0.9189)
    """
    substituted = substitute(model, data=params) if params else model
    tr = trace(substituted).get_trace(*model_args, **model_kwargs)
    return trace_log_probs(tr, sum_log_prob), tr


class _stop_nonreparam_gradient(Messenger[..., Any]):
    """Stop gradients through the values of latent sites without a reparameterised
    sampler (NumPyro's ``_without_rsample_stop_gradient``)."""

    def postprocess_sample(self, msg: Message) -> None:
        if not msg.is_observed and not getattr(msg.fn, "has_rsample", True):
            msg.value = lax.stop_gradient(msg.value)
            msg.intermediates = []


def importance_traces(
    model: Callable[..., Any],
    guide: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    params: Mapping[str, Any],
    *,
    check_covered: bool = False,
) -> tuple[Trace, Trace, dict[str, Array], dict[str, Array]]:
    """The guide's trace, the model's replayed against it, and each one's unsummed site
    log densities (NumPyro's ``get_importance_trace``): gradients stop at latent guide
    sites without a reparameterised sampler. With ``check_covered``, a model latent the
    guide does not draw is an error (as in :class:`Trace_ELBO`)."""
    guide_run = substitute(guide, data=params) if params else guide
    # Outside the trace, so that the trace records the stopped values (postprocessing
    # runs outermost first).
    with _stop_nonreparam_gradient():
        guide_trace = trace(guide_run).get_trace(*args, **kwargs)
    replayed: Callable[..., Any] = replay(model, trace=guide_trace)
    if check_covered:
        replayed = guide_covers(replayed, guide_trace=guide_trace)
    model_run = substitute(replayed, data=params) if params else replayed
    model_trace = trace(model_run).get_trace(*args, **kwargs)
    return (
        model_trace,
        guide_trace,
        trace_log_probs(model_trace, sum_log_prob=False),
        trace_log_probs(guide_trace, sum_log_prob=False),
    )


def batch_map(fn: Callable[[Any], Any], xs: Any, batch_ndims: int, parallel: bool) -> Any:
    """``fn`` mapped over the ``batch_ndims`` leading dims of the pytree ``xs``:
    ``jax.vmap`` with ``parallel``, else ``lax.map`` (NumPyro's ``soft_vmap`` with chunks
    of one); a batch of one runs ``fn`` once."""
    leaves = jax.tree.leaves(xs)
    batch_shape = tuple(jnp.shape(leaves[0])[:batch_ndims]) if leaves else ()
    size = math.prod(batch_shape)
    flat = jax.tree.map(lambda x: jnp.reshape(x, (size, *jnp.shape(x)[batch_ndims:])), xs)
    if size == 1:
        ys = jax.tree.map(lambda y: y[None], fn(jax.tree.map(lambda x: x[0], flat)))
    elif parallel:
        ys = jax.vmap(fn)(flat)
    else:
        ys = lax.map(fn, flat)
    return jax.tree.map(lambda y: jnp.reshape(y, batch_shape + jnp.shape(y)[1:]), ys)


def log_likelihood(
    model: Callable[..., Any],
    posterior_samples: Mapping[str, Any],
    *args: Any,
    parallel: bool = False,
    batch_ndims: int = 1,
    **kwargs: Any,
) -> dict[str, Array]:
    """The log likelihood of each observed site of ``model``, per posterior draw.

    Args:
        model: the model.
        posterior_samples: draws of the latents by site name, with ``batch_ndims``
            leading batch dims.
        *args: the model's positional arguments.
        parallel: ``jax.vmap`` over the draws (else ``lax.map``, one at a time).
        batch_ndims: leading batch dims of ``posterior_samples`` (0 for one draw, 2 for
            ``(chain, draw)``).
        **kwargs: the model's keyword arguments.

    Returns:
        ``log_prob(obs)`` of each observed site (unsummed), with the batch dims first.

    Raises:
        ValueError: the draws do not share their leading batch dims.

    Example:
        >>> import jax.numpy as jnp
        >>> import numpyro.distributions as dist
        >>> from plait import plate, sample
        >>> from plait.infer import log_likelihood
        >>> def model(y):
        ...     mu = sample("mu", dist.Normal(0.0, 1.0))
        ...     with plate("data", 3):
        ...         sample("y", dist.Normal(mu, 1.0), obs=y)
        >>> ll = log_likelihood(model, {"mu": jnp.zeros(4)}, jnp.zeros(3))
        >>> ll["y"].shape, round(float(ll["y"][0, 0]), 4)
        ((4, 3), -0.9189)
    """

    def single(samples: Any) -> dict[str, Array]:
        run = substitute(model, data=samples) if isinstance(samples, dict) else model
        tr = trace(run).get_trace(*args, **kwargs)
        return {
            name: site.fn.log_prob(site.value)
            for name, site in tr.items()
            if site.type == "sample" and site.is_observed
        }

    batch_shape: tuple[int, ...] | None = None
    first = None
    for name, value in posterior_samples.items():
        shape = tuple(jnp.shape(value))[:batch_ndims]
        if batch_shape is not None and shape != batch_shape:
            raise ValueError(
                f"log_likelihood: batch shapes at site {name} and {first} should be the "
                f"same, but got {shape} and {batch_shape} (batch_ndims={batch_ndims})."
            )
        batch_shape, first = shape, first or name
    if batch_shape is None:
        samples: Any = jnp.zeros((1,) * batch_ndims)
    else:
        samples = dict(posterior_samples)
    if batch_ndims == 0:
        return single(samples)
    return batch_map(single, samples, batch_ndims, parallel)  # type: ignore[no-any-return]
