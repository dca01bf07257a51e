"""How a Gibbs-type kernel conditions its inner kernel's model on the Gibbs sites.

The inner HMC / NUTS kernel runs on ``conditioned(model)``, which reads the Gibbs sites'
values from a reserved keyword argument (NumPyro's ``_gibbs_sites``) and observes them
with :class:`plait.handlers.condition`; :func:`with_conditioning` adds values to it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from plait import Trace
from plait.handlers import condition
from plait.infer._hmc_kernel import HMC
from plait.infer._init import init_to_sample
from plait.infer._util import prototype_trace

__all__ = [
    "GIBBS_SITES_KWARG",
    "conditioned",
    "conditioned_postprocess",
    "discrete_latent_sites",
    "init_conditioned",
    "restart_inner",
    "support_sizes",
    "with_conditioning",
]

GIBBS_SITES_KWARG = "_gibbs_sites"
"""The model keyword through which the Gibbs sites' values reach the inner kernel."""

Values = dict[str, Array]


def _conditioned_model(model: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    values = kwargs.pop(GIBBS_SITES_KWARG, {})
    with condition(data=values):
        return model(*args, **kwargs)


def conditioned(model: Callable[..., Any]) -> Callable[..., Any]:
    """``model`` observing the sites given in its ``_gibbs_sites`` keyword argument
    (idempotent).

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.handlers import trace
        >>> model = conditioned(lambda: sample("c", dist.Bernoulli(0.5)))
        >>> site = trace(model).get_trace(_gibbs_sites={"c": 1})["c"]
        >>> site.is_observed, site.value
        (True, 1)
    """
    if isinstance(model, partial) and model.func is _conditioned_model:
        return model
    return partial(_conditioned_model, model)


def with_conditioning(model_kwargs: dict[str, Any] | None, values: Values) -> dict[str, Any]:
    """A copy of ``model_kwargs`` whose ``_gibbs_sites`` also holds ``values``."""
    out = dict(model_kwargs or {})
    out[GIBBS_SITES_KWARG] = {**out.get(GIBBS_SITES_KWARG, {}), **values}
    return out


def init_conditioned(
    model: Callable[..., Any],
    inner_kernel: Any,
    sites: Sequence[str],
    keys: tuple[Array, Array],
    num_warmup: int,
    init_params: Any,
    model_args: tuple[Any, ...],
    model_kwargs: dict[str, Any],
) -> tuple[Values, Any]:
    """The Gibbs ``sites``' first values and the inner kernel's initial state.

    A Gibbs site takes its value from ``init_params`` where given, else from a draw of the
    prior (``keys[0]``); the inner kernel is initialised (``keys[1]``) on the rest of
    ``init_params`` with the model conditioned on those values.
    """
    key_trace, key_inner = keys
    params = dict(init_params or {})
    tr = prototype_trace(key_trace, conditioned(model), init_to_sample, model_args, model_kwargs)
    values = {
        name: jnp.asarray(params.pop(name)) if name in params else jnp.asarray(tr[name].value)
        for name in sites
    }
    inner_state = inner_kernel.init(
        key_inner, num_warmup, params or None, model_args, with_conditioning(model_kwargs, values)
    )
    return values, inner_state


def conditioned_postprocess(
    inner_kernel: Any,
    sites: Sequence[str],
    model_args: tuple[Any, ...],
    model_kwargs: dict[str, Any],
) -> Callable[[Values], Values]:
    """A Gibbs-type kernel's ``postprocess_fn``: the Gibbs ``sites`` as they are, the rest
    through the inner kernel's ``postprocess_fn`` of the model conditioned on them."""

    def fn(z: Values) -> Values:
        gibbs = {k: v for k, v in z.items() if k in sites}
        inner = {k: v for k, v in z.items() if k not in sites}
        kwargs = with_conditioning(model_kwargs, gibbs)
        return {**gibbs, **inner_kernel.postprocess_fn(model_args, kwargs)(inner)}

    return fn


def discrete_latent_sites(tr: Trace) -> tuple[str, ...]:
    """The latent sample sites with a finite (enumerable) support that are not marked
    ``infer={"enumerate": "parallel"}``.

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.handlers import seed, trace
        >>> def model():
        ...     sample("c", dist.Categorical(probs=jax.numpy.ones(3) / 3))
        ...     sample("e", dist.Bernoulli(0.5), infer={"enumerate": "parallel"})
        ...     sample("x", dist.Normal(0.0, 1.0))
        >>> discrete_latent_sites(trace(seed(model, 0)).get_trace())
        ('c',)
    """
    return tuple(
        name
        for name, site in tr.items()
        if site.type == "sample"
        and not site.is_observed
        and getattr(site.fn, "has_enumerate_support", False)
        and site.infer.get("enumerate") != "parallel"
    )


def support_sizes(tr: Trace, sites: Sequence[str]) -> np.ndarray:
    """The support size of each flat coordinate of the discrete ``sites``, in the order
    ``ravel_pytree`` flattens a dict of their values (sorted names).

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import plate, sample
        >>> from plait.handlers import seed, trace
        >>> def model():
        ...     sample("b", dist.Bernoulli(0.5))
        ...     with plate("n", 2):
        ...         sample("a", dist.Categorical(probs=jax.numpy.ones(3) / 3))
        >>> support_sizes(trace(seed(model, 0)).get_trace(), ["b", "a"]).tolist()
        [3, 3, 2]
    """
    sizes = [
        np.broadcast_to(
            np.asarray(tr[name].fn.enumerate_support(False).shape[0], np.int32),
            np.shape(tr[name].value),
        ).ravel()
        for name in sorted(sites)
    ]
    return np.concatenate(sizes) if sizes else np.zeros(0, np.int32)


def _row(x: Any, chain: int) -> Any:
    return x[chain : chain + 1]


def _set_row(old: Any, new: Any, chain: int) -> Any:
    return jnp.asarray(old).at[chain].set(new[0])


def restart_inner(
    inner: HMC,
    hmc_state: Any,
    values: Values,
    model_args: tuple[Any, ...],
    model_kwargs: dict[str, Any],
) -> Any:
    """The inner kernel's initial states (one row per chain), each chain whose start is
    not finite repaired by the inner kernel's ``check_init`` under that chain's Gibbs
    values (or its error naming the site)."""
    valid = np.isfinite(np.asarray(hmc_state.potential_energy)).reshape(-1)
    for grad in jax.tree_util.tree_leaves(hmc_state.z_grad):
        valid &= np.isfinite(np.asarray(grad).reshape(valid.shape[0], -1)).all(-1)
    for chain in np.flatnonzero(~valid).tolist():
        one = jax.tree_util.tree_map(partial(_row, chain=chain), hmc_state)
        chain_values = {k: np.asarray(v)[chain] for k, v in values.items()}
        fixed = inner.check_init(one, model_args, with_conditioning(model_kwargs, chain_values))
        hmc_state = jax.tree_util.tree_map(partial(_set_row, chain=chain), hmc_state, fixed)
    return hmc_state
