"""A site's log-factor, and the names of its axes: the one place plait-enum computes them.

Every sample site gives one log-factor: its scaled ``log_prob`` broadcast to its batch
shape, with each dim of size > 1 named after the plate or enumerated variable that lives
there (``DIM_NAMES``, recorded by ``enum`` when the site ran).
"""

from __future__ import annotations

import sys
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array
from jax.scipy.special import logsumexp

from plait import Message, Trace, site_log_prob
from plait.enum._contract import Plate
from plait.enum._factors import Factor
from plait.enum._keys import ENUM_DIM, ENUM_SUPPORT
from plait.errors import SiteError

__all__ = ["name_axes", "plates_of", "promote_fn", "site_log_factor", "to_factor"]

DATA_DIM = "<data>"
"""The name of a dim that only an observation spans (``obs`` wider than the site's
distribution and plates, NumPyro's iid-data idiom): the factor is summed over it."""


def _categorical_table(msg: Message) -> Array | None:
    """``log_prob`` of a NumPyro ``Categorical`` site at its own enumerated support, or None.

    NumPyro's ``log_prob`` broadcasts the support against the batch and gathers from the
    log-probability table (a gather of ``K`` times the batch, a scatter in the gradient);
    at the whole support the answer is that table itself with its last axis moved to the
    enumerated dim: the same numbers, from a transpose. Only the exact classes qualify (a
    subclass may score differently), and only while the value is the support ``enum`` set.
    """
    discrete = sys.modules.get("numpyro.distributions.discrete")
    fn = msg.fn
    if discrete is None or type(fn) not in (discrete.CategoricalProbs, discrete.CategoricalLogits):
        return None
    dim = msg.stash.get(ENUM_DIM)
    if dim is None or msg.value is not msg.stash.get(ENUM_SUPPORT):
        return None
    batch = tuple(fn.batch_shape)
    if -dim <= len(batch) and batch[dim] != 1:
        return None
    logits = jnp.asarray(fn.logits)
    if type(fn) is discrete.CategoricalLogits:
        logits = logits - logsumexp(logits, axis=-1, keepdims=True)
    rank = max(len(batch), -dim)
    table = jnp.reshape(logits, (1,) * (rank - len(batch)) + batch + logits.shape[-1:])
    return jnp.moveaxis(jnp.squeeze(table, axis=rank + dim), -1, rank + dim)


def _broadcast_log_prob(msg: Message) -> Array:
    """``log_prob(value)`` of a sample site, broadcast to its full batch shape."""
    fn = msg.fn
    table = _categorical_table(msg)
    lp = site_log_prob(msg, scaled=False) if table is None else table
    event = len(fn.event_shape)
    value_shape = tuple(jnp.shape(msg.value))
    value_batch = value_shape[: len(value_shape) - event] if event else value_shape
    shape = jnp.broadcast_shapes(tuple(fn.batch_shape), value_batch, lp.shape)
    return jnp.broadcast_to(lp, shape)


def _scale(msg: Message, plates: dict[str, Plate]) -> Any:
    """The site's scale without the subsampling ratios of its plates (applied per plate)."""
    scale = msg.scale
    if scale is None:
        return 1.0
    ratio = 1.0
    for f in msg.cond_indep_stack:
        plate = plates.get(f.name)
        if plate is not None:
            ratio *= plate.scale
    if ratio == 1.0:
        return scale
    return scale / ratio


def site_log_factor(msg: Message, plates: dict[str, Plate]) -> Array:
    """A sample site's log-factor: ``log_prob`` broadcast to its batch shape, times its
    scale (the subsampling ratios of ``plates`` left to the elimination over them)."""
    lp = _broadcast_log_prob(msg)
    scale = _scale(msg, plates)
    if not (isinstance(scale, float | int) and scale == 1):
        lp = lp * scale
    return lp


def plates_of(trace: Trace) -> tuple[dict[str, Plate], dict[str, int]]:
    """The plates of a trace's sites (full size and subsampling scale) and their dims."""
    full = {n: int(m.args[0]) for n, m in trace.items() if m.type == "plate" and m.args}
    plates: dict[str, Plate] = {}
    dims: dict[str, int] = {}
    for msg in trace.values():
        for f in msg.cond_indep_stack:
            if f.name in plates:
                continue
            size = full.get(f.name, f.size)
            plates[f.name] = Plate(f.size, size / f.size if size != f.size else 1.0)
            dims[f.name] = f.dim
    return plates, dims


def name_axes(
    msg: Message, shape: tuple[int, ...], dim_names: dict[int, str], leading: int = 0
) -> list[str | None]:
    """The name of each of the last ``len(shape) - leading`` dims of a site's log-density.

    ``None`` marks a size-1 dim (dropped); ``DATA_DIM`` a dim of an observed site that
    only its observation spans (summed, as the plain log density sums it).

    Raises:
        SiteError: a dim of size > 1 is neither a plate, nor a visible enumerated
            variable, nor a dim of the observation alone.
    """
    plate_of = {f.dim: f.name for f in msg.cond_indep_stack}
    fn_batch = tuple(msg.fn.batch_shape) if msg.is_observed else ()
    names: list[str | None] = []
    rank = len(shape) - leading
    for k in range(rank):
        dim = k - rank
        n = shape[leading + k]
        if dim in plate_of:
            names.append(plate_of[dim] if n != 1 else None)
        elif n == 1:
            names.append(None)
        elif dim in dim_names:
            names.append(dim_names[dim])
        elif msg.is_observed and (-dim > len(fn_batch) or fn_batch[dim] == 1):
            # No parameter of the distribution (so no enumerated value) varies along it.
            names.append(DATA_DIM)
        else:
            plates = ", ".join(f"'{f.name}' (dim {f.dim})" for f in msg.cond_indep_stack)
            raise SiteError(
                msg.name,
                f"site '{msg.name}' has a log-density of shape {shape[leading:]} whose dim "
                f"{dim} (size {n}) is neither a plate (it is inside {plates or 'no plate'}) "
                "nor an enumerated variable visible there. Declare the batch dim with a "
                "plate, or check that the site does not depend on an enumerated variable "
                "that markov has already forgotten.",
            )
    return names


def to_factor(
    array: Array, names: list[str | None], ordinal: frozenset[str], leading: tuple[str, ...] = ()
) -> Factor:
    """Sum the ``DATA_DIM`` dims of ``array``, drop its unnamed (size-1) dims and name the
    rest."""
    lead = len(leading)
    data = tuple(lead + k for k, n in enumerate(names) if n == DATA_DIM)
    if data:
        array = jnp.sum(array, axis=data, keepdims=True)
        names = [None if n == DATA_DIM else n for n in names]
    drop = tuple(lead + k for k, n in enumerate(names) if n is None)
    if drop:
        array = jnp.squeeze(array, drop)
    axes = leading + tuple(n for n in names if n is not None)
    return Factor(array, axes, ordinal)


def promote_fn(fn: Any, value: Any) -> Any:
    """``fn`` with size-1 dims prepended to its parameters, so that its batch rank is the
    value's (as NumPyro's enumerated scan records its sites)."""
    missing = jnp.ndim(value) - len(fn.event_shape) - len(fn.batch_shape)
    if missing <= 0:
        return fn
    pad = (1,) * missing
    return jax.tree_util.tree_map(lambda a: jnp.reshape(a, pad + jnp.shape(a)), fn)
