"""The ELBO base class and ``Trace_ELBO`` (NumPyro's, with mutable state, several
particles, multi-sample guides and per-site terms)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias, TypedDict

import jax
import jax.numpy as jnp
from jax import Array, random

from plait import Trace
from plait.handlers import replay, seed, substitute
from plait.infer._elbo_checks import (
    GUIDE_ENUM_HINT,
    TRACE_ELBO_HINT,
    check_model_guide_match,
    check_reparameterised,
    guide_covers,
    validate_model,
)
from plait.infer._log_density import _refuse_enumeration
from plait.infer._log_probs import compute_log_probs

__all__ = ["ELBO", "LossWithMutableState", "Trace_ELBO"]

Loss: TypeAlias = Array | dict[str, Array]
MapFn: TypeAlias = Callable[[Callable[[Array], Any], Array], Any]


class LossWithMutableState(TypedDict):
    """What :meth:`ELBO.loss_with_mutable_state` returns."""

    loss: Loss
    mutable_state: dict[str, Any] | None


def _apply_vmap(fn: Callable[[Array], Any], keys: Array) -> Any:
    return jax.vmap(fn)(keys)


class ELBO:
    """Base of the evidence lower bounds: minus the ELBO, estimated from
    ``num_particles`` draws of the guide.

    Args:
        num_particles: the number of draws (particles) averaged.
        vectorize_particles: ``True`` maps the particles with ``jax.vmap``, ``False``
            with ``jax.lax.map``; a callable ``(fn, keys) -> results`` maps them yourself.

    Subclasses implement :meth:`loss` or :meth:`loss_with_mutable_state`.
    """

    can_infer_discrete = False
    """Whether the ELBO handles discrete latent sites (enumerated or score-function)."""

    def __init__(self, num_particles: int = 1, vectorize_particles: bool | MapFn = True) -> None:
        if num_particles < 1:
            raise ValueError(f"num_particles must be at least 1, got {num_particles}.")
        self.num_particles = num_particles
        self.vectorize_particles = vectorize_particles
        self.vectorize_particles_fn = self._assign_vectorize_particles_fn(vectorize_particles)

    @staticmethod
    def _assign_vectorize_particles_fn(vectorize_particles: bool | MapFn) -> MapFn:
        if vectorize_particles is True:
            return _apply_vmap
        if vectorize_particles is False:
            return jax.lax.map
        if callable(vectorize_particles):
            return vectorize_particles
        raise ValueError(
            f"vectorize_particles needs to be a boolean or a callable, got {vectorize_particles!r}."
        )

    def loss(
        self,
        rng_key: Array,
        param_map: Mapping[str, Any],
        model: Callable[..., Any],
        guide: Callable[..., Any],
        *args: Any,
        **kwargs: Any,
    ) -> Loss:
        """Minus the ELBO at the constrained params ``param_map``."""
        return self.loss_with_mutable_state(rng_key, param_map, model, guide, *args, **kwargs)[
            "loss"
        ]

    def loss_with_mutable_state(
        self,
        rng_key: Array,
        param_map: Mapping[str, Any],
        model: Callable[..., Any],
        guide: Callable[..., Any],
        *args: Any,
        **kwargs: Any,
    ) -> LossWithMutableState:
        """Like :meth:`loss`, also returning the new values of the ``mutable`` sites."""
        raise NotImplementedError(f"{type(self).__name__} does not support mutable state.")

    def _particles(
        self, rng_key: Array, single: Callable[[Array], tuple[Loss, dict[str, Any] | None]]
    ) -> LossWithMutableState:
        """Minus the mean of ``single``'s ELBOs over the particles (NumPyro's order)."""
        if self.num_particles == 1:
            elbo, mutable_state = single(rng_key)
            return {"loss": jax.tree.map(jnp.negative, elbo), "mutable_state": mutable_state}
        keys = random.split(rng_key, self.num_particles)
        elbos, mutable_state = self.vectorize_particles_fn(single, keys)
        return {
            "loss": jax.tree.map(lambda x: -jnp.mean(x), elbos),
            "mutable_state": mutable_state,
        }


def mutable_values(tr: Trace) -> dict[str, Any]:
    """The values of the ``mutable`` sites of ``tr``."""
    return {name: site.value for name, site in tr.items() if site.type == "mutable"}


def _mutable_result(mutable_params: dict[str, Any], num_particles: int) -> dict[str, Any] | None:
    if not mutable_params:
        return None
    if num_particles == 1:
        return mutable_params
    warnings.warn("mutable state is currently ignored when num_particles > 1.", stacklevel=5)
    return None


def elbo_terms(
    model_log_probs: Mapping[str, Array], guide_log_probs: Mapping[str, Array], sum_sites: bool
) -> Loss:
    """``log p - log q`` per site (0 where one side lacks the site), summed or not."""
    names = list(dict.fromkeys([*model_log_probs, *guide_log_probs]))
    terms = {
        name: model_log_probs.get(name, jnp.array(0.0)) - guide_log_probs.get(name, jnp.array(0.0))
        for name in names
    }
    if sum_sites:
        return sum(terms.values(), start=jnp.array(0.0))
    return terms


class Trace_ELBO(ELBO):
    """The ELBO summed over the sites of the guide and the model replayed against it
    (NumPyro's ``Trace_ELBO``); guide sites must be reparameterisable.

    Args:
        num_particles: the number of particles averaged.
        vectorize_particles: map the particles with ``jax.vmap`` (``True``),
            ``jax.lax.map`` (``False``) or your own ``(fn, keys)`` callable.
        multi_sample_guide: the guide draws several samples per site along a leading
            dim; the model runs once per sample (``vmap``) and their terms are summed.
        sum_sites: sum the per-site terms (else the loss is a dict by site name).

    Example:
        >>> import jax
        >>> import numpyro.distributions as dist
        >>> from plait import param, sample
        >>> from plait.infer import Trace_ELBO
        >>> model = lambda: sample("x", dist.Normal(0.0, 1.0))
        >>> guide = lambda: sample("x", dist.Normal(param("loc", 0.0), 1.0))
        >>> loss = Trace_ELBO().loss(jax.random.key(0), {"loc": 0.0}, model, guide)
        >>> float(loss) == 0.0  # guide equals the prior: the KL is zero
        True
    """

    def __init__(
        self,
        num_particles: int = 1,
        vectorize_particles: bool | MapFn = True,
        multi_sample_guide: bool = False,
        sum_sites: bool = True,
    ) -> None:
        self.multi_sample_guide = multi_sample_guide
        self.sum_sites = sum_sites
        super().__init__(num_particles=num_particles, vectorize_particles=vectorize_particles)

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
            guided = _refuse_enumeration(seed(guide, guide_seed), hint=GUIDE_ENUM_HINT)
            guide_log_probs, guide_trace = compute_log_probs(guided, args, kwargs, param_map)
            check_reparameterised(guide_trace, "Trace_ELBO")
            mutable_params = mutable_values(guide_trace)
            params.update(mutable_params)
            if self.multi_sample_guide:
                model_log_probs = _multi_sample_log_probs(
                    model, model_seed, guide_trace, params, args, kwargs
                )
            else:
                replayed = replay(seed(model, model_seed), trace=guide_trace)
                checked = _refuse_enumeration(
                    guide_covers(replayed, guide_trace=guide_trace), hint=TRACE_ELBO_HINT
                )
                model_log_probs, model_trace = compute_log_probs(checked, args, kwargs, params)
                check_model_guide_match(model_trace, guide_trace)
                validate_model(model_trace)
                mutable_params.update(mutable_values(model_trace))
            elbo = elbo_terms(model_log_probs, guide_log_probs, self.sum_sites)
            return elbo, _mutable_result(mutable_params, self.num_particles)

        return self._particles(rng_key, single)


def _multi_sample_log_probs(
    model: Callable[..., Any],
    model_seed: Array,
    guide_trace: Trace,
    params: Mapping[str, Any],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
) -> dict[str, Array]:
    """The model's site log densities summed over the guide's leading sample dim."""
    plates = {name: site.value for name, site in guide_trace.items() if site.type == "plate"}
    num_samples = next(
        (int(jnp.shape(s.value)[0]) for s in guide_trace.values() if s.type == "sample"), None
    )
    if num_samples is None:
        raise ValueError("Trace_ELBO(multi_sample_guide=True): the guide has no sample sites.")
    latents = {
        name: site.value
        for name, site in guide_trace.items()
        if (site.type == "sample" and jnp.size(site.value) > 0) or site.type == "deterministic"
    }

    def one(key: Array, latent: Mapping[str, Any]) -> dict[str, Array]:
        with seed(rng_seed=key), substitute(data={**latent, **plates}):
            log_probs, _ = compute_log_probs(model, args, kwargs, params)
        return log_probs

    per_sample = jax.vmap(one)(random.split(model_seed, num_samples), latents)
    return {name: jnp.sum(v, axis=0) for name, v in per_sample.items()}
