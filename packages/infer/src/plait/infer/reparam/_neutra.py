"""``NeuTraReparam``: warp a model's latent space by a trained ``AutoContinuous`` guide."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax.numpy as jnp
from jax import Array
from numpyro.distributions import biject_to
from numpyro.distributions.util import sum_rightmost

from plait import Message, factor, get_mask, sample
from plait.errors import SiteError
from plait.handlers import reparam
from plait.infer.autoguide import AutoContinuous
from plait.infer.reparam._base import Reparam, refuse_observed

__all__ = ["NeuTraReparam"]


class NeuTraReparam(Reparam):
    """Neural transport (Hoffman et al. 2019; NumPyro's ``NeuTraReparam``): the model's
    latents become one shared latent ``{prefix}_shared_latent`` from the guide's base
    distribution, pushed through the guide's learnt transform, so MCMC samples a space
    where the posterior is close to the base distribution.

    Every latent site of the guide's prototype shares this one instance (use
    :meth:`reparam`); the model must have a static structure. The shared latent is drawn
    at the first site: a site inside a ``scan`` body cannot be reparameterised (the loop
    runs one step at a time), and is an error.

    Args:
        guide: a trained :class:`~plait.infer.autoguide.AutoContinuous` guide.
        params: its trained params (``svi.get_params(state)``).

    Raises:
        TypeError: ``guide`` is not an ``AutoContinuous`` guide.
        ValueError: the guide has no ``get_transform`` independent of the model's
            arguments.

    Example:
        >>> import jax, optax
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.handlers import seed, trace
        >>> from plait.infer import SVI, Trace_ELBO
        >>> from plait.infer.autoguide import AutoDiagonalNormal
        >>> from plait.infer.reparam import NeuTraReparam
        >>> def model():
        ...     sample("x", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        >>> guide = AutoDiagonalNormal(model)
        >>> svi = SVI(model, guide, optax.adam(0.01), Trace_ELBO())
        >>> neutra = NeuTraReparam(guide, svi.get_params(svi.init(jax.random.key(0))))
        >>> list(trace(seed(neutra.reparam(model), 1)).get_trace())
        ['auto_shared_latent', '_x_log_prob', 'x']
    """

    def __init__(self, guide: AutoContinuous, params: Mapping[str, Any]) -> None:
        if not isinstance(guide, AutoContinuous):
            raise TypeError(
                f"NeuTraReparam expected an AutoContinuous guide, but got {type(guide)}"
            )
        self.guide = guide
        self.params = params
        try:
            self.transform = guide.get_transform(params)
        except (NotImplementedError, TypeError) as error:
            raise ValueError(
                "NeuTraReparam only supports guides that implement `get_transform` method "
                "that does not depend on the model's `*args, **kwargs`"
            ) from error
        self._x_unconstrained: dict[str, Array] = {}

    def _reparam_config(self, site: Message) -> NeuTraReparam | None:
        prototype = self.guide.prototype_trace or {}
        guide_site = prototype.get(site.name) if site.name is not None else None
        if guide_site is not None and not guide_site.is_observed:
            return self
        return None

    def reparam(self, fn: Callable[..., Any] | None = None) -> Any:
        """``fn`` (or a context manager) with every latent of the guide reparameterised."""
        return reparam(fn, config=self._reparam_config)

    def __call__(self, name: str, fn: Any, obs: Any) -> tuple[Any, Any]:
        prototype = self.guide.prototype_trace or {}
        if name not in prototype:
            return fn, obs
        refuse_observed("NeuTraReparam", name, obs)
        log_density: Any = 0.0
        compute_density = get_mask() is not False
        if not self._x_unconstrained:  # the first site: draw the shared latent
            plates = {n for n, s in prototype.items() if s.type == "plate"}
            z = sample(
                f"{self.guide.prefix}_shared_latent",
                self.guide.get_base_dist().mask(False),
                infer={"block_plates": sorted(plates)},
            )
            x = self.transform(z)
            if compute_density:
                log_density = self.transform.log_abs_det_jacobian(z, x)
            self._x_unconstrained = dict(self.guide._unpack_latent(x))
        unconstrained_value = self._x_unconstrained.pop(name)
        transform = biject_to(fn.support)
        expected = tuple(transform.inverse_shape(tuple(fn.shape())))
        if tuple(jnp.shape(unconstrained_value)) != expected:
            self._x_unconstrained = {}
            raise SiteError(
                name,
                f"NeuTraReparam at site '{name}': the site has shape {tuple(fn.shape())} "
                f"here but {tuple(jnp.shape(prototype[name].value))} in the guide's "
                "prototype; a site inside a scan body cannot share the guide's latent (the "
                "loop runs one step at a time). Reparameterise a model whose latents are "
                "outside loops, or unroll the loop.",
            )
        value = transform(unconstrained_value)
        if compute_density:
            logdet = transform.log_abs_det_jacobian(unconstrained_value, value)
            logdet = sum_rightmost(logdet, jnp.ndim(logdet) - jnp.ndim(value) + len(fn.event_shape))
            log_density = log_density + fn.log_prob(value) + logdet
        factor(f"_{name}_log_prob", log_density)
        return None, value

    def transform_sample(self, latent: Array) -> dict[str, Array]:
        """The model's latents at draws ``latent`` of the shared latent (leading batch
        dims allowed)."""
        return self.guide._unpack_and_constrain(self.transform(latent), self.params)
