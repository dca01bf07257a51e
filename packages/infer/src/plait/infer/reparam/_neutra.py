"""``NeuTraReparam``: warp a model's latent space by a trained ``AutoContinuous`` guide."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax.numpy as jnp
from jax import Array
from numpyro.distributions import biject_to
from numpyro.distributions.util import sum_rightmost

from plait import ControlFlowStep, Message, factor, get_mask, sample
from plait.errors import SiteError
from plait.handlers import Reparam as Reparam_
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
    at the first latent site, or before the first ``scan`` whose body may hold latents,
    whichever comes first. A latent sampled inside a ``scan`` body (NumPyro refuses it)
    takes, at step ``t``, step ``t`` of its block of the guide's latent: the loop then
    computes exactly what the unrolled loop would (the flow's log-Jacobian is the factor
    ``_{prefix}_shared_latent_log_det`` when the shared latent is drawn before a loop).

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
        # One model run's unconstrained latents, by site: the sites outside loops take
        # (pop) theirs; a loop's sites read their step of theirs.
        self._x_unconstrained: dict[str, Array] = {}
        self._drawn = False

    def _reparam_config(self, site: Message) -> NeuTraReparam | None:
        return self if self._is_latent(site.name) else None

    def _is_latent(self, name: str | None) -> bool:
        prototype = self.guide.prototype_trace or {}
        guide_site = prototype.get(name) if name is not None else None
        return guide_site is not None and not guide_site.is_observed

    def reparam(self, fn: Callable[..., Any] | None = None) -> Any:
        """``fn`` (or a context manager) with every latent of the guide reparameterised,
        inside ``scan`` bodies too."""
        return _neutra_reparam(fn, neutra=self)

    def _reset(self) -> None:
        self._x_unconstrained = {}
        self._drawn = False

    def _draw(self) -> Any:
        """Draw the shared latent and push it through the flow; its log-Jacobian."""
        prototype = self.guide.prototype_trace or {}
        plates = {n for n, s in prototype.items() if s.type == "plate"}
        z = sample(
            f"{self.guide.prefix}_shared_latent",
            self.guide.get_base_dist().mask(False),
            infer={"block_plates": sorted(plates)},
        )
        x = self.transform(z)
        self._x_unconstrained = dict(self.guide._unpack_latent(x))
        self._drawn = True
        if get_mask() is False:
            return 0.0
        return self.transform.log_abs_det_jacobian(z, x)

    def _site(self, name: str, fn: Any, unconstrained_value: Array, where: str) -> tuple[Any, Any]:
        """The site's constrained value and its log density (with the support's
        log-Jacobian) at ``unconstrained_value``."""
        prototype = self.guide.prototype_trace or {}
        transform = biject_to(fn.support)
        expected = tuple(transform.inverse_shape(tuple(fn.shape())))
        if tuple(jnp.shape(unconstrained_value)) != expected:
            self._reset()
            raise SiteError(
                name,
                f"NeuTraReparam at site '{name}': the site has shape {tuple(fn.shape())} "
                f"{where} but {tuple(jnp.shape(prototype[name].value))} in the guide's "
                "prototype. A site inside a scan body takes its step of the guide's latent "
                "only under NeuTraReparam.reparam(model); otherwise the model's sites must "
                "keep the shapes they had when the guide was built.",
            )
        value = transform(unconstrained_value)
        if get_mask() is False:
            return value, 0.0
        logdet = transform.log_abs_det_jacobian(unconstrained_value, value)
        logdet = sum_rightmost(logdet, jnp.ndim(logdet) - jnp.ndim(value) + len(fn.event_shape))
        return value, fn.log_prob(value) + logdet

    def __call__(self, name: str, fn: Any, obs: Any) -> tuple[Any, Any]:
        if not self._is_latent(name):
            return fn, obs
        refuse_observed("NeuTraReparam", name, obs)
        log_density: Any = 0.0
        if name not in self._x_unconstrained:  # the first site: draw the shared latent
            log_density = self._draw()
        value, site_density = self._site(name, fn, self._x_unconstrained.pop(name), "here")
        factor(f"_{name}_log_prob", log_density + site_density)
        return None, value

    def _step_reparam(self, step: ControlFlowStep, msg: Message) -> Reparam_ | None:
        """The reparameteriser of the body site ``msg`` at one loop step."""
        outer = step.site_name(msg)
        if not self._is_latent(outer):
            return None

        def at_step(name: str, fn: Any, obs: Any) -> tuple[Any, Any]:
            refuse_observed("NeuTraReparam", outer, obs)
            if outer not in self._x_unconstrained:
                self._reset()
                raise SiteError(
                    outer,
                    f"NeuTraReparam at site '{outer}' inside {step.label}: the guide's "
                    "latent was not drawn before the loop. Reparameterise the model with "
                    "NeuTraReparam.reparam(model).",
                )
            stacked = self._x_unconstrained[outer]
            value, log_density = self._site(
                outer, fn, step.select(msg, stacked), f"at one step of {step.label}"
            )
            factor(f"_{name}_log_prob", log_density)
            return None, value

        return at_step

    def transform_sample(self, latent: Array) -> dict[str, Array]:
        """The model's latents at draws ``latent`` of the shared latent (leading batch
        dims allowed)."""
        return self.guide._unpack_and_constrain(self.transform(latent), self.params)


class _neutra_reparam(reparam[..., Any]):
    """``NeuTraReparam.reparam``'s handler: ``reparam`` with the NeuTra sites, whose state
    lives for one run of the model, drawing the shared latent before a loop and giving
    each latent inside a loop body its step of the guide's latent."""

    def __init__(self, fn: Callable[..., Any] | None = None, *, neutra: NeuTraReparam) -> None:
        self.neutra = neutra
        super().__init__(fn, config=neutra._reparam_config)

    def __enter__(self) -> Any:
        self.neutra._reset()
        return super().__enter__()

    def __exit__(self, exc_type: object, exc_value: object, traceback: object) -> None:
        self.neutra._reset()
        super().__exit__(exc_type, exc_value, traceback)

    def process_control_flow(self, msg: Message) -> None:
        # The loop's body may hold latents: their values come from the shared latent,
        # drawn here, outside the loop, once per run.
        neutra = self.neutra
        if not neutra._drawn:
            log_det = neutra._draw()
            factor(f"_{neutra.guide.prefix}_shared_latent_log_det", log_det)

    def for_control_flow(self, step: ControlFlowStep) -> reparam[..., Any]:
        neutra = self.neutra
        return reparam(config=lambda msg: neutra._step_reparam(step, msg))
