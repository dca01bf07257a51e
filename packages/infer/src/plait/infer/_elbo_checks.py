"""What every ELBO checks about a guide and the model replayed against it."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable
from typing import Any, Final

import jax.numpy as jnp

from plait import ControlFlowStep, Message, Messenger, Trace
from plait.errors import SiteError

__all__ = [
    "GUIDE_ENUM_HINT",
    "TRACE_ELBO_HINT",
    "check_model_guide_match",
    "check_reparameterised",
    "guide_covers",
    "validate_model",
]

TRACE_ELBO_HINT: Final = (
    "Trace_ELBO does not enumerate: use TraceEnum_ELBO (with plait-enum installed) to sum "
    "it out, or draw the site in the guide."
)
GUIDE_ENUM_HINT: Final = (
    "This ELBO enumerates no guide site: draw this guide site (drop its 'enumerate' "
    "option), or use TraceEnum_ELBO (with plait-enum installed)."
)


def check_reparameterised(guide_trace: Trace, elbo: str) -> None:
    """Refuse latent guide sites without a reparameterised sampler: a pathwise ELBO
    gradient through them would be silently wrong."""
    for name, site in guide_trace.items():
        if site.type != "sample" or site.is_observed:
            continue
        if not getattr(site.fn, "has_rsample", True):
            raise SiteError(
                name,
                f"guide site '{name}' samples from {type(site.fn).__name__}, which has no "
                f"reparameterised sampler, so the {elbo} gradient through it would be "
                "wrong. Use TraceGraph_ELBO (score-function gradients), or sum the variable "
                "out in the model instead (infer={'enumerate': 'parallel'} with "
                "TraceEnum_ELBO) and leave it out of the guide.",
            )


class guide_covers(Messenger[..., Any]):
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
        return guide_covers(guide_trace=self.guide_trace, site_name=step.site_name)


def _latents(tr: Trace) -> set[str]:
    return {n for n, s in tr.items() if s.type == "sample" and not s.is_observed}


def check_model_guide_match(model_trace: Trace, guide_trace: Trace) -> None:
    """NumPyro's ``check_model_guide_match``: warn about auxiliary sites in the model,
    guide sites the model lacks and guide plates the model lacks; raise where a site's
    event dims or shapes disagree between the two.

    Raises:
        ValueError: the model and guide disagree on a site's event dim or shape.
    """
    guide_vars = _latents(guide_trace)
    aux_vars = {
        n for n, s in guide_trace.items() if s.type == "sample" and s.infer.get("is_auxiliary")
    }
    model_vars = {
        n
        for n in _latents(model_trace)
        if not (n not in guide_trace and model_trace[n].infer.get("enumerate") == "parallel")
    }
    if aux_vars & model_vars:
        warnings.warn(f"Found auxiliary vars in the model: {aux_vars & model_vars}", stacklevel=4)
    if not guide_vars <= model_vars | aux_vars:
        warnings.warn(
            "Found non-auxiliary vars in guide but not model, consider marking these "
            f"infer={{'is_auxiliary': True}}:\n{guide_vars - aux_vars - model_vars}",
            stacklevel=4,
        )
    for name in sorted(model_vars & guide_vars):
        model_fn, guide_fn = model_trace[name].fn, guide_trace[name].fn
        model_event = getattr(model_fn, "event_dim", None)
        guide_event = getattr(guide_fn, "event_dim", None)
        if model_event is not None and guide_event is not None and model_event != guide_event:
            raise SiteError(
                name,
                f"Model and guide event_dims disagree at site '{name}': {model_event} vs "
                f"{guide_event}.",
            )
        model_shape = _shape(model_trace[name])
        guide_shape = _shape(guide_trace[name])
        if model_shape is None or guide_shape is None or model_shape == guide_shape:
            continue
        for m, g in itertools.zip_longest(
            reversed(model_shape), reversed(guide_shape), fillvalue=1
        ):
            if m != g:
                raise SiteError(
                    name,
                    f"Model and guide shapes disagree at site '{name}': {model_shape} vs "
                    f"{guide_shape}.",
                )
    model_plates = {n for n, s in model_trace.items() if s.type == "plate"}
    guide_plates = {n for n, s in guide_trace.items() if s.type == "plate"}
    if not guide_plates <= model_plates:
        warnings.warn(
            f"Found plate statements in guide but not model: {guide_plates - model_plates}",
            stacklevel=4,
        )


def validate_model(model_trace: Trace, strict: bool = False) -> None:
    """NumPyro's ``_validate_model``: warn when a sample site inside a plate (with
    ``strict``, any sample site: ``plate_warning="strict"``, else ``"loose"``) has a batch
    dim of size > 1 that no plate declares.

    The leftmost dim of a site that a plugin marked (a loop's stacked time dim, an
    enumerated support) is not checked, as NumPyro skips its scan dim.
    """
    for name, site in model_trace.items():
        if site.type != "sample" or not (strict or site.cond_indep_stack):
            continue
        value_shape = tuple(jnp.shape(site.value))
        event = len(site.fn.event_shape)
        batch_shape = jnp.broadcast_shapes(
            tuple(site.fn.batch_shape), value_shape[: len(value_shape) - event]
        )
        plate_dims = {f.dim for f in site.cond_indep_stack}
        rank = len(batch_shape)
        for dim in range(-1, -rank - 1, -1):  # NumPyro's order
            if batch_shape[dim] == 1 or dim in plate_dims:
                continue
            if dim == -rank and len(site.stash):
                continue
            warnings.warn(
                f"Missing a plate statement for batch dimension {dim} at site '{name}'. You "
                "can use `numpyro.util.format_shapes` utility to check shapes at all sites "
                "of your model.",
                stacklevel=4,
            )


def _shape(site: Message) -> tuple[int, ...] | None:
    shape = getattr(site.fn, "shape", None)
    if shape is None:
        return None
    return tuple(shape(tuple(site.kwargs.get("sample_shape", ()))))
