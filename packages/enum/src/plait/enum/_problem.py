"""From an enumerated trace to a sum-product problem: factors, variables, plates.

Every sample site gives one log-factor: its ``log_prob`` broadcast to its batch shape,
with each dim of size > 1 named after the plate or enumerated variable that lives
there (``DIM_NAMES``, recorded by ``enum`` when the site ran). Sites of an enumerated
``scan`` are gathered by their scan instead (``SCAN_RECORD``) and reduced to a chain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jax.numpy as jnp
import numpy as np
from jax import Array

from plait import REEMITTED, Message, Trace
from plait.enum._contract import Plate
from plait.enum._enum import DIM_NAMES, ENUM_DIM
from plait.enum._factors import Factor
from plait.enum._scan_body import SCAN_SITE
from plait.errors import SiteError

__all__ = ["Problem", "build_problem", "site_log_prob"]


@dataclass
class Problem:
    """The factors of a trace and what their axes mean.

    Attributes:
        factors: one per sample site (scanned sites excluded).
        variables: enumerated variable name to its ordinal (its plates).
        plates: the plates of the trace.
        plate_dims: plate name to its dim.
        scans: the enumerated scans' records, in order.
        sites: enumerated variable name to its site.
    """

    factors: list[Factor] = field(default_factory=list)
    variables: dict[str, frozenset[str]] = field(default_factory=dict)
    plates: dict[str, Plate] = field(default_factory=dict)
    plate_dims: dict[str, int] = field(default_factory=dict)
    scans: list[Any] = field(default_factory=list)
    sites: dict[str, Message] = field(default_factory=dict)


def site_log_prob(msg: Message) -> Array:
    """``scale * log_prob(value)`` of a sample site, broadcast to its full batch shape."""
    fn = msg.fn
    lp = fn.log_prob(msg.value, msg.intermediates) if msg.intermediates else fn.log_prob(msg.value)
    lp = jnp.asarray(lp)
    event = len(fn.event_shape)
    value_shape = tuple(jnp.shape(msg.value))
    value_batch = value_shape[: len(value_shape) - event] if event else value_shape
    shape = jnp.broadcast_shapes(tuple(fn.batch_shape), value_batch, lp.shape)
    return jnp.broadcast_to(lp, shape)


def _full_sizes(trace: Trace) -> dict[str, int]:
    sizes = {}
    for name, msg in trace.items():
        if msg.type == "plate" and msg.args:
            sizes[name] = int(msg.args[0])
    return sizes


def name_axes(
    msg: Message, shape: tuple[int, ...], dim_names: dict[int, str], leading: int = 0
) -> list[str | None]:
    """The name of each of the last ``len(shape) - leading`` dims of a site's log-density.

    ``None`` marks a size-1 dim (dropped). Raises a :class:`SiteError` for a dim of size
    > 1 that is neither a plate nor a visible enumerated variable.
    """
    plate_of = {f.dim: f.name for f in msg.cond_indep_stack}
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
    """Drop the unnamed (size-1) dims of ``array`` and name the rest."""
    lead = len(leading)
    drop = tuple(lead + k for k, n in enumerate(names) if n is None)
    if drop:
        array = jnp.squeeze(array, drop)
    axes = leading + tuple(n for n in names if n is not None)
    return Factor(array, axes, ordinal)


def site_scale(msg: Message, plates: dict[str, Plate]) -> Any:
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


def build_problem(trace: Trace, scan_key: Any = None) -> Problem:
    """The sum-product problem of an enumerated trace (see the module docstring)."""
    problem = Problem()
    full = _full_sizes(trace)
    for msg in trace.values():
        for f in msg.cond_indep_stack:
            if f.name not in problem.plates:
                size = full.get(f.name, f.size)
                problem.plates[f.name] = Plate(f.size, size / f.size if size != f.size else 1.0)
                problem.plate_dims[f.name] = f.dim
    scans: dict[int, tuple[Any, dict[str, Factor]]] = {}
    for msg in trace.values():
        if msg.type != "sample":
            continue
        record = msg.stash.get(scan_key) if scan_key is not None else None
        if record is not None:
            if id(record) not in scans:
                scans[id(record)] = (record, dict(record.factors))
                problem.scans.append(scans[id(record)])
            _scan_site(msg, record, scans[id(record)][1])
            continue
        dim_names = msg.stash.get(DIM_NAMES) or {}
        lp = site_log_prob(msg)
        scale = site_scale(msg, problem.plates)
        if not (isinstance(scale, float | int) and scale == 1):
            lp = lp * scale
        ordinal = frozenset(f.name for f in msg.cond_indep_stack)
        if msg.stash.get(REEMITTED) and SCAN_SITE not in msg.stash and lp.ndim:
            # A site of a scan that enumerates nothing, stacked over time: the steps
            # are independent given the values, a plate over its leading dim.
            time = f"_time_{msg.name}"
            problem.plates[time] = Plate(int(lp.shape[0]))
            names = name_axes(msg, tuple(lp.shape), dim_names, leading=1)
            problem.factors.append(to_factor(lp, names, ordinal | {time}, (time,)))
            continue
        names = name_axes(msg, tuple(lp.shape), dim_names)
        problem.factors.append(to_factor(lp, names, ordinal))
        if ENUM_DIM in msg.stash:
            var = dim_names[msg.stash[ENUM_DIM]]
            if int(np.shape(msg.value)[0]) > 1:
                problem.variables[var] = ordinal
                problem.sites[var] = msg
    return problem


def _scan_site(msg: Message, record: Any, factors: dict[str, Factor]) -> None:
    """Recompute the factor of a stacked scan site that a handler outside changed."""
    name = msg.stash[SCAN_SITE][1]
    fn, scale = record.stacked[name]
    if msg.fn is fn and msg.scale is scale:
        return
    lp = site_log_prob(msg)
    scale = site_scale(msg, record.plates)
    if not (isinstance(scale, float | int) and scale == 1):
        lp = lp * scale
    if record.reverse:
        lp = lp[::-1]
    names = name_axes(msg, tuple(lp.shape), msg.stash.get(DIM_NAMES) or {}, leading=1)
    ordinal = frozenset(f.name for f in msg.cond_indep_stack)
    factors[name] = to_factor(lp, names, ordinal, (record.time,))
