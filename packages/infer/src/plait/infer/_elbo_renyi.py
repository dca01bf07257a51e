"""``RenyiELBO``: Rényi's alpha-divergence bound (the IWAE bound at ``alpha = 0``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import jax.numpy as jnp
from jax import Array, lax, random
from jax.scipy.special import logsumexp

from plait import PlateFrame
from plait.handlers import seed
from plait.infer._elbo import ELBO, Loss
from plait.infer._elbo_checks import (
    check_model_guide_match,
    check_reparameterised,
    validate_model,
)
from plait.infer._log_probs import importance_traces

__all__ = ["RenyiELBO"]

_PLATES_ONLY = ("sample", "prng_key", "control_flow")


class RenyiELBO(ELBO):
    r"""Rényi's :math:`\alpha`-divergence variational bound (Li and Turner 2016),
    estimated with ``num_particles`` importance weights; ``alpha = 0`` is the
    importance-weighted autoencoder bound (Burda et al. 2016), tighter than the ELBO for
    ``alpha < 1``.

    The bound is computed separately along the plates that enclose every sample site
    (they may subsample); every particle shares one draw of the subsample indices.

    Args:
        alpha: the order, not 1.
        num_particles: the number of importance samples (at least 2 to gain anything).

    Raises:
        ValueError: ``alpha == 1`` (use ``Trace_ELBO``), or a plate that subsamples does
            not enclose every sample site.

    Example:
        >>> import jax
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.infer import RenyiELBO
        >>> model = lambda: sample("x", dist.Normal(0.0, 1.0))
        >>> guide = lambda: sample("x", dist.Normal(0.0, 1.0))  # exact: every weight is 1
        >>> abs(float(RenyiELBO(num_particles=4).loss(jax.random.key(0), {}, model, guide)))
        0.0
    """

    def __init__(self, alpha: float = 0, num_particles: int = 2) -> None:
        if alpha == 1:
            raise ValueError(
                "The order alpha should not be equal to 1. Please use Trace_ELBO for the "
                "case alpha = 1."
            )
        self.alpha = alpha
        super().__init__(num_particles=num_particles)

    def _single_particle_elbo(
        self,
        model: Callable[..., Any],
        guide: Callable[..., Any],
        param_map: Mapping[str, Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        rng_key: Array,
    ) -> tuple[Array, Array]:
        model_seed, guide_seed = random.split(rng_key)
        model_trace, guide_trace, model_lp, guide_lp = importance_traces(
            seed(model, model_seed),
            seed(guide, guide_seed),
            args,
            kwargs,
            param_map,
            check_covered=True,
        )
        check_reparameterised(guide_trace, "RenyiELBO")
        check_model_guide_match(model_trace, guide_trace)
        validate_model(model_trace)
        site_plates = {
            name: set(site.cond_indep_stack)
            for name, site in model_trace.items()
            if site.type == "sample"
        }
        indep: set[PlateFrame] = set.intersection(*site_plates.values()) if site_plates else set()
        every: set[PlateFrame] = set.union(*site_plates.values()) if site_plates else set()
        for frame in every - indep:
            if model_trace[frame.name].args[0] > frame.size:
                raise ValueError(
                    f"RenyiELBO only supports subsampling in plates that are common to all "
                    f"sample sites, e.g. a data plate that encloses the entire model; plate "
                    f"'{frame.name}' subsamples but does not enclose every site."
                )
        scale = 1.0
        for frame in indep:
            size = model_trace[frame.name].args[0]
            if size > frame.size:
                scale = scale * size / frame.size
        indep_dims = {frame.dim for frame in indep}
        totals = {}
        for kind, log_probs in (("guide", guide_lp), ("model", model_lp)):
            total = jnp.array(0.0)
            for lp in log_probs.values():
                squeeze: tuple[int, ...] = ()
                for dim in range(jnp.ndim(lp)):
                    if dim - jnp.ndim(lp) in indep_dims:
                        continue
                    lp = jnp.sum(lp, axis=dim, keepdims=True)
                    squeeze = (*squeeze, dim)
                total = total + jnp.squeeze(lp, squeeze)
            totals[kind] = total
        elbo = totals["model"] - totals["guide"]
        # The plate-wise bounds are taken on the unscaled densities; the subsampling
        # scale is applied to their sum.
        return elbo / scale, jnp.asarray(scale)

    def loss(
        self,
        rng_key: Array,
        param_map: Mapping[str, Any],
        model: Callable[..., Any],
        guide: Callable[..., Any],
        *args: Any,
        **kwargs: Any,
    ) -> Loss:
        plate_key, rng_key = random.split(rng_key)
        # One draw of the subsample indices for every particle.
        model = seed(model, plate_key, hide_types=_PLATES_ONLY)
        guide = seed(guide, plate_key, hide_types=_PLATES_ONLY)
        single = partial(self._single_particle_elbo, model, guide, param_map, args, kwargs)
        keys = random.split(rng_key, self.num_particles)
        elbos, plate_scale = self.vectorize_particles_fn(single, keys)
        scaled = (1.0 - self.alpha) * elbos
        avg_log_exp = logsumexp(scaled, axis=0) - jnp.log(self.num_particles)
        weights = jnp.exp(scaled - avg_log_exp)
        renyi = avg_log_exp / (1.0 - self.alpha)
        weighted = (lax.stop_gradient(weights) * elbos).mean(0)
        loss = -(lax.stop_gradient(renyi - weighted) + weighted)
        total: Array = loss.sum() * plate_scale[0]
        return total
