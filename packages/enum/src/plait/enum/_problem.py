"""From an enumerated trace to a sum-product problem: factors, variables, plates.

Every sample site gives one log-factor (``_sites.py``). Sites of an enumerated ``scan`` are
gathered by their scan instead (``SCAN_RECORD``) and reduced to a chain (``_chain.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from plait import Message, Trace
from plait.control_flow.plugin_api import STACKED
from plait.enum._contract import Plate
from plait.enum._factors import Factor
from plait.enum._keys import DIM_NAMES, ENUM_DIM, SCAN_RECORD, SCAN_SITE
from plait.enum._record import ScanRecord
from plait.enum._sites import name_axes, plates_of, site_log_factor, to_factor

__all__ = ["Problem", "build_problem"]


@dataclass
class Problem:
    """The factors of a trace and what their axes mean.

    Attributes:
        factors: one per sample site (scanned sites excluded).
        variables: enumerated variable name to its ordinal (its plates).
        plates: the plates of the trace.
        plate_dims: plate name to its dim.
        scans: each enumerated scan's record and its step factors, in order.
        sites: enumerated variable name to its site.
    """

    factors: list[Factor] = field(default_factory=list)
    variables: dict[str, frozenset[str]] = field(default_factory=dict)
    plates: dict[str, Plate] = field(default_factory=dict)
    plate_dims: dict[str, int] = field(default_factory=dict)
    scans: list[tuple[ScanRecord, dict[str, Factor]]] = field(default_factory=list)
    sites: dict[str, Message] = field(default_factory=dict)


def build_problem(trace: Trace, given: Mapping[str, int] | None = None) -> Problem:
    """The sum-product problem of an enumerated trace (see the module docstring).

    ``given`` names dims that values given to the model already carry (a guide's
    enumerated sites, replayed): site name to its dim. Each becomes a variable of the
    problem (inside the plates of its site), for the caller to keep.

    Example:
        >>> import numpyro.distributions as dist
        >>> from plait import sample
        >>> from plait.enum import config_enumerate, enum
        >>> from plait.handlers import trace
        >>> def model():
        ...     z = sample("z", dist.Bernoulli(0.5))
        ...     sample("y", dist.Normal(z, 1.0), obs=0.0)
        >>> tr = trace(enum(config_enumerate(model))).get_trace()
        >>> problem = build_problem(tr)
        >>> [f.axes for f in problem.factors], list(problem.variables)
        ([('z',), ('z',)], ['z'])
    """
    problem = Problem()
    problem.plates, problem.plate_dims = plates_of(trace)
    given_names = {dim: name for name, dim in (given or {}).items()}
    for name in given or {}:
        if name in trace:
            problem.variables[name] = frozenset(f.name for f in trace[name].cond_indep_stack)
    scans: dict[int, tuple[ScanRecord, dict[str, Factor]]] = {}
    for msg in trace.values():
        if msg.type != "sample":
            continue
        record = msg.stash.get(SCAN_RECORD)
        if record is not None:
            if id(record) not in scans:
                scans[id(record)] = (record, dict(record.factors))
                problem.scans.append(scans[id(record)])
            _scan_site(msg, record, scans[id(record)][1])
            continue
        recorded: dict[int, str] = msg.stash.get(DIM_NAMES) or {}
        dim_names = {**given_names, **recorded}
        lp = site_log_factor(msg, problem.plates)
        ordinal = frozenset(f.name for f in msg.cond_indep_stack)
        if STACKED in msg.stash and SCAN_SITE not in msg.stash and lp.ndim:
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


def _scan_site(msg: Message, record: ScanRecord, factors: dict[str, Factor]) -> None:
    """Recompute the factor of a stacked scan site that a handler outside changed."""
    name = msg.stash[SCAN_SITE].body_name
    fn, scale = record.stacked[name]
    if msg.fn is fn and msg.scale is scale:
        return
    lp = site_log_factor(msg, record.plates)
    if record.reverse:
        lp = lp[::-1]
    names = name_axes(msg, tuple(lp.shape), msg.stash.get(DIM_NAMES) or {}, leading=1)
    ordinal = frozenset(f.name for f in msg.cond_indep_stack)
    factors[name] = to_factor(lp, names, ordinal, (record.time,))
