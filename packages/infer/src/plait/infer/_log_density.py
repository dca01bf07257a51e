"""The joint log density of a model, and its potential energy on the unconstrained space.

``log_density`` asks the ``plait_log_density`` hook, so plait-enum answers for models with
enumerated sites; plait-infer's own answer (``sum_log_density``, registered ``trylast``)
substitutes, traces and sums every sample site's scaled ``log_prob``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

import jax.numpy as jnp
from jax import Array
from numpyro.distributions import constraints
from numpyro.distributions.transforms import Transform, biject_to
from numpyro.distributions.util import sum_rightmost

from plait import ControlFlowStep, Message, Messenger, Trace, factor, hooks, log_prob_sum
from plait import site_log_prob as plait_site_log_prob
from plait.errors import SiteError, format_shapes
from plait.handlers import substitute, trace

__all__ = [
    "log_density",
    "potential_energy",
    "sum_log_density",
    "sum_trace",
]

NO_ENUM_PLUGIN: Final = (
    "No installed plugin sums enumerated sites out: install plait-enum "
    "(pip install plait-enum), or give the site a value, or drop its 'enumerate' option."
)


def log_density(
    model: Callable[..., Any],
    model_args: tuple[Any, ...],
    model_kwargs: Mapping[str, Any] | None,
    params: Mapping[str, Any],
) -> tuple[Array, Trace]:
    """The joint log density of ``model`` with the sites in ``params`` substituted.

    Asks the ``plait_log_density`` hook: plait-enum sums out enumerated discrete sites,
    and plait-infer's own implementation (the last resort) is the sum over sample sites
    of ``scale * log_prob(value)``, masks acting through the distributions, starting
    from ``0.0``. Works under ``jax.jit`` and ``jax.grad``.

    Args:
        model: the model function.
        model_args: its positional arguments.
        model_kwargs: its keyword arguments.
        params: values of sites by name (latent samples, params, plate indices).

    Returns:
        ``(log_joint, trace)``: a scalar and the model's trace.

    Raises:
        SiteError: a site asks for enumeration and no plugin sums it out, or a site's
            ``log_prob`` fails (the message shows the trace's shapes).

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.infer import log_density
        >>> def model(y):
        ...     mu = sample("mu", dist.Normal(0.0, 1.0))
        ...     sample("y", dist.Normal(mu, 1.0), obs=y)
        >>> value, tr = log_density(model, (0.0,), {}, {"mu": 0.0})
        >>> round(float(value), 4)
        -1.8379
    """
    kwargs = {} if model_kwargs is None else model_kwargs
    result = hooks.log_density(model, tuple(model_args), kwargs, params)
    if result is None:
        # plait-infer's entry point is not registered (e.g. used from a source tree).
        result = sum_log_density(model, tuple(model_args), kwargs, params)
    return result


def sum_log_density(
    model: Callable[..., Any],
    model_args: tuple[Any, ...],
    model_kwargs: Mapping[str, Any],
    params: Mapping[str, Any],
    *,
    enumeration_hint: str = NO_ENUM_PLUGIN,
) -> tuple[Array, Trace]:
    """plait-infer's log density: substitute ``params``, trace, sum the scaled log probs.

    This is the ``trylast`` implementation of the ``plait_log_density`` hook; call
    :func:`log_density` instead, so plugins can answer first.

    Args:
        model: the model function.
        model_args: its positional arguments.
        model_kwargs: its keyword arguments.
        params: values of sites by name.
        enumeration_hint: the fix offered when a site asks for enumeration.

    Raises:
        SiteError: a latent site without a value asks for enumeration.

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.infer._log_density import sum_log_density
        >>> def model():
        ...     sample("x", dist.Normal(0.0, 1.0))
        >>> float(sum_log_density(model, (), {}, {"x": 0.0})[0])
        -0.9189...
    """
    substituted = substitute(model, data=params) if params else model
    tr = trace(_refuse_enumeration(substituted, hint=enumeration_hint)).get_trace(
        *model_args, **model_kwargs
    )
    return sum_trace(tr), tr


def sum_trace(tr: Trace) -> Array:
    """The sum over the sample sites of ``tr`` of ``scale * log_prob(value)``
    (:func:`plait.log_prob_sum`).

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.handlers import seed, trace
        >>> from plait.infer._log_density import sum_trace
        >>> tr = trace(lambda: sample("x", dist.Normal(0.0, 1.0), obs=0.0)).get_trace()
        >>> float(sum_trace(tr))
        -0.9189...
    """
    return log_prob_sum(tr)


def site_log_prob(tr: Trace, name: str, site: Message) -> Array:
    """``scale * log_prob(value[, intermediates])`` of one sample site of ``tr``."""
    try:
        return plait_site_log_prob(site)
    except (ValueError, TypeError, IndexError) as error:
        raise SiteError(
            name,
            f"the log density of site '{name}' failed: {type(error).__name__}: {error}\n"
            f"The model's sites:\n{format_shapes(tr)}",
        ) from error


class _refuse_enumeration(Messenger[..., Any]):
    """Raise at a latent site that asks for enumeration and has no value."""

    def __init__(self, fn: Callable[..., Any] | None = None, *, hint: str) -> None:
        self.hint = hint
        super().__init__(fn)

    def process_sample(self, msg: Message) -> None:
        if msg.value is None and not msg.is_observed and msg.infer.get("enumerate") == "parallel":
            raise SiteError(
                msg.name,
                f"site '{msg.name}' asks to be enumerated (infer={{'enumerate': 'parallel'}}) "
                f"but has no value. {self.hint}",
            )

    def for_control_flow(self, step: ControlFlowStep) -> Messenger[Any, Any]:
        return _refuse_enumeration(hint=self.hint)


def is_real_support(support: Any) -> bool:
    """Whether ``support`` is the real line (or a product of real lines)."""
    return support is constraints.real or (
        isinstance(support, constraints.independent) and support.base_constraint is constraints.real
    )


def site_transform(msg: Message, constraint: Any = None) -> Transform:
    """``biject_to`` of a sample site's support (or of ``constraint``), with a clear error."""
    support = msg.fn.support if constraint is None else constraint
    try:
        return biject_to(support)
    except NotImplementedError:
        kind = "discrete " if getattr(support, "is_discrete", False) else ""
        raise SiteError(
            msg.name,
            f"site '{msg.name}' has the {kind}support {support!r}, which has no bijection to "
            "the real line, so it cannot be a continuous latent of NUTS or SVI. Discrete "
            "sites must be enumerated (infer={'enumerate': 'parallel'}, plait-enum) or "
            "given values.",
        ) from None


class unconstrained(Messenger[..., Any]):
    """Give sites values from unconstrained ``params``.

    A sample site gets ``biject_to(support)(params[name])``; with ``log_det`` the
    log-abs-det-Jacobian is added as the factor ``_{name}_log_det``, under the site's
    plates (so subsampling scales it too). Param sites get their value as is, or through
    ``biject_to(constraint)`` with ``constrain_params``. Reaches into ``scan`` bodies.
    """

    def __init__(
        self,
        fn: Callable[..., Any] | None = None,
        *,
        params: Mapping[str, Any],
        log_det: bool = True,
        constrain_params: bool = False,
    ) -> None:
        self.params = params
        self.log_det = log_det
        self.constrain_params = constrain_params
        super().__init__(fn)

    def process_message(self, msg: Message) -> None:
        name = msg.name
        if name is None:
            return
        value = self.params.get(name)
        if value is not None:
            self._assign(msg, value)

    def _assign(self, msg: Message, value: Any) -> None:
        if msg.type == "sample":
            msg.value = self._constrain(msg, value)
        elif msg.type == "param" and self.constrain_params:
            constraint = msg.kwargs.get("constraint") or constraints.real
            msg.value = site_transform(msg, constraint)(value)
        elif msg.type in ("param", "mutable", "deterministic", "plate"):
            msg.value = value

    def _constrain(self, msg: Message, unconstrained_value: Any) -> Any:
        support = msg.fn.support
        if is_real_support(support):
            return unconstrained_value
        transform = site_transform(msg)
        value = transform(unconstrained_value)
        if self.log_det:
            log_det = transform.log_abs_det_jacobian(unconstrained_value, value)
            extra = jnp.ndim(log_det) - jnp.ndim(value) + len(msg.fn.event_shape)
            factor(f"_{msg.name}_log_det", sum_rightmost(log_det, extra))
        return value

    def for_control_flow(self, step: ControlFlowStep) -> Messenger[Any, Any]:
        outer = self

        class _unconstrained_step(Messenger[..., Any]):
            def process_message(self, msg: Message) -> None:
                if msg.name is None or msg.type == "plate":
                    return
                value = outer.params.get(step.site_name(msg))
                if value is not None:
                    value = step.select(msg, value)
                if value is not None:
                    outer._assign(msg, value)

        return _unconstrained_step()


def potential_energy(
    model: Callable[..., Any],
    model_args: tuple[Any, ...],
    model_kwargs: Mapping[str, Any] | None,
    params: Mapping[str, Any],
) -> Array:
    """Minus the log density of ``model`` at unconstrained latent values ``params``.

    Each latent sample site named in ``params`` gets ``biject_to(support)`` of its value,
    and the log-abs-det-Jacobian of that map is added; other sites named in ``params``
    (params) are substituted as they are. Enumerated sites are summed out by plait-enum.

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.infer import potential_energy
        >>> def model():
        ...     sample("s", dist.Exponential(1.0))
        >>> float(potential_energy(model, (), {}, {"s": 0.0}))  # -(log 1 - 1 + log|ds/du|)
        1.0
    """
    log_joint, _ = log_density(unconstrained(model, params=params), model_args, model_kwargs, {})
    return -log_joint
