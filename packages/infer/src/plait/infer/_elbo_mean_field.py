"""``TraceMeanField_ELBO``: the ELBO with analytic KL divergences where they exist."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import jax.numpy as jnp
from jax import Array, random
from numpyro.distributions.kl import kl_divergence

from plait import Message, Trace
from plait.handlers import replay, seed, substitute, trace
from plait.infer._elbo import ELBO, Loss, LossWithMutableState, MapFn, mutable_values
from plait.infer._elbo import _mutable_result as mutable_result
from plait.infer._elbo_checks import (
    GUIDE_ENUM_HINT,
    TRACE_ELBO_HINT,
    check_model_guide_match,
    check_reparameterised,
    guide_covers,
    validate_model,
)
from plait.infer._log_density import _refuse_enumeration, site_log_prob

__all__ = ["TraceMeanField_ELBO"]


def _log_prob_sum(tr: Trace, name: str, site: Message) -> Array:
    return jnp.sum(site_log_prob(tr, name, site))


def _check_mean_field_requirement(model_trace: Trace, guide_trace: Trace) -> None:
    """Warn when the model and guide sample their shared sites in different orders (a
    sufficient check of the mean-field condition, as NumPyro's)."""
    model_sites = [n for n, s in model_trace.items() if s.type == "sample" and n in guide_trace]
    guide_sites = [n for n, s in guide_trace.items() if s.type == "sample" and n in model_trace]
    if model_sites != guide_sites:
        warnings.warn(
            "Failed to verify mean field restriction on the guide. To eliminate this "
            "warning, ensure model and guide sites occur in the same order.\nModel sites:\n  "
            + "\n  ".join(model_sites)
            + "\nGuide sites:\n  "
            + "\n  ".join(guide_sites),
            stacklevel=5,
        )


class TraceMeanField_ELBO(ELBO):
    """The ELBO with ``-KL(q || p)`` in closed form at every latent site where
    ``numpyro.distributions.kl_divergence`` knows the pair, and ``log p - log q`` at the
    others (NumPyro's ``TraceMeanField_ELBO``). Right for mean-field guides: a latent's
    parents in the model must not be its descendants in the guide.

    Args:
        num_particles: the number of particles averaged.
        vectorize_particles: map the particles with ``jax.vmap`` (``True``),
            ``jax.lax.map`` (``False``) or your own ``(fn, keys)`` callable.
        sum_sites: sum the per-site terms (else the loss is a dict by site name).

    Example:
        >>> import jax
        >>> import numpyro.distributions as dist
        >>> from plait import param, sample
        >>> from plait.infer import TraceMeanField_ELBO
        >>> model = lambda: sample("x", dist.Normal(0.0, 1.0))
        >>> guide = lambda: sample("x", dist.Normal(param("loc", 1.0), 1.0))
        >>> float(TraceMeanField_ELBO().loss(jax.random.key(0), {}, model, guide))  # KL = 1/2
        0.5
    """

    def __init__(
        self,
        num_particles: int = 1,
        vectorize_particles: bool | MapFn = True,
        sum_sites: bool = True,
    ) -> None:
        self.sum_sites = sum_sites
        super().__init__(num_particles, vectorize_particles)

    def loss_with_mutable_state(
        self,
        rng_key: Array,
        param_map: Mapping[str, Any],
        model: Callable[..., Any],
        guide: Callable[..., Any],
        *args: Any,
        **kwargs: Any,
    ) -> LossWithMutableState:
        def single(key: Array) -> tuple[Loss, dict[str, Any] | None]:
            params = dict(param_map)
            model_seed, guide_seed = random.split(key)
            guided = _refuse_enumeration(
                substitute(seed(guide, guide_seed), data=param_map), hint=GUIDE_ENUM_HINT
            )
            guide_trace = trace(guided).get_trace(*args, **kwargs)
            check_reparameterised(guide_trace, "TraceMeanField_ELBO")
            mutable_params = mutable_values(guide_trace)
            params.update(mutable_params)
            replayed = replay(seed(model, model_seed), trace=guide_trace)
            checked = _refuse_enumeration(
                guide_covers(replayed, guide_trace=guide_trace), hint=TRACE_ELBO_HINT
            )
            model_trace = trace(substitute(checked, data=params)).get_trace(*args, **kwargs)
            mutable_params.update(mutable_values(model_trace))
            check_model_guide_match(model_trace, guide_trace)
            validate_model(model_trace)
            _check_mean_field_requirement(model_trace, guide_trace)
            terms = _terms(model_trace, guide_trace)
            elbo: Loss = sum(terms.values(), start=jnp.array(0.0)) if self.sum_sites else terms
            return elbo, mutable_result(mutable_params, self.num_particles)

        return self._particles(rng_key, single)


def _terms(model_trace: Trace, guide_trace: Trace) -> dict[str, Array]:
    terms: dict[str, Array] = {}
    for name, model_site in model_trace.items():
        if model_site.type != "sample":
            continue
        if model_site.is_observed:
            terms[name] = _log_prob_sum(model_trace, name, model_site)
            continue
        guide_site = guide_trace[name]
        try:
            kl = kl_divergence(guide_site.fn, model_site.fn)
        except NotImplementedError:
            terms[name] = _log_prob_sum(model_trace, name, model_site) - _log_prob_sum(
                guide_trace, name, guide_site
            )
            continue
        scale = guide_site.scale
        if scale is not None and not (isinstance(scale, int | float) and scale == 1):
            kl = scale * kl
        terms[name] = -jnp.sum(kl)
    for name, site in guide_trace.items():
        if site.type == "sample" and name not in model_trace:
            terms[name] = -_log_prob_sum(guide_trace, name, site)
    return terms
