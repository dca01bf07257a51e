"""One site under enumeration: whether it asks for it, giving it its support on a fresh
dim, and the checks on the dims of the sites around it."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from plait import Message
from plait.enum._dims import DimState
from plait.enum._keys import ENUM_DIM, ENUM_SUPPORT
from plait.errors import SiteError

__all__ = [
    "MonteCarloEnumerationError",
    "check_plate_dims",
    "check_retired",
    "enumerate_config",
    "enumerate_site",
    "wants_enumeration",
]


class MonteCarloEnumerationError(SiteError, NotImplementedError):
    """A site asks for Monte Carlo enumeration (``num_samples``), which plait-enum does not
    do (NumPyro raises ``NotImplementedError`` too)."""


def wants_enumeration(msg: Message) -> bool:
    """Whether the sample site ``msg`` asks to be enumerated now.

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import Message
        >>> msg = Message(type="sample", name="z", fn=dist.Bernoulli(0.5),
        ...               infer={"enumerate": "parallel"})
        >>> wants_enumeration(msg)
        True
    """
    return (
        msg.type == "sample"
        and not msg.done
        and not msg.is_observed
        and msg.value is None
        and msg.infer.get("enumerate") == "parallel"
        and not msg.infer.get("expand", False)
    )


def enumerate_site(msg: Message, state: DimState) -> None:
    """Give the site ``msg`` its whole support, on a fresh dim left of the plates.

    Raises:
        SiteError: the distribution has no enumerable support, or the site has batch
            dims that are not plates, or no dim is left.
    """
    name = msg.name or "?"
    fn = msg.fn
    if msg.infer.get("num_samples") is not None:
        raise MonteCarloEnumerationError(
            name,
            f"site '{name}' asks for num_samples={msg.infer.get('num_samples')}; Monte "
            "Carlo enumeration is not supported. Drop 'num_samples' to enumerate exactly.",
        )
    if not getattr(fn, "has_enumerate_support", False):
        raise SiteError(
            name,
            f"site '{name}' asks for enumeration (infer={{'enumerate': 'parallel'}}) but its "
            f"distribution {type(fn).__name__} has no enumerable support "
            "(has_enumerate_support is False). Enumerate only discrete sites with finite "
            "support (Bernoulli, Categorical, DiscreteUniform, ...), or drop the option.",
        )
    _check_plates(msg, state)
    support = jnp.asarray(fn.enumerate_support(expand=False))
    event_shape = tuple(fn.event_shape)
    size = support.shape[0]
    if support.size != size * _prod(event_shape):
        raise SiteError(
            name,
            f"site '{name}': the support of {type(fn).__name__} varies across its batch "
            f"(enumerate_support(expand=False) has shape {support.shape}); plait can only "
            "enumerate a support shared by the whole batch.",
        )
    dim = state.allocate(name)
    support = jnp.reshape(support, (size,) + (1,) * (-dim - 1) + event_shape)
    msg.value = support
    msg.done = True
    msg.stash[ENUM_DIM] = dim
    msg.stash[ENUM_SUPPORT] = support


def _prod(shape: tuple[int, ...]) -> int:
    out = 1
    for n in shape:
        out *= n
    return out


def _check_plates(msg: Message, state: DimState) -> None:
    name = msg.name or "?"
    frames = msg.cond_indep_stack
    plate_dims = {f.dim for f in frames}
    batch = tuple(msg.fn.batch_shape)
    visible = state.visible()
    for k, n in enumerate(batch):
        dim = k - len(batch)
        if n != 1 and dim not in plate_dims and dim not in visible:
            raise SiteError(
                name,
                f"site '{name}' has batch shape {batch} whose dim {dim} (size {n}) is not a "
                "plate. An enumerated site must declare its batch dims with plates "
                f"(with plate('...', {n}, dim={dim}): ...), or use .to_event() for dims "
                "that belong to one value.",
            )


def check_plate_dims(msg: Message, state: DimState, enumerating: bool) -> None:
    visible = state.visible()
    for f in msg.cond_indep_stack:
        if f.dim in visible or (enumerating and f.dim <= state.first_available_dim):
            raise SiteError(
                msg.name,
                f"site '{msg.name}' is inside plate '{f.name}' (dim {f.dim}), but "
                f"enumeration uses dims from {state.first_available_dim} leftwards. Pass "
                f"first_available_dim={min(f.dim, state.first_available_dim) - 1} (one left "
                "of the leftmost plate dim) to enum / infer_discrete.",
            )


def check_retired(msg: Message, state: DimState) -> None:
    """Refuse a site that depends on a retired dim (an enumerated scan's last carry)."""
    shape = _batch_shape(msg)
    for dim, why in state.retired.items():
        if -dim <= len(shape) and shape[dim] != 1 and dim not in state.visible():
            raise SiteError(
                msg.name,
                f"site '{msg.name}' depends on {why} (its batch dim {dim} has size "
                f"{shape[dim]}). Under enumeration nothing outside a scan may depend on the "
                "scan's last carry: its discrete values are summed out inside the scan. "
                "Move the computation into the scan body (and return it as part of ys), or "
                "do not enumerate the scan's sites.",
            )


def _batch_shape(msg: Message) -> tuple[int, ...]:
    fn = msg.fn
    batch = tuple(fn.batch_shape)
    value_shape = tuple(jnp.shape(msg.value)) if msg.value is not None else ()
    event = len(fn.event_shape)
    value_batch = value_shape[: len(value_shape) - event] if event else value_shape
    return tuple(jnp.broadcast_shapes(batch, value_batch))


def enumerate_config(default: str | None, msg: Message) -> dict[str, Any]:
    """``config_enumerate``'s choice for one site: ``default`` for latent sites with an
    enumerable support (a site's own ``enumerate`` option wins)."""
    if (
        msg.type == "sample"
        and not msg.is_observed
        and getattr(msg.fn, "has_enumerate_support", False)
    ):
        return {"enumerate": msg.infer.get("enumerate", default)}
    return {}
