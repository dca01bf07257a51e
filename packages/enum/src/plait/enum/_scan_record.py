"""An enumerated scan's vectorised step, turned into its record and its stacked sites.

The record (:class:`plait.enum._scan_enum.ScanRecord`) keeps each body site's log-factor
over the vectorised steps, named by the variables and plates of its dims; the stacked
sites are the messages ``scan`` sends again after the loop (marked with the record, so
the log density sums them through it rather than one by one).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp

from plait import Message, Trace
from plait.control_flow import stacked_sites
from plait.enum._contract import Plate
from plait.enum._enum import DIM_NAMES, ENUM_DIM
from plait.enum._problem import name_axes, to_factor
from plait.enum._scan_body import SCAN_RECORD, SCAN_SITE

if TYPE_CHECKING:
    from plait.enum._scan_enum import ScanRecord

__all__ = ["Flagged", "finish", "plates_of", "promote_fn"]


def plates_of(trace: Trace) -> tuple[dict[str, Plate], dict[str, int]]:
    full = {n: int(m.args[0]) for n, m in trace.items() if m.type == "plate" and m.args}
    plates: dict[str, Plate] = {}
    dims: dict[str, int] = {}
    for msg in trace.values():
        for f in msg.cond_indep_stack:
            size = full.get(f.name, f.size)
            plates[f.name] = Plate(f.size, size / f.size if size != f.size else 1.0)
            dims[f.name] = f.dim
    return plates, dims


def promote_fn(fn: Any, value: Any) -> Any:
    """``fn`` with size-1 dims prepended to its parameters, so that its batch rank is the
    value's (as NumPyro's enumerated scan records its sites)."""
    missing = jnp.ndim(value) - len(fn.event_shape) - len(fn.batch_shape)
    if missing <= 0:
        return fn
    pad = (1,) * missing
    return jax.tree_util.tree_map(lambda a: jnp.reshape(a, pad + jnp.shape(a)), fn)


class Flagged:
    """An output of the vectorised step and whether it has the leading time axis."""

    def __init__(self, value: Any, batched: bool) -> None:
        self.value = value
        self.batched = batched

    def stacked(self, steps: int) -> Any:
        if self.batched:
            return self.value
        return jnp.broadcast_to(self.value, (steps, *jnp.shape(self.value)))

    def last(self) -> Any:
        return self.value[-1] if self.batched else self.value


def _is_flagged(x: Any) -> bool:
    return isinstance(x, Flagged)


def finish(
    record: ScanRecord,
    trace: Trace,
    skeletons: Any,
    carry_out: Any,
    ys: Any,
    lps: dict[str, Flagged],
    supports: dict[str, Flagged],
    payloads: Any,
    seq_final: dict[int, Any],
) -> tuple[Any, Any, dict[str, Message]]:
    """The final carry, the stacked ``ys``, and the stacked sites; fills ``record``."""
    steps = record.steps
    leaves, treedef = jax.tree_util.tree_flatten(carry_out, is_leaf=_is_flagged)
    final = [seq_final.get(j, leaf.last()) for j, leaf in enumerate(leaves)]
    final_carry = jax.tree_util.tree_unflatten(treedef, final)
    ys_out = jax.tree_util.tree_map(lambda a: a.stacked(steps), ys, is_leaf=_is_flagged)

    record.plates, record.plate_dims = plates_of(trace)
    first = next((n for n, m in trace.items() if m.type == "sample"), record.name)
    record.time = f"_time_{first}"
    for name, msg in trace.items():
        if msg.type != "sample":
            continue
        strategy = msg.infer.get("contraction")
        if strategy is not None:
            record.strategy = strategy
        flagged = lps[name]
        dim_names = msg.stash.get(DIM_NAMES) or {}
        shape = tuple(flagged.value.shape)
        lead: tuple[str, ...] = (record.time,) if flagged.batched else ()
        names = name_axes(msg, shape[len(lead) :], dim_names)
        ordinal = frozenset(f.name for f in msg.cond_indep_stack)
        record.factors[name] = to_factor(flagged.value, names, ordinal, lead)
        if ENUM_DIM in msg.stash:
            var = dim_names[msg.stash[ENUM_DIM]]
            record.site_vars[name] = var
            record.variables[var] = ordinal
            record.supports[name] = (supports[name].last(), len(msg.fn.event_shape))

    def stacked(a: Flagged) -> Any:
        value = a.stacked(steps)
        return value[::-1] if record.reverse else value

    stacked_payloads = jax.tree_util.tree_map(stacked, payloads, is_leaf=_is_flagged)
    sites = stacked_sites(skeletons, stacked_payloads, steps, record.name)
    for name, site in sites.items():
        site.stash[SCAN_SITE] = (record, name, -1)
        if site.type == "sample":
            site.stash[SCAN_RECORD] = record
            body = trace.get(name)
            if body is not None and DIM_NAMES in body.stash:
                site.stash[DIM_NAMES] = body.stash[DIM_NAMES]
            record.stacked[name] = (site.fn, site.scale)
    return final_carry, ys_out, sites
