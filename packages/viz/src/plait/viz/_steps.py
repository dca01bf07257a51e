"""Seeing through ``scan`` bodies: which scans a model runs, and the dependencies of one of
their steps on the previous step (through the carry).

A model's trace shows a scan's sites stacked over time, and a dependency between stacked
sites cannot tell "``x`` at ``t`` depends on ``y`` at ``t``" from "``x`` at ``t`` depends on
``x`` at ``t - 1``". :class:`record_scans` claims every scan through plait-control-flow's
contract (``ScanHandler.run_scan``), lets it run, and keeps its :class:`ScanCall`;
:func:`step_dependencies` then runs one step of the body on labelled inputs (the carry
going in, the step's own site values) and reads, from the step's jaxpr, what each site
depends on within the step and which sites feed the carry going out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from plait import ControlFlowStep, Message, Messenger, Trace
from plait.control_flow.plugin_api import ScanCall, ScanResult
from plait.handlers import substitute
from plait.viz._provenance import eval_provenance

__all__ = ["RecordedScan", "StepDependencies", "record_scans", "site_outputs", "step_dependencies"]

_CARRY = "__carry_{}__"


class RecordedScan(NamedTuple):
    """A scan the model ran: its call and the names of the sites it sent."""

    call: ScanCall
    sites: tuple[str, ...]


class record_scans(Messenger[..., Any]):
    """Keeps every (top-level) scan the model runs; runs it unchanged."""

    def __init__(self) -> None:
        self.scans: list[RecordedScan] = []
        super().__init__()

    def run_scan(self, call: ScanCall, proceed: Callable[[ScanCall], ScanResult]) -> ScanResult:
        result = proceed(call)
        self.scans.append(RecordedScan(call, tuple(result.sites)))
        return result


class substitute_deterministic(Messenger[..., Any]):
    """Give deterministic sites the values in ``data`` and keep what they computed in
    ``args`` (so a site downstream depends on the deterministic site, not its parents)."""

    def __init__(self, data: dict[str, Any], step: ControlFlowStep | None = None) -> None:
        self.data = data
        self.step = step
        super().__init__()

    def process_deterministic(self, msg: Message) -> None:
        name = msg.name if self.step is None else self.step.site_name(msg)
        if name not in self.data:
            return
        value = self.data[name]
        if self.step is not None:
            value = self.step.select(msg, value)
        msg.args = (msg.value,)
        msg.value = value

    def for_control_flow(self, step: ControlFlowStep) -> Messenger[Any, Any]:
        return substitute_deterministic(
            self.data, step if self.step is None else _Nested(self.step, step)
        )


class _Nested:
    """A loop inside a loop: names as the outer step sees them, values cut by both."""

    def __init__(self, outer: ControlFlowStep, inner: ControlFlowStep) -> None:
        self.outer = outer
        self.inner = inner

    @property
    def label(self) -> str:
        return self.inner.label

    @property
    def length(self) -> int:
        return self.inner.length

    @property
    def index(self) -> Any:
        return self.inner.index

    def site_name(self, msg: Message) -> str:
        return self.outer.site_name(msg)

    def select(self, msg: Message, value: Any) -> Any:
        return self.inner.select(msg, self.outer.select(msg, value))


def site_outputs(tr: Trace) -> dict[str, Any]:
    """What each site's dependencies are read from: a sample site's log density, a
    deterministic site's computed value."""
    out: dict[str, Any] = {}
    for name, site in tr.items():
        if site.type == "sample":
            out[name] = jnp.asarray(site.fn.log_prob(site.value))
        elif site.type == "deterministic":
            out[name] = site.args[0] if site.args else site.value
    return out


class StepDependencies(NamedTuple):
    """What one step of a scan depends on.

    Fields:
        same_step: per body site, the body sites of the same step it depends on.
        previous: per body site, the body sites of earlier steps it depends on, through
            the carry.
    """

    same_step: dict[str, frozenset[str]]
    previous: dict[str, frozenset[str]]


def step_dependencies(scan: RecordedScan, values: dict[str, Any]) -> StepDependencies:
    """Run one step of ``scan`` on labelled inputs and read its dependencies.

    ``values`` holds the whole model's site values (a scan site's stacked over time).
    """
    call = scan.call
    names = [n for n in scan.sites if n in values]
    step_values = {n: _first(values[n], call.length) for n in names}
    carry_leaves, carry_def = jax.tree_util.tree_flatten(call.init)
    x0 = jax.tree_util.tree_map(lambda a: a[0], call.xs)
    n_carry = len(carry_leaves)
    labels = [_CARRY.format(k) for k in range(n_carry)]

    def step(**inputs: Any) -> Any:
        carry = jax.tree_util.tree_unflatten(carry_def, [inputs[label] for label in labels])
        sites = {n: inputs[n] for n in names}
        result = call.run_step(
            carry,
            x0,
            index=jnp.zeros((), jnp.int32),
            outer=[substitute(data=sites), substitute_deterministic(sites)],
        )
        return site_outputs(result.trace), jax.tree_util.tree_leaves(result.carry)

    inputs = dict(zip(labels, carry_leaves, strict=True)) | step_values
    outs, carry_out = eval_provenance(step, **inputs)
    body = set(names)
    feeds = [set(p) for p in carry_out]  # what each carry leaf going out holds
    # A carry leaf may hold earlier steps (a history): close over carry -> carry.
    holds: list[set[str]] = [f & body for f in feeds]
    while True:
        grown = [
            holds[k] | {s for j in range(n_carry) if labels[j] in feeds[k] for s in holds[j]}
            for k in range(n_carry)
        ]
        if grown == holds:
            break
        holds = grown
    same_step: dict[str, frozenset[str]] = {}
    previous: dict[str, frozenset[str]] = {}
    for name, prov in outs.items():
        p = _union(jax.tree_util.tree_leaves(prov, is_leaf=lambda x: isinstance(x, frozenset)))
        same_step[name] = frozenset((p & body) - {name})
        previous[name] = frozenset(
            s for k, label in enumerate(labels) if label in p for s in holds[k]
        )
    return StepDependencies(same_step, previous)


def _union(provs: list[frozenset[str]]) -> frozenset[str]:
    out: set[str] = set()
    for p in provs:
        out |= p
    return frozenset(out)


def _first(value: Any, length: int) -> Any:
    """Step 0's value of a site's value stacked over ``length`` steps."""
    return jax.tree_util.tree_map(
        lambda a: a[0] if jnp.ndim(a) > 0 and jnp.shape(a)[0] == length else a, value
    )
