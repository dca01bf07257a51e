"""Evidence lower bounds: ``Trace_ELBO`` and ``TraceEnum_ELBO``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

import jax
import jax.numpy as jnp
from jax import Array, random

from plait import ControlFlowStep, Message, Messenger, Trace
from plait.errors import SiteError
from plait.handlers import replay, seed
from plait.infer._log_density import log_density, sum_log_density

__all__ = ["ELBO", "TraceEnum_ELBO", "Trace_ELBO"]

TRACE_ELBO_HINT: Final = (
    "Trace_ELBO does not enumerate: use TraceEnum_ELBO (with plait-enum installed) to sum "
    "it out, or draw the site in the guide."
)
GUIDE_ENUM_HINT: Final = (
    "plait's ELBOs enumerate model sites only: draw this guide site (drop its 'enumerate' "
    "option) or move the enumeration to the model."
)


class ELBO:
    """The negative evidence lower bound ``-E_q[log p(x, z) - log q(z)]`` of a model and
    guide, estimated with ``num_particles`` draws from the guide (averaged).

    Subclasses say how the model's log density is computed.
    """

    def __init__(self, num_particles: int = 1) -> None:
        if num_particles < 1:
            raise ValueError(f"num_particles must be at least 1, got {num_particles}.")
        self.num_particles = num_particles

    def _model_log_density(
        self,
        model: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        params: Mapping[str, Any],
    ) -> tuple[Array, Trace]:
        raise NotImplementedError

    def loss(
        self,
        rng_key: Array,
        param_map: Mapping[str, Any],
        model: Callable[..., Any],
        guide: Callable[..., Any],
        *args: Any,
        **kwargs: Any,
    ) -> Array:
        """The loss (negative ELBO) at the constrained params ``param_map``."""

        def particle(key: Array) -> Array:
            return self._elbo_particle(key, param_map, model, guide, args, kwargs)

        if self.num_particles == 1:
            return -particle(rng_key)
        return -jnp.mean(jax.vmap(particle)(random.split(rng_key, self.num_particles)))

    def _elbo_particle(
        self,
        rng_key: Array,
        param_map: Mapping[str, Any],
        model: Callable[..., Any],
        guide: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
    ) -> Array:
        guide_key, model_key = random.split(rng_key)
        guide_log_density, guide_trace = sum_log_density(
            seed(guide, guide_key), args, kwargs, param_map, enumeration_hint=GUIDE_ENUM_HINT
        )
        _check_reparameterised(guide_trace)
        replayed = replay(seed(model, model_key), trace=guide_trace)
        checked = _guide_covers(replayed, guide_trace=guide_trace)
        model_log_density, _ = self._model_log_density(checked, args, kwargs, param_map)
        return model_log_density - guide_log_density


def _check_reparameterised(guide_trace: Trace) -> None:
    """The ELBO's gradient is a pathwise one: a guide site without a reparameterised
    sampler (a discrete one, say) would give silently wrong gradients, so it is refused."""
    for name, site in guide_trace.items():
        if site.type != "sample" or site.is_observed:
            continue
        if not getattr(site.fn, "has_rsample", True):
            raise SiteError(
                name,
                f"guide site '{name}' samples from {type(site.fn).__name__}, which has no "
                "reparameterised sampler, so the ELBO gradient through it would be wrong. "
                "Sum the variable out in the model instead (infer={'enumerate': 'parallel'} "
                "with TraceEnum_ELBO) and leave it out of the guide.",
            )


class _guide_covers(Messenger[..., Any]):
    """Raise at a latent model site that would be drawn from its prior: no value from the
    guide (``replay``) or any other handler, and not enumerated."""

    def __init__(
        self,
        fn: Callable[..., Any] | None = None,
        *,
        guide_trace: Trace,
        site_name: Callable[[Message], str | None] | None = None,
    ) -> None:
        self.guide_trace = guide_trace
        self.site_name = site_name
        super().__init__(fn)

    def process_sample(self, msg: Message) -> None:
        if (
            msg.value is not None
            or msg.is_observed
            or msg.infer.get("enumerate") == "parallel"
            or msg.infer.get("is_auxiliary")
        ):
            return
        name = self.site_name(msg) if self.site_name is not None else msg.name
        if name in self.guide_trace:
            return
        latents = [n for n, s in self.guide_trace.items() if s.type == "sample"]
        raise SiteError(
            name,
            f"site '{name}' is a latent of the model, but the guide has no site '{name}' (the "
            f"guide's sample sites: {latents}). Add sample('{name}', ...) to the guide, use "
            "an autoguide (AutoNormal(model)), or, for a discrete site, mark it for "
            "enumeration and use TraceEnum_ELBO.",
        )

    def for_control_flow(self, step: ControlFlowStep) -> Messenger[Any, Any]:
        return _guide_covers(guide_trace=self.guide_trace, site_name=step.site_name)


class Trace_ELBO(ELBO):
    """The ELBO with the model's log density summed over its sites (NumPyro's
    ``Trace_ELBO``); guides must be reparameterisable.

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

    def _model_log_density(
        self,
        model: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        params: Mapping[str, Any],
    ) -> tuple[Array, Trace]:
        return sum_log_density(model, args, kwargs, params, enumeration_hint=TRACE_ELBO_HINT)


class TraceEnum_ELBO(ELBO):
    """The ELBO with the model's enumerated discrete sites summed out exactly.

    The model side goes through :func:`plait.infer.log_density`, so plait-enum's
    contraction (tensor variable elimination, and the time-parallel contraction of an
    enumerated ``scan``) computes it: with an empty guide the loss is exactly
    ``-log p(x)``. Guide sites are drawn, never enumerated.

    Example:
        >>> import jax
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.infer import TraceEnum_ELBO
        >>> model = lambda: sample("x", dist.Normal(0.0, 1.0), obs=0.0)
        >>> round(float(TraceEnum_ELBO().loss(jax.random.key(0), {}, model, lambda: None)), 4)
        0.9189
    """

    def _model_log_density(
        self,
        model: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        params: Mapping[str, Any],
    ) -> tuple[Array, Trace]:
        return log_density(model, args, kwargs, params)
