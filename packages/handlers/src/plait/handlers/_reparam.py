"""``reparam`` and the reparameterizers it applies (``LocScaleReparam``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, Protocol, TypeVar, overload

import jax.numpy as jnp

from plait import ControlFlowStep, Distribution, Message, Messenger, param, sample
from plait.errors import HandlerAssertionError, SiteAssertionError, SiteError

__all__ = ["LocScaleReparam", "Reparam", "reparam"]

P = ParamSpec("P")
R = TypeVar("R")


class Reparam(Protocol):
    """A reparameterizer: ``(name, fn, obs) -> (new_fn, value)``.

    ``new_fn=None`` with a value turns the site into a deterministic one; a value with a
    new distribution makes the site observed.
    """

    def __call__(self, name: str, fn: Any, obs: Any) -> tuple[Any, Any]: ...


class reparam(Messenger[P, R]):
    """Reparameterize ``sample`` sites with the :class:`Reparam` that ``config`` gives
    (a dict by name, or a function of the message returning one or ``None``).

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.handlers import LocScaleReparam, reparam, seed, trace
        >>> def model() -> None:
        ...     sample("x", dist.Normal(1.0, 2.0))
        >>> decentered = reparam(model, config={"x": LocScaleReparam(centered=0.0)})
        >>> tr = trace(seed(decentered, rng_seed=0)).get_trace()
        >>> list(tr), tr["x"].type
        (['x_decentered', 'x'], 'deterministic')
    """

    @overload
    def __init__(
        self: reparam[..., Any],
        fn: None = None,
        config: Mapping[str, Reparam] | Callable[[Message], Reparam | None] | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self,
        fn: Callable[P, R],
        config: Mapping[str, Reparam] | Callable[[Message], Reparam | None] | None = None,
    ) -> None: ...
    def __init__(
        self,
        fn: Callable[P, R] | None = None,
        config: Mapping[str, Reparam] | Callable[[Message], Reparam | None] | None = None,
    ) -> None:
        if not (isinstance(config, Mapping) or callable(config)):
            raise HandlerAssertionError(
                "reparam() needs config: a dict name -> Reparam, or a function "
                "msg -> Reparam | None."
            )
        self.config = config
        super().__init__(fn)

    def process_sample(self, msg: Message) -> None:
        name = msg.name
        assert name is not None
        chosen = self.config.get(name) if isinstance(self.config, Mapping) else self.config(msg)
        if chosen is None:
            return
        new_fn, value = chosen(name, msg.fn, msg.value)
        if value is not None:
            if new_fn is None:
                msg.type = "deterministic"
                msg.value = value
                msg.fn = None
                msg.args = ()
                msg.kwargs = {}
                msg.is_observed = False
                msg.intermediates = []
                return
            if msg.value is None:
                msg.is_observed = True
            msg.value = value
        msg.fn = new_fn

    def for_control_flow(self, step: ControlFlowStep) -> reparam[..., Any]:
        """Inside a loop body: reparameterize each step's sites, chosen by the names they
        have where this handler stands."""
        config = self.config
        if isinstance(config, Mapping):
            table = config
            return reparam(config=lambda msg: table.get(step.site_name(msg)))
        return reparam(config=config)


_WRAPPERS = ("Independent", "ExpandedDistribution")


class LocScaleReparam:
    """Decenter a latent site with ``loc`` and ``scale`` parameters (Gorinova et al. 2019).

    ``centered=1`` keeps the site; ``0`` fully decenters it (samples ``{name}_decentered``
    from the standard form and makes ``name`` deterministic); ``None`` learns a per-element
    centering ``param`` ``{name}_centered`` in ``[0, 1]``. ``shape_params`` names further
    parameters copied unchanged (``df`` of a StudentT, say). Only for real-valued latents.

    Example:
        >>> LocScaleReparam(centered=0.0).centered
        0.0
    """

    def __init__(self, centered: Any = None, shape_params: tuple[str, ...] = ()) -> None:
        if centered is not None and not isinstance(centered, jnp.ndarray | float | int):
            raise HandlerAssertionError(
                f"LocScaleReparam: centered must be a number in [0, 1] or None, got {centered!r}."
            )
        if isinstance(centered, float | int) and not 0 <= centered <= 1:
            raise HandlerAssertionError(f"LocScaleReparam: centered={centered} is not in [0, 1].")
        self.centered = centered
        self.shape_params = tuple(shape_params)

    def __call__(self, name: str, fn: Any, obs: Any) -> tuple[Any, Any]:
        if obs is not None:
            raise SiteAssertionError(
                name,
                f"LocScaleReparam at site '{name}': the site is observed; "
                "reparameterize latent sites only.",
            )
        from numpyro.distributions import constraints

        support = fn.support
        if isinstance(support, constraints.independent):
            support = support.base_constraint
        if support is not constraints.real:
            raise SiteError(
                name, f"LocScaleReparam at site '{name}' needs a real support, got {support}."
            )
        centered = self.centered
        if isinstance(centered, float | int) and centered == 1:
            return fn, obs
        event_shape = tuple(fn.event_shape)
        full_shape = tuple(fn.batch_shape) + event_shape
        event_dim = len(event_shape)
        base: Any = fn
        while type(base).__name__ in _WRAPPERS:
            base = base.base_dist
        expand_shape = full_shape[: len(full_shape) - len(base.event_shape)]
        params = {key: getattr(base, key) for key in self.shape_params}
        if centered is None:
            centered = param(
                f"{name}_centered", jnp.full(event_shape, 0.5), constraint=constraints.unit_interval
            )
        if isinstance(centered, float | int) and centered == 0:
            params["loc"] = jnp.zeros_like(base.loc)
            params["scale"] = jnp.ones_like(base.scale)
        else:
            params["loc"] = base.loc * centered
            params["scale"] = base.scale**centered
        decentered: Distribution = type(base)(**params).expand(expand_shape)
        if len(decentered.event_shape) < event_dim:
            decentered = decentered.to_event(  # type: ignore[attr-defined]
                event_dim - len(decentered.event_shape)
            )
        noise = sample(f"{name}_decentered", decentered)
        value = base.loc + jnp.power(base.scale, 1 - centered) * (noise - centered * base.loc)
        return None, value
