"""An enumerated scan's vectorised step, turned into its record and its stacked sites.

The record (:class:`plait.enum._record.ScanRecord`) keeps each body site's log-factor
over the vectorised steps, named by the variables and plates of its dims; the stacked
sites are the messages ``scan`` sends after the loop (marked with the record, so the log
density sums them through it rather than one by one).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from plait import Message, Trace
from plait.control_flow.plugin_api import SitePayload, SiteSkeleton, stacked_sites
from plait.enum._keys import DIM_NAMES, ENUM_DIM, SCAN_RECORD, SCAN_SITE, ScanSite
from plait.enum._record import ScanRecord
from plait.enum._sites import name_axes, plates_of, to_factor

__all__ = ["Flagged", "finish"]


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
    skeletons: dict[str, SiteSkeleton],
    carry_out: Any,
    ys: Any,
    lps: dict[str, Flagged],
    supports: dict[str, Flagged],
    payloads: dict[str, SitePayload],
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
        site.stash[SCAN_SITE] = ScanSite(record, name, -1)
        if site.type == "sample":
            site.stash[SCAN_RECORD] = record
            body = trace.get(name)
            if body is not None and DIM_NAMES in body.stash:
                site.stash[DIM_NAMES] = body.stash[DIM_NAMES]
            record.stacked[name] = (site.fn, site.scale)
    return final_carry, ys_out, sites
