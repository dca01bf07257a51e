"""``TraceEnum_ELBO``: the ELBO with the model's enumerated discrete sites summed out."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from jax import Array, random

from plait.handlers import replay, seed
from plait.infer._elbo import ELBO, Loss, MapFn
from plait.infer._elbo_checks import GUIDE_ENUM_HINT, check_reparameterised, guide_covers
from plait.infer._log_density import log_density, sum_log_density

__all__ = ["TraceEnum_ELBO"]


class TraceEnum_ELBO(ELBO):
    """The ELBO with the model's enumerated discrete sites summed out exactly.

    The model side goes through :func:`plait.infer.log_density`, so plait-enum's
    contraction (tensor variable elimination, and the time-parallel contraction of an
    enumerated ``scan``) computes it: with an empty guide the loss is exactly
    ``-log p(x)``.

    Args:
        num_particles: the number of particles averaged.
        max_plate_nesting: accepted for NumPyro compatibility; plait-enum finds the
            plate nesting itself.
        vectorize_particles: map the particles with ``jax.vmap`` (``True``),
            ``jax.lax.map`` (``False``) or your own ``(fn, keys)`` callable.

    Example:
        >>> import jax
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.infer import TraceEnum_ELBO
        >>> model = lambda: sample("x", dist.Normal(0.0, 1.0), obs=0.0)
        >>> round(float(TraceEnum_ELBO().loss(jax.random.key(0), {}, model, lambda: None)), 4)
        0.9189
    """

    can_infer_discrete = True

    def __init__(
        self,
        num_particles: int = 1,
        max_plate_nesting: int | float = float("inf"),
        vectorize_particles: bool | MapFn = True,
    ) -> None:
        self.max_plate_nesting = max_plate_nesting
        super().__init__(num_particles=num_particles, vectorize_particles=vectorize_particles)

    def loss(
        self,
        rng_key: Array,
        param_map: Mapping[str, Any],
        model: Callable[..., Any],
        guide: Callable[..., Any],
        *args: Any,
        **kwargs: Any,
    ) -> Loss:
        def single(key: Array) -> tuple[Loss, dict[str, Any] | None]:
            model_seed, guide_seed = random.split(key)
            guide_log_density, guide_trace = sum_log_density(
                seed(guide, guide_seed), args, kwargs, param_map, enumeration_hint=GUIDE_ENUM_HINT
            )
            check_reparameterised(guide_trace, "TraceEnum_ELBO")
            replayed = replay(seed(model, model_seed), trace=guide_trace)
            checked = guide_covers(replayed, guide_trace=guide_trace)
            model_log_density, _ = log_density(checked, args, kwargs, param_map)
            return model_log_density - guide_log_density, None

        return self._particles(rng_key, single)["loss"]
